"""Checkpoints that are written atomically and loaded without ever executing pickled code.

    save_checkpoint("run/ck.safetensors", model, opt, epoch=3, meta={"note": "lr 1e-3"})
    ck = load_checkpoint("run/ck.safetensors", model, opt)   # in place; ck.epoch == 3
    ck = read_checkpoint("run/ck.safetensors")               # epoch, RNG states, meta only

Format (version 2): one ``.safetensors`` file.  Tensors (model ``state_dict``, optimizer state
tensors, random-generator states as ``uint8`` tensors) are stored by safetensors; everything
else (epoch, optimizer hyper-parameters, history, user ``meta``) is JSON in the safetensors
header.  A SHA-256 over that JSON *and* every tensor (name, dtype, shape, bytes) is stored
next to it, so a corrupted file -- flipped bits in the weights or in the metadata -- is
reported as such instead of silently loading wrong numbers.  The checksum detects
corruption, not tampering: anyone who can edit the file can recompute it.

Writing: temporary file in the same folder, ``fsync``, ``os.replace`` (see
:func:`aeprobe.reporting.atomic_writer`) -- a run killed mid-write leaves either the previous
checkpoint or the new one, never half a file.

Loading: the file is recognised by parsing its safetensors header (8-byte little-endian
length, then a JSON table of the tensors); only a file that is not a safetensors file is
tried as a ``torch.save`` (zip/pickle) file, and only through
``torch.load(weights_only=True)``, which refuses arbitrary callables (a ``__reduce__``
payload raises :class:`CheckpointError` and is never run).  Everything is validated before
anything is written: after any refused load the model and the optimizer are bit-identical to
before.

Files without an aeprobe checksum: an aeprobe checkpoint whose checksum is missing is refused
(:class:`CheckpointError`; aeprobe always writes one).  Foreign files (a plain safetensors
state_dict, a ``torch.save`` state_dict) cannot carry one: :func:`load_checkpoint` loads them
with an :class:`UnverifiedCheckpointWarning`; :func:`read_state_dict`, whose purpose is reading
such files (pretrained weights), loads them silently.  Version-1 checkpoints (checksum over
the tensors only) still load, with that warning.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from aeprobe.reporting import atomic_write_bytes

FORMAT = "aeprobe-checkpoint"
VERSION = 2

_META_KEY = "aeprobe"
_DIGEST_KEY = "aeprobe.sha256"
_MODEL = "model."
_OPTIM = "optim."
_RNG = "rng."


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated, corrupted, unsafe or does not fit the model."""


