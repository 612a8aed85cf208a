"""Run ``fn(config)`` for a list of configurations -- sequentially, in a pool of processes or as
Ray tasks -- keep every result on disk and resume a killed sweep where it stopped.

Example::

    import aeprobe

    def train_cell(cfg):                     # a module-level function (the workers import it)
        torch.manual_seed(cfg["seed"])
        ...
        return {"loss": loss, "state": model.state_dict()}

    grid = [{"area": a, "compression": c, "seed": s} for a in "SML" for c in (1/64, 1/4, 1) for s in (0, 1)]
    results = aeprobe.sweep(train_cell, grid, backend="processes", out="runs/grid")   # in grid order
    # run it again: every result is read from runs/grid, nothing is trained

Backends (``backend=``):

- ``"local"``: in this process, one config after the other (needs nothing);
- ``"processes"``: a pool of ``workers`` spawned processes (default: one per CPU), each running
  torch with ``threads`` intra-op threads (default: CPUs // workers, so 2 x 1 on 2 cores); the
  pool is :func:`imap_processes`, the one process pool of the package (the studies' own
  trainings run on it too), which starts every worker and imports ``fn``'s module up front;
- ``"ray"``: one Ray task per config (``pip install aeprobe[ray]``). Ray is started locally
  unless it is already initialised (then it is used, and left running) or ``address=`` names a
  cluster; a Ray the sweep started is shut down when it ends. ``cpus_per_task`` /
  ``gpus_per_task`` are each task's resources, ``ray_init`` / ``ray_options`` extra keyword
  arguments of ``ray.init`` and of the tasks' ``.options``.

Results are returned in the order of ``configs``. ``sweep`` does not seed anything: ``fn``
seeds itself from its config, and then every backend returns the same results (for bitwise
equal torch results across backends also give the same ``threads``, e.g. ``threads=1``: the
thread count can change the order of float reductions).

**Configurations** are JSON-like: ``None``, ``bool``, ``int``, finite ``float``, ``str``, lists
and tuples (the same config: a tuple is hashed as a list), dicts with ``str`` keys, dataclass
instances (hashed by their fields, not their class name) and, for convenience,
``fractions.Fraction`` and ``pathlib`` paths. ``fn`` receives the config object itself.
``1`` and ``1.0`` are different configs; equal configs (same key) run once.

**Storage** (with ``out=DIR``): each finished config is written to ``DIR/<key>.json``, where
``key`` (:func:`config_key`) is the first 16 hex digits of the SHA-256 of the config's canonical
JSON (sorted keys). The file holds the config, the function's name, the run time and the result;
it is written atomically (:func:`aeprobe.reporting.atomic_write_bytes`) by the calling process as
soon as the config finishes, so a killed sweep keeps every finished config and the next call with
the same ``out`` runs only the others (``resume=False`` runs everything again). A file that
cannot be read, or whose config differs from the one asked for, is reported with a warning and
its config is run again. Use one ``out`` per function: results are matched by config only (a
warning says so when a file was written by a function of another name).

**Results** are stored as JSON -- never pickled, so reading an ``out`` folder cannot run code
that was put there. Supported: ``None``, ``bool``, ``int``, ``float`` (NaN and infinities
included), ``str``, ``list``, ``tuple``, ``dict`` and ``OrderedDict`` (a ``state_dict()``; any keys of these types),
``torch.Tensor`` (any dtype; stored as raw bytes in base64; comes back detached, on the CPU, as a
plain tensor), numeric ``numpy`` arrays and scalars, ``Fraction``, paths, and dataclass
instances. A dataclass is stored as its class's ``module:qualname`` and its fields, and comes back
without calling ``__init__``; its class is only looked up in modules that are already imported or
in ``aeprobe`` itself -- no other module is imported because a file names it. Anything else (an
``nn.Module``, a ``defaultdict``, a namedtuple, ...) fails that config with a ``TypeError``
naming where in the result it is; convert it first (e.g. return ``model.state_dict()``). With
``out``, every backend returns the results as read back from this format, so a fresh and a
resumed sweep return the same things. Without ``out`` nothing is written, ``fn``'s results are
returned as they are (through pickling for the processes and Ray backends) and configs may be
any picklable objects.

**Errors**: a config whose ``fn`` raises does not stop the others; when all have finished the
sweep raises :class:`SweepError`, which lists every failed config (its index, the config, the
error and its traceback) and holds the other results (``.results``, ``None`` for failures).
Finished results are saved either way, so after fixing the cause a second call runs only the
failed configs.
"""
from __future__ import annotations

