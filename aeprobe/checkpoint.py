"""Checkpoints that are written atomically and loaded without ever executing pickled code.

Format: one ``.safetensors`` file.  Tensors (model ``state_dict``, optimizer state tensors,
random-generator states as ``uint8`` tensors) are stored by safetensors; everything else
(epoch, optimizer hyper-parameters, history, user ``meta``) is JSON in the safetensors
header.  The header also carries a SHA-256 of the tensor payload, so a corrupted file is
reported as such instead of silently loading flipped bits.

Writing: temporary file in the same folder, ``fsync``, ``os.replace`` — a run killed
mid-write leaves either the previous checkpoint or the new one, never half a file.

Loading: safetensors parsing never unpickles.  ``load_checkpoint`` also accepts plain
``torch.save`` files (zip/pickle) but only through ``torch.load(weights_only=True)``, which
refuses arbitrary callables (a ``__reduce__`` payload raises :class:`CheckpointError` and is
never run). :func:`read_state_dict` gives the model tensors of any such file (e.g. weights for a
feature loss or a pretrained encoder).
"""
from __future__ import annotations

import hashlib
import json
import os

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from aeprobe.reporting import atomic_write_bytes

FORMAT = "aeprobe-checkpoint"
VERSION = 1

_META_KEY = "aeprobe"
_MODEL = "model."
_OPTIM = "optim."
_RNG = "rng."


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated, corrupted, unsafe or does not fit the model."""


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` returns besides loading the weights in place."""

    path: Path
    epoch: int
    rng_state: dict[str, torch.Tensor] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- helpers


def _payload_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over (name, dtype, shape, bytes) of every tensor, in sorted-name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name]
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        # raw bytes, dtype-agnostic (bfloat16 etc. have no numpy equivalent)
        flat = t.contiguous().reshape(-1)
        if flat.numel():
            h.update(flat.view(torch.uint8).numpy().tobytes())
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
    if not isinstance(epoch, int) or epoch < 0:
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
    header["sha256"] = _payload_digest(tensors)
    data = st_save(tensors, metadata={_META_KEY: json.dumps(header, allow_nan=False)})
    atomic_write_bytes(path, data)
    return path


def _read_file(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Parse ``path`` safely -> (tensors, header).  Raises CheckpointError on any problem."""
    from safetensors.torch import load as st_load

    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    raw = path.read_bytes()
    if len(raw) < 8:
        raise CheckpointError(f"checkpoint {path} is truncated or empty ({len(raw)} bytes)")
    if raw[:2] == b"PK" or raw[:1] == b"\x80":
        return _read_torch_file(path), {}
    try:
        tensors = st_load(raw)
    except Exception as exc:  # SafetensorError, or OverflowError/ValueError on garbage headers
        raise CheckpointError(
            f"checkpoint {path} is not a readable safetensors file (truncated or corrupted?): {exc}"
        ) from exc
    try:  # st_load validated the layout: 8-byte little-endian length, then a JSON header
        header_len = int.from_bytes(raw[:8], "little")
        meta = json.loads(raw[8:8 + header_len]).get("__metadata__") or {}
    except Exception as exc:
        raise CheckpointError(f"checkpoint {path}: cannot read header metadata: {exc}") from exc
    if _META_KEY not in meta:
        # a plain safetensors file (e.g. someone's exported weights): treat as a bare state_dict
        return {f"{_MODEL}{k}": v for k, v in tensors.items()}, {}
    try:
        header = json.loads(meta[_META_KEY])
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"checkpoint {path}: corrupted metadata header: {exc}") from exc
    if header.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path}: unknown format {header.get('format')!r}")
    digest = header.get("sha256")
    if digest is not None and digest != _payload_digest(tensors):
        raise CheckpointError(f"checkpoint {path} is corrupted: tensor data does not match its SHA-256")
    return tensors, header


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


def load_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    strict: bool = True,
) -> Checkpoint:
    """Load weights (and optimizer state when given) from ``path`` into ``model`` in place.

    Returns a :class:`Checkpoint` with the epoch, RNG states and ``meta``.  Raises
    :class:`CheckpointError` for a missing/truncated/corrupted/unsafe file, for missing or
    unexpected keys (``strict=True``), shape mismatches, or an optimizer asked for but not saved.
    Tensors are copied onto the device of the model's existing parameters.
    """
    path = Path(path)
    tensors, header = _read_file(path)
    model_sd = {k[len(_MODEL):]: v for k, v in tensors.items() if k.startswith(_MODEL)}
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
    model.load_state_dict(model_sd, strict=strict)

    if optimizer is not None:
        if "optimizer" not in header:
            raise CheckpointError(f"checkpoint {path} holds no optimizer state")
        saved_cls = header.get("optimizer_class")
        if saved_cls != type(optimizer).__name__:
            raise CheckpointError(
                f"checkpoint {path} holds {saved_cls} state but the optimizer is {type(optimizer).__name__}"
            )
        opt_tensors = {k: v for k, v in tensors.items() if k.startswith(_OPTIM)}
        try:
            optimizer.load_state_dict(_join_optimizer_state(opt_tensors, header["optimizer"]))
        except (ValueError, KeyError, RuntimeError) as exc:
            raise CheckpointError(f"checkpoint {path}: optimizer state does not fit: {exc}") from exc

    rng = {k[len(_RNG):]: v for k, v in tensors.items() if k.startswith(_RNG)}
    return Checkpoint(
        path=path,
        epoch=int(header.get("epoch", 0)),
        rng_state=rng,
        meta=_from_jsonable(header.get("meta", {})),
    )


def read_state_dict(path: str | os.PathLike, *, prefix: str | None = None) -> dict[str, torch.Tensor]:
    """The model tensors stored in ``path`` (safetensors or a weights-only ``torch.save`` file).

    ``prefix``: keep only keys starting with it, with the prefix removed (``"encoder."``).
    Raises :class:`CheckpointError` for a missing, corrupted or unsafe file
    or when no key has the prefix.
    """
    tensors, _ = _read_file(Path(path))
    sd = {k[len(_MODEL):]: v for k, v in tensors.items() if k.startswith(_MODEL)}
    if prefix:
        sub = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
        if not sub:
            heads = sorted({k.split(".", 1)[0] + "." for k in sd})[:8]
            raise CheckpointError(f"{path}: no weights under prefix {prefix!r}; top-level prefixes: {heads}")
        sd = sub
    return sd