class UnverifiedCheckpointWarning(UserWarning):
    """A file was loaded whose content no aeprobe checksum covers (corruption cannot be detected)."""


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` returns besides loading the weights in place.

    ``verified``: True when an aeprobe SHA-256 covered the whole file (tensors and metadata).
    """

    path: Path
    epoch: int
    rng_state: dict[str, torch.Tensor] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    verified: bool = True


# ----------------------------------------------------------------------------- helpers


def _tensor_bytes(t: torch.Tensor):
    """The raw bytes of ``t`` as a buffer, dtype-agnostic (bfloat16 etc. have no numpy equivalent)."""
    flat = t.detach().to("cpu").contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy() if flat.numel() else b""


def _payload_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """Version-1 checksum: SHA-256 over (name, dtype, shape, bytes) of every tensor, sorted by name."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name]
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(_tensor_bytes(t))
    return h.hexdigest()


def _digest(header_json: str, tensors: Mapping[str, torch.Tensor]) -> str:
    """Version-2 checksum: SHA-256 over the exact header JSON and every tensor (name, dtype,
    shape, bytes; sorted by name), each field length-prefixed so no two contents collide."""
    h = hashlib.sha256(b"aeprobe-checkpoint/2\0")

    def field(data) -> None:
        data = memoryview(data).cast("B")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)

    field(header_json.encode("utf-8"))
    for name in sorted(tensors):
        t = tensors[name]
        field(name.encode("utf-8"))
        field(str(t.dtype).encode())
        field(str(tuple(t.shape)).encode())
        field(_tensor_bytes(t))
    return h.hexdigest()


def _to_cpu_tensor(t: torch.Tensor) -> torch.Tensor:
    # clone: safetensors refuses tensors sharing storage (tied weights) and non-contiguous
    # layouts (channels_last); a fresh contiguous copy is always serialisable.
    return t.detach().to("cpu").contiguous().clone()


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        if value.numel() == 1:
            return value.item()
        return value.tolist()
    if isinstance(value, tuple):
        return {"__tuple__": [_jsonable(v) for v in value]}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, float) and value != value:  # NaN survives as a string
        return {"__float__": "nan"}
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return {"__float__": "inf" if value > 0 else "-inf"}
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"checkpoint metadata value of type {type(value).__name__} is not JSON-serialisable")


def _from_jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__tuple__"}:
            return tuple(_from_jsonable(v) for v in value["__tuple__"])
        if set(value) == {"__float__"}:
            return float(value["__float__"])
        return {k: _from_jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_jsonable(v) for v in value]
    return value


def _split_optimizer_state(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Optimizer ``state_dict`` -> (tensors, JSON-able remainder)."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, per_param in state_dict.get("state", {}).items():
        for key, val in per_param.items():
            if isinstance(val, torch.Tensor):
                tensors[f"{_OPTIM}{idx}.{key}"] = _to_cpu_tensor(val)
            else:
                scalars.setdefault(str(idx), {})[key] = _jsonable(val)
    rest = {"param_groups": _jsonable(state_dict.get("param_groups", [])), "scalars": scalars}
    return tensors, rest


def _join_optimizer_state(tensors: Mapping[str, torch.Tensor], rest: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for name, val in tensors.items():
        idx, key = name[len(_OPTIM):].split(".", 1)
        state.setdefault(int(idx), {})[key] = val
    for idx, per_param in rest.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(_from_jsonable(per_param))
    return {"state": state, "param_groups": _from_jsonable(rest.get("param_groups", []))}


# ----------------------------------------------------------------------------- public API


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    epoch: int,
    rng_state: Mapping[str, torch.Tensor] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model`` (+ ``optimizer``, RNG states, ``meta``) to ``path`` atomically.

    ``rng_state`` maps a name to a generator state (``torch.Generator.get_state()``, a uint8
    tensor); ``meta`` must be JSON-serialisable (tuples, NaN and inf round-trip).
    Returns the path written.
    """
    from safetensors.torch import save as st_save

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise ValueError(f"epoch must be a non-negative int, got {epoch!r}")
    path = Path(path)
    tensors = {f"{_MODEL}{k}": _to_cpu_tensor(v) for k, v in model.state_dict().items()}
    header: dict[str, Any] = {"format": FORMAT, "version": VERSION, "epoch": epoch}
    if optimizer is not None:
        opt_tensors, opt_rest = _split_optimizer_state(optimizer.state_dict())
        tensors.update(opt_tensors)
        header["optimizer"] = opt_rest
        header["optimizer_class"] = type(optimizer).__name__
    for name, state in (rng_state or {}).items():
        if not isinstance(state, torch.Tensor):
            raise TypeError(f"rng_state[{name!r}] must be a tensor (Generator.get_state()), got {type(state).__name__}")
        tensors[f"{_RNG}{name}"] = _to_cpu_tensor(state)
    header["meta"] = _jsonable(dict(meta or {}))
    header_json = json.dumps(header, allow_nan=False)
    data = st_save(tensors, metadata={_META_KEY: header_json, _DIGEST_KEY: _digest(header_json, tensors)})
    atomic_write_bytes(path, data)
    return path


def _safetensors_header(raw: bytes) -> dict | None:
    """The JSON header of a safetensors file, or None when ``raw`` is not one.

    Layout: 8-byte little-endian header length ``n``, then ``n`` bytes of JSON: an object whose
    entries (other than ``__metadata__``) each describe a tensor by dtype, shape, data_offsets.
    """
    if len(raw) < 8:
        return None
    n = int.from_bytes(raw[:8], "little")
    if n < 2 or 8 + n > len(raw):
        return None
    try:
        header = json.loads(raw[8:8 + n])
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(header, dict):
        return None
    for key, val in header.items():
        if key == "__metadata__":
            if val is not None and not isinstance(val, dict):
                return None
        elif not (isinstance(val, dict) and {"dtype", "shape", "data_offsets"} <= set(val)):
            return None
    return header


def _read_file(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], bool]:
    """Parse ``path`` safely -> (tensors, aeprobe header or {}, verified).

    Raises CheckpointError on any problem: missing, truncated, corrupted (checksum), unsafe.
    """
    from safetensors.torch import load as st_load

    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    raw = path.read_bytes()
    if len(raw) < 8:
        raise CheckpointError(f"checkpoint {path} is truncated or empty ({len(raw)} bytes)")
    st_header = _safetensors_header(raw)
    if st_header is None:
        if raw[:2] == b"PK" or raw[:1] == b"\x80":  # zip (torch.save) or pickle
            return _read_torch_file(path), {}, False
        raise CheckpointError(
            f"checkpoint {path} is neither a safetensors file (its header does not parse: truncated or "
            f"corrupted?) nor a torch.save file"
        )
    try:
        tensors = st_load(raw)
    except Exception as exc:  # SafetensorError, or OverflowError/ValueError on inconsistent offsets
        raise CheckpointError(
            f"checkpoint {path} is not a readable safetensors file (truncated or corrupted?): {exc}"
        ) from exc
    meta = st_header.get("__metadata__") or {}
    if _META_KEY not in meta:
        # a plain safetensors file (e.g. someone's exported weights): a bare state_dict, no checksum
        return {f"{_MODEL}{k}": v for k, v in tensors.items()}, {}, False
    header_json = meta[_META_KEY]
    try:
        header = json.loads(header_json)
    except (TypeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"checkpoint {path}: corrupted metadata header: {exc}") from exc
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        fmt = header.get("format") if isinstance(header, dict) else type(header).__name__
        raise CheckpointError(f"checkpoint {path}: unknown format {fmt!r}")
    version = header.get("version")
    if version == 1:
        digest = header.get("sha256")
        if digest is None:
            raise CheckpointError(f"checkpoint {path} carries no SHA-256 checksum (aeprobe always writes one): "
                                  f"its header was altered; refusing to load unverified data")
        if digest != _payload_digest(tensors):
            raise CheckpointError(f"checkpoint {path} is corrupted: tensor data does not match its SHA-256")
        warnings.warn(
            f"checkpoint {path} is a version-1 aeprobe checkpoint: its checksum covers the tensors but not the "
            f"metadata (epoch, history, optimizer settings); save it again to get a full checksum",
            UnverifiedCheckpointWarning, stacklevel=3,
        )
        return tensors, header, False
    if version != VERSION:
        raise CheckpointError(f"checkpoint {path}: unsupported version {version!r} (this aeprobe reads 1 and 2)")
    digest = meta.get(_DIGEST_KEY)
    if digest is None:
        raise CheckpointError(f"checkpoint {path} carries no SHA-256 checksum (aeprobe always writes one): "
                              f"its header was altered; refusing to load unverified data")
    if digest != _digest(header_json, tensors):
        raise CheckpointError(
            f"checkpoint {path} is corrupted: its tensors or metadata do not match its SHA-256"
        )
    return tensors, header, True


def _unpickler_reason(exc: Exception) -> str:
    """The informative line of torch's weights-only error (e.g. 'Unsupported global: GLOBAL os.system')."""
    text = str(exc)
    marker = "WeightsUnpickler error:"
    if marker in text:
        lines = [ln.strip() for ln in text.split(marker, 1)[1].splitlines() if ln.strip()]
        if lines:
            return lines[0]
    return text.splitlines()[0] if text else ""


def _read_torch_file(path: Path) -> dict[str, torch.Tensor]:
    """A ``torch.save`` file, loaded with ``weights_only=True`` only (no arbitrary unpickling)."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"refusing to load {path}: it is a pickle/torch.save file that the safe loader "
            f"(torch.load(weights_only=True)) rejects — it may contain executable code, or it is "
            f"truncated/corrupted ({type(exc).__name__}: {_unpickler_reason(exc)}). "
            f"Do not load it with weights_only=False unless you fully trust its source."
        ) from exc
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: torch.save file does not hold a state_dict of tensors")
    return {f"{_MODEL}{k}": v for k, v in obj.items()}


def _as_checkpoint(path: Path, tensors: Mapping[str, torch.Tensor], header: dict, verified: bool) -> Checkpoint:
    rng = {k[len(_RNG):]: v for k, v in tensors.items() if k.startswith(_RNG)}
    return Checkpoint(
        path=path,
        epoch=int(header.get("epoch", 0)),
        rng_state=rng,
        meta=_from_jsonable(header.get("meta", {})),
        verified=verified,
    )


def _check_model_fit(path: Path, model: nn.Module, model_sd: Mapping[str, torch.Tensor], strict: bool) -> None:
    """Raise CheckpointError unless ``model.load_state_dict(model_sd, strict)`` can only succeed."""
    own = model.state_dict()
    missing = sorted(set(own) - set(model_sd))
    unexpected = sorted(set(model_sd) - set(own))
    if strict and (missing or unexpected):
        raise CheckpointError(
            f"checkpoint {path} does not fit {type(model).__name__}: missing keys {missing[:8]}"
            f"{'...' if len(missing) > 8 else ''}, unexpected keys {unexpected[:8]}"
            f"{'...' if len(unexpected) > 8 else ''}"
        )
    bad = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in model_sd.items()
        if k in own and v.shape != own[k].shape
    ]
    if bad:
        raise CheckpointError(f"checkpoint {path}: shape mismatch for {bad}")
    kinds = [
        f"{k}: checkpoint {v.dtype} vs model {own[k].dtype}"
        for k, v in model_sd.items()
        if k in own and (v.is_complex() != own[k].is_complex() or v.is_floating_point() != own[k].is_floating_point())
    ]
    if kinds:
        raise CheckpointError(f"checkpoint {path}: incompatible dtypes for {kinds[:8]}")


def _optimizer_state(path: Path, optimizer: torch.optim.Optimizer, tensors: Mapping[str, torch.Tensor],
                     header: dict) -> dict:
    """The optimizer ``state_dict`` stored in the file, checked against ``optimizer``'s structure."""
    if "optimizer" not in header:
        raise CheckpointError(f"checkpoint {path} holds no optimizer state")
    saved_cls = header.get("optimizer_class")
    if saved_cls != type(optimizer).__name__:
        raise CheckpointError(
            f"checkpoint {path} holds {saved_cls} state but the optimizer is {type(optimizer).__name__}"
        )
    try:
        sd = _join_optimizer_state({k: v for k, v in tensors.items() if k.startswith(_OPTIM)}, header["optimizer"])
        groups = sd["param_groups"]
        sizes = [len(g["params"]) for g in groups]
        ids = {i for g in groups for i in g["params"]}
    except (TypeError, KeyError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"checkpoint {path}: malformed optimizer state: {exc}") from exc
    own_sizes = [len(g["params"]) for g in optimizer.param_groups]
    if sizes != own_sizes:
        raise CheckpointError(
            f"checkpoint {path}: optimizer state does not fit: parameter groups of sizes {sizes} in the file, "
            f"{own_sizes} in the optimizer"
        )
    stray = sorted(set(sd["state"]) - ids)
    if stray:
        raise CheckpointError(f"checkpoint {path}: optimizer state for unknown parameter indices {stray[:8]}")
    return sd


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """The epoch, RNG states and ``meta`` of the checkpoint at ``path``, without touching a model.

    Verifies the file exactly as :func:`load_checkpoint` does (``CheckpointError`` when missing,
    truncated, corrupted or unsafe). A foreign file (no aeprobe header) gives epoch 0, empty meta
    and ``verified=False``.
    """
    path = Path(path)
    tensors, header, verified = _read_file(path)
    return _as_checkpoint(path, tensors, header, verified)


def load_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    strict: bool = True,
    check: Callable[[Checkpoint], Any] | None = None,
) -> Checkpoint:
    """Load weights (and optimizer state when given) from ``path`` into ``model`` in place.

    Returns a :class:`Checkpoint` with the epoch, RNG states and ``meta``.  Raises
    :class:`CheckpointError` for a missing/truncated/corrupted/unsafe file, for missing or
    unexpected keys (``strict=True``), shape or dtype-kind mismatches, or an optimizer asked for
    but not saved or of another class or structure.  ``check(checkpoint)``, when given, runs after
    those checks and before anything is written; raising in it refuses the load too (e.g.
    :func:`aeprobe.train.train` compares run configurations there).  Everything is validated
    first: after a refused load ``model`` and ``optimizer`` are bit-identical to before.
    Tensors are copied onto the device of the model's existing parameters.

    A foreign file (plain safetensors or ``torch.save`` state_dict) has no checksum: it loads with
    an :class:`UnverifiedCheckpointWarning`. The checksum detects corruption, not tampering.
    """
    path = Path(path)
    tensors, header, verified = _read_file(path)
    if not header:
        warnings.warn(
            f"{path} is not an aeprobe checkpoint: no checksum covers it, so corruption cannot be detected",
            UnverifiedCheckpointWarning, stacklevel=2,
        )
    ck = _as_checkpoint(path, tensors, header, verified)
    model_sd = {k[len(_MODEL):]: v for k, v in tensors.items() if k.startswith(_MODEL)}
    _check_model_fit(path, model, model_sd, strict)
    opt_sd = _optimizer_state(path, optimizer, tensors, header) if optimizer is not None else None
    if check is not None:
        check(ck)

    # write: the optimizer first (its previous state is kept by reference and put back if
    # anything below fails), then the model, whose fit was fully checked above
    previous = optimizer.state_dict() if opt_sd is not None else None
    if opt_sd is not None:
        try:
            optimizer.load_state_dict(opt_sd)
        except Exception as exc:
            optimizer.load_state_dict(previous)
            raise CheckpointError(f"checkpoint {path}: optimizer state does not fit: {exc}") from exc
    try:
        model.load_state_dict(model_sd, strict=strict)
    except BaseException:
        if previous is not None:
            optimizer.load_state_dict(previous)
        raise
    return ck


def read_state_dict(path: str | os.PathLike, *, prefix: str | None = None) -> dict[str, torch.Tensor]:
    """The model tensors stored in ``path`` (safetensors or a weights-only ``torch.save`` file).

    ``prefix``: keep only keys starting with it, with the prefix removed (``"encoder."``).
    Raises :class:`CheckpointError` for a missing, corrupted or unsafe file
    or when no key has the prefix. Foreign files (no aeprobe checksum) load without a warning:
    reading others' weights is this function's purpose.
    """
    tensors, _, _ = _read_file(Path(path))
    sd = {k[len(_MODEL):]: v for k, v in tensors.items() if k.startswith(_MODEL)}
    if prefix:
        sub = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
        if not sub:
            heads = sorted({k.split(".", 1)[0] + "." for k in sd})[:8]
            raise CheckpointError(f"{path}: no weights under prefix {prefix!r}; top-level prefixes: {heads}")
        sd = sub
    return sd