import base64
import dataclasses
import hashlib
import importlib
import json
import math
import os
import pickle
import sys
import time
import traceback
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from fractions import Fraction
from pathlib import Path, PurePath
from typing import Any

import numpy as np

from aeprobe.reporting import atomic_write_text

__all__ = ["sweep", "SweepError", "SweepFailure", "config_key", "canonical_config", "encode_result", "decode_result",
           "imap_processes"]

BACKENDS = ("local", "processes", "ray")
FORMAT_VERSION = 1
_TAG = "__aeprobe__"


# ------------------------------------------------------------------------------------ configs


def canonical_config(config: Any, _where: str = "config") -> Any:
    """The JSON form of a configuration that :func:`config_key` hashes (see the module doc for the types)."""
    c = config
    if c is None or type(c) in (bool, str):
        return c
    if type(c) is int:
        return c
    if type(c) is float:
        if not math.isfinite(c):
            raise ValueError(f"{_where} is {c}: configurations must be finite numbers")
        return c
    if isinstance(c, np.generic) and c.dtype.kind in "biuf":
        return canonical_config(c.item(), _where)
    if type(c) in (list, tuple):
        return [canonical_config(v, f"{_where}[{i}]") for i, v in enumerate(c)]
    if type(c) is dict:
        out = {}
        for k, v in c.items():
            if type(k) is not str:
                raise TypeError(f"{_where} has the key {k!r} ({type(k).__name__}); configuration dicts need str keys")
            out[k] = canonical_config(v, f"{_where}[{k!r}]")
        return out
    if dataclasses.is_dataclass(c) and not isinstance(c, type):
        return {f.name: canonical_config(getattr(c, f.name), f"{_where}.{f.name}") for f in dataclasses.fields(c)}
    if type(c) is Fraction:
        return {"$fraction": f"{c.numerator}/{c.denominator}"}
    if isinstance(c, PurePath):
        return {"$path": str(c)}
    raise TypeError(
        f"{_where} is a {type(c).__module__}.{type(c).__qualname__}, which a sweep configuration cannot hold: use "
        "None, bool, int, float, str, lists/tuples, dicts with str keys, dataclasses, Fraction or paths"
    )


