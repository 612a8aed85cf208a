"""aeprobe.sweep: results in config order, identical on the local, processes and Ray backends;
stored under ``out`` so that a second call -- or a call after a kill -- runs nothing that finished.

Runs are counted by files the function itself writes (one per call, into ``cfg["calls"]``), never
by timing. The functions live at module level: the processes and Ray workers import them.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

import aeprobe
from aeprobe.sweeps import SweepError, canonical_config, config_key, decode_result, encode_result, sweep

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


@dataclasses.dataclass
class Report:
    loss: float
    weights: torch.Tensor
    tags: tuple


@dataclasses.dataclass(frozen=True)
class GridCell:
    area: str
    compression: Fraction
    seed: int


def record_call(cfg) -> dict:
    """Deterministic in the config; leaves one file per call in ``cfg["calls"]``."""
    cell = cfg["cell"]
    calls = Path(cfg["calls"]) if cfg.get("calls") else None
    if calls is not None:
        (calls / f"{cell.seed}-{os.getpid()}-{uuid.uuid4().hex}").touch()
    if cfg.get("fail") and not (calls / "fixed").exists():
        raise ValueError(f"cell {cell.seed} cannot be computed")
    g = torch.Generator().manual_seed(cell.seed)
    w = torch.randn(3, 2, generator=g)
    return {
        "cell": cell,
        "report": Report(loss=float(w.square().mean()), weights=w, tags=("a", cell.seed)),
        "half": w.half(),
        "ints": torch.arange(cell.seed + 1),
        "empty": torch.zeros(0, 4),
        "by_seed": {cell.seed: cell.compression, (1, 2): None},
        "array": np.linspace(0, 1, 4, dtype=np.float32),
        "scalar": np.float64(cell.seed) / 3,
        "nan": float("nan"),
        "path": Path("runs") / cell.area,
        "state": _net(cell.seed).state_dict(),  # an OrderedDict
        "pid": os.getpid(),
        "threads": torch.get_num_threads(),
    }


def _net(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.BatchNorm1d(3))


def grid(calls: Path, n: int = 4, fail: int | None = None) -> list[dict]:
    comps = [Fraction(1, 64), Fraction(1, 4), Fraction(1, 1)]
    return [{"cell": GridCell("SML"[i % 3], comps[i % 3], i), "calls": str(calls), "fail": i == fail}
            for i in range(n)]


def ncalls(calls: Path) -> int:
    return sum(1 for p in calls.iterdir() if p.name != "fixed")


def same(a, b) -> bool:
    """Deep equality: tensors/arrays by value and dtype (NaN equal to NaN), other values by type and ==."""
    if type(a) is not type(b):
        return False
    if isinstance(a, torch.Tensor):
        return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if dataclasses.is_dataclass(a):
        return all(same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    return a == b


def without(results, *keys):
    return [{k: v for k, v in r.items() if k not in keys} for r in results]


@pytest.fixture
def calls(tmp_path):
    d = tmp_path / "calls"
    d.mkdir()
    return d


# ------------------------------------------------------------------------------- local backend


def test_local_sweep_returns_results_in_order_and_a_second_call_runs_nothing(tmp_path, calls):
    configs = grid(calls)
    out = tmp_path / "out"
    first = sweep(record_call, configs, out=out)
    assert ncalls(calls) == 4
    assert [r["cell"].seed for r in first] == [0, 1, 2, 3]
    assert sorted(p.name for p in out.glob("*.json")) == sorted(f"{config_key(c)}.json" for c in configs)
    rec = json.loads((out / f"{config_key(configs[1])}.json").read_text())
    assert rec["config"] == canonical_config(configs[1]) and rec["fn"] == "test_sweep.record_call"

    second = aeprobe.sweep(record_call, configs, out=out)  # the lazy top-level name
    assert ncalls(calls) == 4  # nothing ran again
    assert all(same(a, b) for a, b in zip(first, second))
    # with out, results come back as stored: the same types as fn returned, tensors on the CPU
    fresh = record_call({**configs[2], "calls": str(tmp_path)})
    assert same(without([fresh], "pid"), without([second[2]], "pid"))
    assert second[2]["report"].weights.dtype == torch.float32 and second[2]["half"].dtype == torch.float16


def test_equal_configs_run_once_and_resume_false_runs_everything_again(tmp_path, calls):
    configs = grid(calls, 2)
    out = tmp_path / "out"
    res = sweep(record_call, [configs[0], configs[1], dict(reversed(list(configs[0].items())))], out=out)
    assert ncalls(calls) == 2 and same(res[0], res[2])
    sweep(record_call, configs, out=out, resume=False)
    assert ncalls(calls) == 4


def test_without_out_nothing_is_stored_and_results_are_returned_as_they_are(tmp_path, calls):
    res = sweep(lambda c: (c, [c]), [1, {2}, None])
    assert res == [(1, [1]), ({2}, [{2}]), (None, [None])]
    assert list(tmp_path.iterdir()) == [calls]


def test_a_failing_config_is_reported_after_the_others_which_are_kept(tmp_path, calls):
    configs = grid(calls, 4, fail=1)
    out = tmp_path / "out"
    with pytest.raises(SweepError) as info:
        sweep(record_call, configs, out=out)
    err = info.value
    assert ncalls(calls) == 4  # the configs after the failing one ran too
    assert [f.index for f in err.failures] == [1] and err.failures[0].config is configs[1]
    assert "configs[1]" in str(err) and "ValueError: cell 1 cannot be computed" in str(err)
    assert "record_call" in err.failures[0].traceback and isinstance(err.__cause__, ValueError)
    assert err.results[1] is None and [r["cell"].seed for r in err.results if r] == [0, 2, 3]
    assert len(list(out.glob("*.json"))) == 3

    (calls / "fixed").touch()
    res = sweep(record_call, configs, out=out)
    assert ncalls(calls) == 5  # only the failed config ran again
    assert [r["cell"].seed for r in res] == [0, 1, 2, 3]


def test_a_result_that_cannot_be_stored_fails_its_config_and_says_where(tmp_path):
    def fn(c):
        return {"ok": 1} if c == 0 else {"model": torch.nn.Linear(1, 1)}

    with pytest.raises(SweepError, match=r"configs\[1\].*result\['model'\] is a torch.nn.modules.linear.Linear"):
        sweep(fn, [0, 1], out=tmp_path)
    assert len(list(tmp_path.glob("*.json"))) == 1


def test_stored_files_that_cannot_be_used_are_rerun_with_a_warning(tmp_path, calls):
    configs = grid(calls, 2)
    out = tmp_path / "out"
    sweep(record_call, configs, out=out)
    (out / f"{config_key(configs[0])}.json").write_text('{"truncated')
    with pytest.warns(RuntimeWarning, match=r"cannot use the stored result .* configs\[0\]"):
        sweep(record_call, configs, out=out)
    assert ncalls(calls) == 3

    def other(cfg):
        return record_call(cfg)

    with pytest.warns(RuntimeWarning, match="holds results of 'test_sweep.record_call'"):
        sweep(other, configs, out=out)
    assert ncalls(calls) == 3


# ------------------------------------------------------------------------------- configs and results


def test_config_key_hashes_the_canonical_json():
    cfg = {"b": [1, 2.5, "x"], "a": None}
    assert config_key(cfg) == hashlib.sha256(b'{"a":null,"b":[1,2.5,"x"]}').hexdigest()[:16]
    assert config_key({"a": None, "b": (1, 2.5, "x")}) == config_key(cfg)  # order of keys, tuple = list
    assert config_key(GridCell("S", Fraction(1, 4), 0)) == config_key(
        {"area": "S", "compression": {"$fraction": "1/4"}, "seed": 0})
    assert config_key({"lr": 1}) != config_key({"lr": 1.0}) != config_key({"lr": True})
    assert config_key({"n": np.int64(3)}) == config_key({"n": 3})


def test_configs_that_cannot_be_hashed_are_refused_before_anything_runs(tmp_path, calls):
    configs = grid(calls, 2) + [{"model": {"act": torch.nn.ReLU()}}]
    with pytest.raises(TypeError, match=r"configs\[2\]\['model'\]\['act'\] is a torch.nn.modules.activation.ReLU"):
        sweep(record_call, configs, out=tmp_path)
    with pytest.raises(ValueError, match=r"configs\[0\]\['lr'\] is nan"):
        sweep(record_call, [{"lr": float("nan")}], out=tmp_path)
    with pytest.raises(TypeError, match="str keys"):
        sweep(record_call, [{1: 2}], out=tmp_path)
    assert ncalls(calls) == 0


def test_results_round_trip_through_json_without_pickle():
    value = record_call({"cell": GridCell("M", Fraction(1, 16), 5), "calls": None})
    text = json.dumps(encode_result(value), allow_nan=False)  # strict JSON
    back = decode_result(json.loads(text))
    assert same(back, value)
    net = _net(0)
    net.load_state_dict(back["state"])  # a stored state_dict loads into the model it came from
    assert same(net.state_dict(), value["state"])
    assert same(decode_result(encode_result({"__aeprobe__": 1})), {"__aeprobe__": 1})


def test_a_stored_dataclass_is_only_looked_up_in_imported_modules():
    enc = encode_result(Report(1.0, torch.zeros(1), ()))
    enc["class"] = "antigravity:Report"  # a module that is not imported is never imported
    with pytest.raises(ValueError, match="not imported"):
        decode_result(enc)
    enc["class"] = "os:system"
    with pytest.raises(ValueError, match="does not name a dataclass"):
        decode_result(enc)
    assert "antigravity" not in sys.modules


# ------------------------------------------------------------------------------- processes backend


def test_processes_backend_matches_local_runs_elsewhere_with_one_thread_each(tmp_path, calls):
    configs = grid(calls, 4, fail=2)
    with pytest.raises(SweepError) as info:
        sweep(record_call, configs, backend="processes", workers=2, out=tmp_path / "p")
    assert ncalls(calls) == 4 and [f.index for f in info.value.failures] == [2]
    assert "ValueError: cell 2 cannot be computed" in str(info.value)
    par = info.value.results
    expected_threads = max(1, len(os.sched_getaffinity(0)) // 2)
    assert {r["threads"] for r in par if r} == {expected_threads}
    assert os.getpid() not in {r["pid"] for r in par if r}

    (calls / "fixed").touch()
    loc = sweep(record_call, configs, out=tmp_path / "l")
    par = sweep(record_call, configs, backend="processes", out=tmp_path / "p")  # resumes: one config left
    assert ncalls(calls) == 4 + 4 + 1
    assert all(same(a, b) for a, b in zip(without(loc, "pid", "threads"), without(par, "pid", "threads")))


def die_on_seed_2(cfg) -> dict:
    if cfg["cell"].seed == 2 and not (Path(cfg["calls"]) / "fixed").exists():
        os._exit(3)  # the worker process dies, as if killed
    return record_call(cfg)


def test_a_worker_killed_mid_sweep_loses_only_its_config(tmp_path, calls):
    configs = grid(calls, 3)
    out = tmp_path / "out"
    with pytest.raises(SweepError, match="worker process died") as info:
        sweep(die_on_seed_2, configs, backend="processes", workers=1, out=out)
    assert [f.index for f in info.value.failures] == [2] and ncalls(calls) == 2
    (calls / "fixed").touch()
    res = sweep(die_on_seed_2, configs, out=out)
    assert ncalls(calls) == 3 and [r["cell"].seed for r in res] == [0, 1, 2]


def test_processes_backend_needs_a_module_level_function(tmp_path):
    with pytest.raises(TypeError, match="module-level function"):
        sweep(lambda c: c, [1], backend="processes")


# ------------------------------------------------------------------------------- killed driver


def slow_call(cfg) -> dict:
    time.sleep(cfg.get("sleep", 0))
    return record_call(cfg)


def test_a_killed_sweep_resumes_without_redoing_finished_configs(tmp_path, calls):
    """SIGKILL the process running a sweep after two configs finished; the next call runs the rest."""
    configs = [dict(c, sleep=0.5) for c in grid(calls, 6)]
    out = tmp_path / "out"
    (tmp_path / "configs.json").write_text(json.dumps([dict(c, cell=dataclasses.asdict(c["cell"])) for c in configs],
                                                      default=str))
    script = (
        "import json, sys; from fractions import Fraction\n"
        f"sys.path[:0] = [{str(ROOT)!r}, {str(TESTS)!r}]\n"
        "import test_sweep\nfrom aeprobe.sweeps import sweep\n"
        f"cfgs = json.load(open({str(tmp_path / 'configs.json')!r}))\n"
        "for c in cfgs: c['cell'] = test_sweep.GridCell(c['cell']['area'], Fraction(c['cell']['compression']), "
        "c['cell']['seed'])\n"
        f"sweep(test_sweep.slow_call, cfgs, out={str(out)!r})\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while len(list(out.glob("*.json"))) < 2:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the sweep did not finish two configs in 120 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    done = {p.stem for p in out.glob("*.json")}
    before = ncalls(calls)
    assert 2 <= len(done) < 6 and before in (len(done), len(done) + 1)  # killed mid-config at most once

    res = sweep(slow_call, [dict(c, sleep=0) for c in configs], out=out)  # the sleep is part of the config
    assert ncalls(calls) == before + 6  # sleep changed the configs: all run -- the control
    res = sweep(slow_call, configs, out=out)
    assert ncalls(calls) == before + 6 + (6 - len(done))  # only the unfinished ones
    assert [r["cell"].seed for r in res] == list(range(6))


# ------------------------------------------------------------------------------- Ray backend

def _ray():
    return pytest.importorskip("ray", reason="the Ray backend is an optional extra: pip install aeprobe[ray]")


def test_ray_backend_returns_the_local_results_and_resumes(tmp_path, calls):
    ray = _ray()
    configs = grid(calls, 4)
    loc = sweep(record_call, configs, out=tmp_path / "l", threads=1)
    assert not ray.is_initialized()
    res = sweep(record_call, configs, backend="ray", out=tmp_path / "r", workers=2)
    assert not ray.is_initialized()  # the sweep started Ray, so it shut it down
    assert ncalls(calls) == 8
    assert all(same(a, b) for a, b in zip(without(loc, "pid"), without(res, "pid")))
    assert os.getpid() not in {r["pid"] for r in res}
    again = sweep(record_call, configs, backend="ray", out=tmp_path / "r")
    assert ncalls(calls) == 8 and not ray.is_initialized()  # nothing to run: Ray not even started
    assert all(same(a, b) for a, b in zip(res, again))


def test_ray_backend_uses_and_keeps_a_ray_the_user_started(tmp_path, calls):
    import logging

    ray = _ray()
    configs = grid(calls, 3, fail=1)
    os.environ["PYTHONPATH"], saved = os.pathsep.join(sys.path), os.environ.get("PYTHONPATH")
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    finally:
        os.environ.pop("PYTHONPATH") if saved is None else os.environ.__setitem__("PYTHONPATH", saved)
    try:
        with pytest.raises(SweepError, match=r"configs\[1\].*ValueError: cell 1 cannot be computed"):
            sweep(record_call, configs, backend="ray", out=tmp_path)
        assert ray.is_initialized()
        assert ncalls(calls) == 3 and len(list(tmp_path.glob("*.json"))) == 2
    finally:
        ray.shutdown()


def test_without_ray_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ImportError, match=r"pip install aeprobe\[ray\]"):
        sweep(record_call, [1], backend="ray")