def _dumps_canonical(canon: Any) -> str:
    return json.dumps(canon, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def config_key(config: Any) -> str:
    """The key under which a sweep stores ``config``'s result: 16 hex digits of the SHA-256 of its
    canonical JSON (:func:`canonical_config`, keys sorted) -- stable across runs, machines and
    Python versions.

    >>> config_key({"seed": 0, "lr": 0.1}) == config_key({"lr": 0.1, "seed": 0})
    True
    """
    return hashlib.sha256(_dumps_canonical(canonical_config(config)).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------ results


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def encode_result(obj: Any, _where: str = "result") -> Any:
    """``obj`` as JSON-able data that :func:`decode_result` turns back into an equal object (see the module doc)."""
    if obj is None or type(obj) in (bool, int, str):
        return obj
    if type(obj) is float:
        return obj if math.isfinite(obj) else {_TAG: "float", "value": repr(obj)}
    if type(obj) is list:
        return [encode_result(v, f"{_where}[{i}]") for i, v in enumerate(obj)]
    if type(obj) is tuple:
        return {_TAG: "tuple", "items": [encode_result(v, f"{_where}[{i}]") for i, v in enumerate(obj)]}
    if type(obj) is dict:
        if all(type(k) is str for k in obj) and _TAG not in obj:
            return {k: encode_result(v, f"{_where}[{k!r}]") for k, v in obj.items()}
        return {_TAG: "dict", "items": [[encode_result(k, f"{_where} key {k!r}"), encode_result(v, f"{_where}[{k!r}]")]
                                       for k, v in obj.items()]}
    if type(obj) is OrderedDict:  # e.g. model.state_dict()
        return {_TAG: "odict", "items": [[encode_result(k, f"{_where} key {k!r}"), encode_result(v, f"{_where}[{k!r}]")]
                                        for k, v in obj.items()]}
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(obj, torch.Tensor):
        if obj.layout != torch.strided or obj.is_quantized or obj.device.type == "meta":
            raise TypeError(f"{_where} is a {obj.layout} / quantized / meta tensor; only dense tensors can be stored")
        t = obj.detach().cpu().resolve_conj().resolve_neg().contiguous()
        raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        return {_TAG: "tensor", "dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape), "data": _b64(raw)}
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in "biufc":
            raise TypeError(f"{_where} is a numpy array of dtype {obj.dtype}; only numeric and bool arrays can be stored")
        a = np.ascontiguousarray(obj)
        return {_TAG: "ndarray", "dtype": a.dtype.str, "shape": list(a.shape), "data": _b64(a.tobytes())}
    if isinstance(obj, np.generic):
        if obj.dtype.kind not in "biufc":
            raise TypeError(f"{_where} is a numpy scalar of dtype {obj.dtype}; only numeric and bool scalars can be stored")
        return {_TAG: "npscalar", "dtype": obj.dtype.str, "data": _b64(np.asarray(obj).tobytes())}
    if type(obj) is Fraction:
        return {_TAG: "fraction", "value": f"{obj.numerator}/{obj.denominator}"}
    if isinstance(obj, PurePath):
        return {_TAG: "path", "value": str(obj)}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        cls = type(obj)
        if "<locals>" in cls.__qualname__:
            raise TypeError(f"{_where} is a dataclass defined inside a function ({cls.__qualname__}); it could not be "
                            "found again when the result is read: define it at module level")
        module = "__main__" if cls.__module__ == "__mp_main__" else cls.__module__
        return {_TAG: "dataclass", "class": f"{module}:{cls.__qualname__}",
                "fields": {f.name: encode_result(getattr(obj, f.name), f"{_where}.{f.name}")
                           for f in dataclasses.fields(obj)}}
    raise TypeError(
        f"{_where} is a {type(obj).__module__}.{type(obj).__qualname__}, which a sweep result cannot hold: return "
        "None, bool, int, float, str, list, tuple, dict, OrderedDict, tensors, numeric numpy arrays/scalars, Fraction, paths or "
        "dataclasses of these (e.g. model.state_dict() rather than the model)"
    )


def _find_dataclass(spec: str) -> type:
    module, _, qualname = spec.partition(":")
    if not module or not qualname:
        raise ValueError(f"bad dataclass reference {spec!r}")
    if module not in sys.modules:
        if module == "aeprobe" or module.startswith("aeprobe."):
            importlib.import_module(module)
        else:
            raise ValueError(f"the result holds a dataclass of module {module!r}, which is not imported; import it "
                             "before the sweep (modules are never imported because a result file names them)")
    obj: Any = sys.modules[module]
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    if not (isinstance(obj, type) and dataclasses.is_dataclass(obj)):
        raise ValueError(f"{spec!r} does not name a dataclass")
    return obj


def decode_result(data: Any) -> Any:
    """Inverse of :func:`encode_result`."""
    if isinstance(data, list):
        return [decode_result(v) for v in data]
    if not isinstance(data, dict):
        return data
    tag = data.get(_TAG)
    if tag is None:
        return {k: decode_result(v) for k, v in data.items()}
    if tag == "float":
        return float(data["value"])
    if tag == "tuple":
        return tuple(decode_result(v) for v in data["items"])
    if tag == "dict":
        return {decode_result(k): decode_result(v) for k, v in data["items"]}
    if tag == "odict":
        return OrderedDict((decode_result(k), decode_result(v)) for k, v in data["items"])
    if tag == "tensor":
        import torch

        dtype = getattr(torch, data["dtype"], None)
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"unknown tensor dtype {data['dtype']!r}")
        raw = base64.b64decode(data["data"])
        if not raw:
            return torch.empty(data["shape"], dtype=dtype)
        return torch.frombuffer(bytearray(raw), dtype=dtype).reshape(data["shape"])
    if tag == "ndarray":
        dt = np.dtype(data["dtype"])
        if dt.kind not in "biufc":
            raise ValueError(f"numpy dtype {dt} is not allowed")
        return np.frombuffer(base64.b64decode(data["data"]), dtype=dt).reshape(data["shape"]).copy()
    if tag == "npscalar":
        dt = np.dtype(data["dtype"])
        if dt.kind not in "biufc":
            raise ValueError(f"numpy dtype {dt} is not allowed")
        return np.frombuffer(base64.b64decode(data["data"]), dtype=dt)[0]
    if tag == "fraction":
        return Fraction(data["value"])
    if tag == "path":
        return Path(data["value"])
    if tag == "dataclass":
        cls = _find_dataclass(data["class"])
        fields = {f.name for f in dataclasses.fields(cls)}
        if set(data["fields"]) != fields:
            raise ValueError(f"{data['class']} now has the fields {sorted(fields)}, the stored result "
                             f"{sorted(data['fields'])}")
        obj = cls.__new__(cls)  # restore the state, as pickle does: __init__ / __post_init__ are not run
        for name, value in data["fields"].items():
            object.__setattr__(obj, name, decode_result(value))
        return obj
    raise ValueError(f"unknown stored type {tag!r}")


# ------------------------------------------------------------------------------------ errors


@dataclasses.dataclass
class SweepFailure:
    """One configuration whose run failed."""

    index: int  #: position in ``configs``
    config: Any
    key: str | None  #: storage key (None without ``out``)
    error: str  #: ``"TypeName: message"``
    traceback: str  #: formatted traceback, from the process that ran it
    exception: BaseException | None = None  #: the exception itself when it could be brought back

    def __str__(self) -> str:
        cfg = repr(self.config)
        cfg = cfg if len(cfg) <= 200 else cfg[:197] + "..."
        return f"configs[{self.index}] {cfg}: {self.error}"


class SweepError(RuntimeError):
    """Some configurations failed; raised after all the others finished (and were saved).

    ``.failures``: list of :class:`SweepFailure`; ``.results``: the results in config order,
    ``None`` where a config failed.
    """

    def __init__(self, failures: list[SweepFailure], results: list, out: Path | None):
        self.failures, self.results, self.out = failures, results, out
        n = len(results)
        saved = f"; they are saved in {out}, a second call runs only the failed ones" if out is not None else ""
        lines = [f"{len(failures)} of {n} sweep configurations failed (the other {n - len(failures)} finished{saved}):"]
        lines += [f"  {f}" for f in failures]
        lines += ["", f"traceback of configs[{failures[0].index}]:", failures[0].traceback.rstrip()]
        super().__init__("\n".join(lines))


# ------------------------------------------------------------------------------------ one run


def _fn_name(fn: Callable) -> str:
    mod = getattr(fn, "__module__", None) or type(fn).__module__
    mod = "__main__" if mod == "__mp_main__" else mod
    return f"{mod}.{getattr(fn, '__qualname__', type(fn).__qualname__)}"


def _call(fn: Callable, config: Any, threads: int | None, encode: bool) -> dict:
    """Run one config (in whatever process the backend chose); never raises an ``Exception``."""
    t0 = time.perf_counter()
    try:
        if threads is None:
            value = fn(config)
        else:
            from aeprobe.device import torch_threads

            with torch_threads(threads):
                value = fn(config)
        if encode:
            value = encode_result(value)
        return {"ok": True, "value": value, "seconds": time.perf_counter() - t0}
    except Exception as exc:  # reported with its config once the sweep ends
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(),
                "exception": exc}


def _portable(outcome: dict) -> dict:
    """Drop an exception that cannot be pickled (for the trip back from a worker)."""
    if not outcome["ok"]:
        try:
            pickle.dumps(outcome["exception"])
        except Exception:
            outcome["exception"] = None
    return outcome


def _call_remote(fn: Callable, config: Any, threads: int | None, encode: bool) -> dict:
    return _portable(_call(fn, config, threads, encode))


def _init_process(threads: int, preload: str | None = None) -> None:
    """Worker start: ``threads`` torch threads; import ``preload`` (the jobs' module) now, while the
    parent prepares the jobs. A module that cannot be imported here is left to the jobs, whose
    unpickling then fails with its own error (the pool itself stays usable)."""
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)
    if preload:
        try:
            importlib.import_module(preload)
        except Exception:  # noqa: BLE001 - reported by the first job that needs it
            pass


def _ready() -> None:
    """A no-op job: submitting one per worker starts every process (and its imports) at once."""


def imap_processes(fn: Callable[[Any], Any], jobs: Iterable[tuple[int, Any]], *, workers: int, threads: int = 1,
                   preload: str | None = None) -> Iterator[tuple[int, Any]]:
    """Run ``fn(job)`` for every ``(index, job)`` of ``jobs`` in ``workers`` spawned processes of
    ``threads`` torch threads each; yield ``(index, future)`` as each job finishes (completion order).

    The one process pool of aeprobe: :func:`sweep`'s ``"processes"`` backend and
    :func:`aeprobe.studies.parallel.map_jobs` run on it. The processes start, and import
    ``preload`` (default: ``fn``'s module), before the first job is taken from ``jobs``, which may
    be a lazy iterator: each job is submitted as it is yielded, so the code between two yields
    (e.g. building the next training set) runs while the first jobs run. ``future.result()`` is
    the job's return value or raises its exception (``BrokenProcessPool`` when a worker died).
    Leaving the loop early (``break``, an exception, ``close()``) cancels the jobs not yet started.
    ``fn`` and the jobs are pickled: ``fn`` must be importable (a module-level function).

        for i, fut in imap_processes(train_one, enumerate(configs), workers=2):
            results[i] = fut.result()
    """
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    if preload is None:
        mod = getattr(fn, "__module__", None)
        preload = None if mod in (None, "__main__", "__mp_main__") else mod
    pool = ProcessPoolExecutor(int(workers), mp_context=mp.get_context("spawn"), initializer=_init_process,
                               initargs=(int(threads), preload))
    finished = False
    try:
        for _ in range(int(workers)):  # start every process now, while the first jobs are being built
            pool.submit(_ready)
        futures = {pool.submit(fn, job): i for i, job in jobs}
        for fut in as_completed(futures):
            yield futures[fut], fut
        finished = True
    finally:
        pool.shutdown(wait=finished, cancel_futures=not finished)


# ------------------------------------------------------------------------------------ storage


class _Store:
    def __init__(self, out: Path, fn: Callable):
        self.out, self.fn_name = out, _fn_name(fn)
        self.warned_fn = False

    def path(self, key: str) -> Path:
        return self.out / f"{key}.json"

    def load(self, index: int, key: str, canon_text: str) -> tuple[bool, Any]:
        path = self.path(key)
        if not path.exists():
            return False, None
        try:
            rec = json.loads(path.read_text(encoding="utf-8"))
            if rec.get("format") != FORMAT_VERSION:
                raise ValueError(f"format {rec.get('format')!r}, expected {FORMAT_VERSION}")
            if _dumps_canonical(rec["config"]) != canon_text:
                raise ValueError(f"it holds another configuration, {rec['config']!r}")
            value = decode_result(rec["result"])
        except Exception as exc:
            warnings.warn(f"sweep: cannot use the stored result {path} of configs[{index}] ({type(exc).__name__}: "
                          f"{exc}); running that configuration again", RuntimeWarning, stacklevel=3)
            return False, None
        if rec.get("fn") != self.fn_name and not self.warned_fn:
            self.warned_fn = True
            warnings.warn(f"sweep: {self.out} holds results of {rec.get('fn')!r}; they are reused for "
                          f"{self.fn_name!r} because the configurations match (use one out folder per function, "
                          "or resume=False)", RuntimeWarning, stacklevel=3)
        return True, value

    def save(self, key: str, canon: Any, payload: Any, seconds: float) -> None:
        rec = {"format": FORMAT_VERSION, "key": key, "fn": self.fn_name, "seconds": seconds, "config": canon,
               "result": payload}
        atomic_write_text(self.path(key), json.dumps(rec, allow_nan=False) + "\n")


# ------------------------------------------------------------------------------------ backends


def _cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _run_local(fn, jobs, threads, encode, done):
    for i, config in jobs:
        done(i, _call(fn, config, threads, encode))


def _run_processes(fn, jobs, workers, threads, encode, done):
    import functools
    from concurrent.futures.process import BrokenProcessPool

    try:
        pickle.dumps(fn)
    except Exception as exc:
        raise TypeError(
            f"backend='processes' sends fn to spawned processes by reference, so it must be a module-level function; "
            f"{_fn_name(fn)!r} cannot be pickled ({exc}). Use backend='local', or backend='ray' (cloudpickle)"
        ) from exc
    mod = getattr(fn, "__module__", None)
    task = functools.partial(_call_remote, fn, threads=None, encode=encode)
    results = imap_processes(task, jobs, workers=workers, threads=threads,
                             preload=None if mod in (None, "__main__", "__mp_main__") else mod)
    try:
        for i, fut in results:
            try:
                outcome = fut.result()
            except BrokenProcessPool as exc:
                outcome = {"ok": False, "exception": exc, "traceback": "",
                           "error": "a worker process died (killed, out of memory or crashed) before this "
                                    "configuration finished"}
            except Exception as exc:  # e.g. a config that cannot be pickled
                outcome = {"ok": False, "exception": exc, "traceback": traceback.format_exc(),
                           "error": f"{type(exc).__name__}: {exc}"}
            done(i, outcome)
    finally:
        results.close()


def _import_ray():
    try:
        import ray
    except ImportError as exc:
        raise ImportError("backend='ray' needs Ray, an optional extra: pip install aeprobe[ray]  (or: pip install ray)") from exc
    return ray


def _run_ray(fn, jobs, workers, threads, encode, done, *, address, cpus_per_task, gpus_per_task, ray_init,
             ray_options):
    import logging

    ray = _import_ray()
    started = False
    if ray.is_initialized():
        if address is not None:
            warnings.warn(f"sweep: Ray is already initialised; address={address!r} is ignored", RuntimeWarning,
                          stacklevel=3)
    else:
        kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        if address is None:  # a local Ray of this machine's CPUs (or workers x cpus_per_task)
            kwargs["num_cpus"] = int(math.ceil(workers * cpus_per_task)) if workers else _cpus()
        else:
            kwargs["address"] = address
        kwargs.update(ray_init or {})
        # A local Ray's processes inherit this environment: with the driver's sys.path as PYTHONPATH
        # its (prestarted) workers import aeprobe and fn's module as the driver does. Restored after.
        saved = os.environ.get("PYTHONPATH")
        if address is None:
            os.environ["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
        try:
            ray.init(**kwargs)
        finally:
            if saved is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = saved
        started = True
    pending: dict[Any, int] = {}
    try:
        task = ray.remote(_call_remote).options(num_cpus=cpus_per_task, num_gpus=gpus_per_task, **(ray_options or {}))
        fn_ref = ray.put(fn)  # shipped once, not with every task
        queue = list(jobs)
        limit = workers or len(queue)
        while queue or pending:
            while queue and len(pending) < limit:
                i, config = queue.pop(0)
                pending[task.remote(fn_ref, config, threads, encode)] = i
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                i = pending.pop(ref)
                try:
                    outcome = ray.get(ref)
                except Exception as exc:  # the task could not run: worker crash, fn not importable, ...
                    outcome = {"ok": False, "exception": exc, "traceback": str(exc),
                               "error": f"{type(exc).__name__}: Ray could not run this configuration"}
                done(i, outcome)
    except BaseException:
        for ref in list(pending):
            try:
                ray.cancel(ref, force=True)
            except Exception:
                pass
        raise
    finally:
        if started:
            ray.shutdown()


# ------------------------------------------------------------------------------------ sweep


def sweep(
    fn: Callable[[Any], Any],
    configs: Iterable[Any],
    *,
    backend: str = "local",
    out: str | os.PathLike | None = None,
    workers: int | None = None,
    threads: int | None = None,
    resume: bool = True,
    progress: bool = False,
    address: str | None = None,
    cpus_per_task: float = 1,
    gpus_per_task: float = 0,
    ray_init: Mapping[str, Any] | None = None,
    ray_options: Mapping[str, Any] | None = None,
) -> list:
    """Run ``fn(config)`` for every config; return the results in config order (see the module doc).

    Args:
        fn: called once per config; for ``"processes"`` a module-level (importable) function.
        configs: JSON-like configurations (dicts, dataclasses, ...; see the module doc).
        backend: ``"local"`` | ``"processes"`` | ``"ray"``.
        out: folder of the stored results (resume); ``None`` stores nothing.
        workers: configs running at once: processes in the pool (default: the CPUs, at most the
            number of configs to run); for Ray a cap on tasks in flight (default: none) and, when
            the sweep starts Ray itself, its CPUs are ``workers * cpus_per_task``; ignored by local.
        threads: torch intra-op threads per run. Default: unchanged (local), CPUs // workers
            (processes), ``cpus_per_task`` rounded up (Ray).
        resume: with ``out``, read finished configs instead of running them again.
        progress: show a progress bar (tqdm).
        address: Ray cluster to connect to (``"auto"``, ``"ray://host:10001"``, ...).
        cpus_per_task, gpus_per_task: resources of each Ray task.
        ray_init: extra keyword arguments of ``ray.init`` (when the sweep starts Ray).
        ray_options: extra ``.options(...)`` of the Ray tasks (``memory``, ``resources``, ``max_retries``...).

    Raises:
        SweepError: after every config ran, if any failed (the others are saved and returned on it).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    if isinstance(configs, (str, bytes, Mapping)):
        raise TypeError("configs must be a list of configurations (got a single one?)")
    configs = list(configs)
    if workers is not None and int(workers) < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if threads is not None and int(threads) < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    if cpus_per_task <= 0 or gpus_per_task < 0:
        raise ValueError(f"cpus_per_task must be > 0 and gpus_per_task >= 0, got {cpus_per_task}, {gpus_per_task}")

    n = len(configs)
    results: list[Any] = [None] * n
    store = _Store(Path(out), fn) if out is not None else None
    keys: list[str | None] = [None] * n
    canons: list[Any] = [None] * n
    first_of: dict[str, int] = {}
    todo: list[int] = []
    cached: list[int] = []
    copies: list[int] = []  # configs equal to an earlier one: take its result
    if store is not None:
        for i, c in enumerate(configs):  # validate every config before running any
            canons[i] = canonical_config(c, f"configs[{i}]")
            text = _dumps_canonical(canons[i])
            keys[i] = hashlib.sha256(text.encode()).hexdigest()[:16]
            if keys[i] in first_of:
                copies.append(i)
                continue
            first_of[keys[i]] = i
            found, value = store.load(i, keys[i], text) if resume else (False, None)
            if found:
                results[i] = value
                cached.append(i)
            else:
                todo.append(i)
        store.out.mkdir(parents=True, exist_ok=True)
    else:
        todo = list(range(n))

    failures: list[SweepFailure] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, initial=n - len(todo) - len(copies), desc=f"sweep ({backend})")

    def done(i: int, outcome: dict) -> None:
        if outcome["ok"]:
            if store is not None:
                store.save(keys[i], canons[i], outcome["value"], outcome["seconds"])
                results[i] = decode_result(outcome["value"])
            else:
                results[i] = outcome["value"]
        else:
            failures.append(SweepFailure(index=i, config=configs[i], key=keys[i], error=outcome["error"],
                                         traceback=outcome["traceback"], exception=outcome.get("exception")))
        if bar is not None:
            bar.update()

    jobs = [(i, configs[i]) for i in todo]
    encode = store is not None
    try:
        if not jobs:
            pass
        elif backend == "local":
            _run_local(fn, jobs, threads, encode, done)
        elif backend == "processes":
            w = min(int(workers or _cpus()), len(jobs))
            t = int(threads) if threads is not None else max(1, _cpus() // w)
            _run_processes(fn, jobs, w, t, encode, done)
        else:
            t = int(threads) if threads is not None else max(1, math.ceil(cpus_per_task))
            _run_ray(fn, jobs, workers, t, encode, done, address=address, cpus_per_task=cpus_per_task,
                     gpus_per_task=gpus_per_task, ray_init=ray_init, ray_options=ray_options)
    finally:
        if bar is not None:
            bar.close()

    failed = {f.index for f in failures}
    for i in copies:
        j = first_of[keys[i]]
        if j in failed:
            failures.append(dataclasses.replace(next(f for f in failures if f.index == j), index=i, config=configs[i]))
        else:
            results[i] = results[j]
    if failures:
        failures.sort(key=lambda f: f.index)
        err = SweepError(failures, results, store.out if store is not None else None)
        raise err from failures[0].exception
    return results
