"""One training loop for every autoencoder in aeprobe.

Minimises, by Adam (Newson et al. Table 1: lr 1e-3, batch 300),

    (1/|B|) sum_{x in B} loss(x)  +  regularizer(model, B)

over mini-batches B drawn by a seeded random permutation of the in-memory training set
(no DataLoader: the data are moved to the device once and indexed there).  The default
loss is the mean squared error ``mean((model(x) - y)**2)`` with ``y = x`` for an
autoencoder (Newson Eq. (1), up to the 1/(N*pixels) normalisation).

Determinism: the batch order comes from a ``torch.Generator`` seeded with ``seed`` and
torch's global RNG (used by stochastic losses, dropout, psi1's neighbour choice) is seeded
with ``seed`` inside a ``fork_rng`` block, so training does not disturb the caller's RNG and
the same call gives bit-identical weights on CPU.  With ``checkpoint=`` the model, Adam
state, both RNG states and the history are saved after every ``checkpoint_every`` epochs;
a killed run restarted with the same arguments resumes and ends bit-identical to an
uninterrupted one.

Train/eval modes (``modes=``): with the default ``"auto"``, a model with at least one module
in train mode is trained with every submodule's ``training`` flag exactly as the caller set it
(a frozen part stays in eval mode through every epoch and validation), and a model entirely in
eval mode -- e.g. just evaluated -- is trained in train mode, as a plain PyTorch loop after
``model.train()`` would; ``"keep"`` never changes a flag (a model entirely in eval mode is then
trained in eval mode), ``"train"`` trains everything in train mode.  Validation runs under
:func:`aeprobe.utils.eval_mode`, and every flag is put back as the caller set it when ``train``
returns or raises.

What else ``train`` leaves as the caller set it: ``requires_grad`` flags, the model's device (it
is moved to ``device`` for training and moved back when ``train`` returns or raises;
``Module.to`` keeps the same ``Parameter`` objects) and the caller's global RNG.  What it
changes: the weights (trained in place), the memory format with ``channels_last=True``, and
the ``.grad`` of the parameters.

Training with a frozen, eval-mode part (a pretrained encoder whose BatchNorm statistics must
not move): ``model.train(); model.encoder.eval()`` and freeze its parameters -- the recipe is in
the docstring of :func:`train`.

Numerical safety: a non-finite loss or a non-finite gradient stops training with a
``FloatingPointError`` naming the epoch, the batch (and the parameter, for a gradient); the
weights are left as they were before that step.

Checkpoints: the history is stored inside the checkpoint (one atomic file), which is the
source of truth; ``<stem>.history.json`` next to it is a readable copy written right after
each checkpoint and rewritten from the checkpoint whenever a run resumes. A kill between the
two writes can leave the JSON copy one save behind until the next resume; the pair read
through :func:`read_history` (or :func:`aeprobe.checkpoint.read_checkpoint`) always matches.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from aeprobe.checkpoint import Checkpoint, CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from aeprobe.device import resolve_device
from aeprobe.utils import check_tensor, eval_mode
from aeprobe.view import Autoencoder, as_view

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], Any]
Regularizer = Callable[[nn.Module, torch.Tensor], torch.Tensor]

_OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}


@dataclass
class TrainResult:
    """Outcome of :func:`train`.

    ``history`` holds per-epoch lists (index i = epoch i+1, including epochs done before a
    resume): ``train_loss`` (objective = data loss + regulariser, sample-weighted mean over
    the epoch), ``data_loss`` and ``reg_loss`` when a regulariser is used, ``val_loss`` when
    ``x_val`` is given, plus any extra floats a ``loss_fn`` logs (``val_<key>`` on validation).
    ``seconds`` and ``images_per_second`` cover only the epochs run in this call
    (``epochs_run`` of them, after ``start_epoch`` epochs restored from the checkpoint);
    ``stopped_early`` is True when ``on_epoch_end`` ended training before ``epochs``.
    """

    history: dict[str, list[float]]
    seconds: float
    epochs_run: int
    images_per_second: float
    start_epoch: int = 0
    checkpoint: Path | None = None
    stopped_early: bool = False

    @property
    def final_loss(self) -> float:
        return self.history["train_loss"][-1] if self.history.get("train_loss") else float("nan")


def mse_loss(model, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
    """Default loss: ``mean((x_hat - yb)**2)`` with ``x_hat`` the reconstruction read through
    :func:`aeprobe.autoencoder` (``model`` a module or a view): a tuple, dict or output object
    returned by ``model(xb)`` is read like every probe reads it."""
    out = as_view(model).reconstruct(xb)
    if out.shape != yb.shape:
        raise ValueError(f"model output shape {tuple(out.shape)} does not match target shape {tuple(yb.shape)}")
    return torch.mean((out - yb) ** 2)


def history_path(checkpoint: str | os.PathLike) -> Path:
    """Where :func:`train` writes the history JSON for a checkpoint path (``<stem>.history.json``)."""
    p = Path(checkpoint)
    return p.with_name(p.stem + ".history.json")


def read_history(checkpoint: str | os.PathLike) -> dict[str, Any]:
    """``{"epoch", "config", "history"}`` of a :func:`train` checkpoint, read from the checkpoint itself.

    Always consistent with the weights in that file (one atomic file), unlike the JSON copy at
    :func:`history_path`, which a kill between the two writes can leave one save behind.
    """
    ck = read_checkpoint(checkpoint)
    return {"epoch": ck.epoch, "config": ck.meta.get("config", {}), "history": ck.meta.get("history", {})}


def split_loss(out: Any, where: str) -> tuple[torch.Tensor, dict[str, Any]]:
    """Split what a ``loss_fn`` returned into ``(scalar loss, {name: extra})``; errors name ``where``."""
    extras: Mapping[str, Any] = {}
    if isinstance(out, tuple):
        if len(out) != 2 or not isinstance(out[1], Mapping):
            raise TypeError(f"{where} must return a scalar tensor or (loss, dict_of_floats)")
        out, extras = out
    if not isinstance(out, torch.Tensor) or out.numel() != 1:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"{where} must return a scalar tensor, got {shape}")
    return out.reshape(()), dict(extras)


def _make_optimizer(optimizer: Any, params, lr: float) -> torch.optim.Optimizer:
    if isinstance(optimizer, str):
        try:
            cls = _OPTIMIZERS[optimizer.lower()]
        except KeyError:
            raise ValueError(f"unknown optimizer {optimizer!r}; choose from {sorted(_OPTIMIZERS)} or pass a callable") from None
        return cls(params, lr=lr)
    if callable(optimizer):
        opt = optimizer(params)
        if not isinstance(opt, torch.optim.Optimizer):
            raise TypeError("optimizer callable must return a torch.optim.Optimizer")
        return opt
    raise TypeError(f"optimizer must be a name or a callable params -> Optimizer, got {type(optimizer).__name__}")


def _run_config(**kw) -> dict[str, Any]:
    return {k: (v if isinstance(v, (int, float, str, bool)) or v is None else str(v)) for k, v in kw.items()}


def train(
    model: nn.Module | Autoencoder,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    epochs: int,
    batch_size: int,
    lr: float = 1e-3,
    loss_fn: LossFn | None = None,
    regularizer: Regularizer | None = None,
    x_val: torch.Tensor | None = None,
    y_val: torch.Tensor | None = None,
    device: str | torch.device | None = None,
    seed: int = 0,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 1,
    resume: bool = True,
    progress: bool = True,
    channels_last: bool = False,
    optimizer: str | Callable[..., torch.optim.Optimizer] = "adam",
    on_epoch_end: Callable[[int, dict[str, list[float]], nn.Module], Any] | None = None,
    modes: str = "auto",
) -> TrainResult:
    """Train ``model`` in place on ``(x, y)`` (``y = x`` when None) and return a :class:`TrainResult`.

    ``model`` is an ``nn.Module`` or an :func:`aeprobe.autoencoder` view (then its module is
    trained, and ``loss_fn`` receives the view). ``loss_fn(model, xb, yb)`` returns a scalar tensor or ``(loss, {name: float})`` (extras
    are logged per epoch); default :func:`mse_loss`.  ``regularizer(model, xb)`` returns a
    scalar already multiplied by its weight (see :mod:`aeprobe.regularizers`); one that has
    ``code_module(model)`` is called with ``code=`` that module's output from the data term's
    forward when the forward ran it on the batch (psi1: a batch is encoded once).
    ``channels_last`` puts the model and 4-D data in NHWC layout (same maths, much faster
    convs on CPU; the model stays NHWC).  ``on_epoch_end(epoch, history, model)`` runs after the
    epoch's checkpoint is written; returning ``True`` stops training.  ``checkpoint=path`` saves
    after every ``checkpoint_every`` epochs and at the end; with ``resume=True`` an existing
    checkpoint of the same run configuration is continued (ValueError if the configuration
    differs, raised before anything is loaded: the model is then unchanged).

    Modes and devices: ``modes="auto"`` trains every submodule in the mode the caller set,
    except that a model entirely in eval mode is trained in train mode; ``"keep"`` and
    ``"train"`` force one rule. Every flag is restored on return. The model is trained on
    ``device`` (default: CUDA if available) and moved back to its own device when ``train``
    returns or raises.

    Training with a frozen, eval-mode part (a pretrained encoder whose BatchNorm statistics must
    not move): put the model in train mode, the part in eval mode, and freeze its parameters::

        model.train()
        model.encoder.eval()                            # BatchNorm keeps its running statistics
        with aeprobe.ablation.freeze(model, "encoder"):  # no gradient step on its weights
            train(model, x, epochs=10, batch_size=64, x_val=x_val)
        assert not model.encoder.training               # eval through every epoch and validation

    ``eval()`` alone lets the optimiser change the weights; ``requires_grad=False`` alone lets
    BatchNorm update its statistics in train mode: a frozen part needs both.

    Raises ``ValueError`` for bad shapes/arguments and ``FloatingPointError`` naming the epoch
    and batch when the loss becomes NaN/inf, or the epoch, batch and parameter when a gradient
    does (weights are left as before that step).
    """
    target = model  # what loss_fn receives: the caller's module or view
    if isinstance(model, Autoencoder):
        model = model.model
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module or an aeprobe.autoencoder(...) view, got {type(model).__name__}")
    for name, val in (("epochs", epochs), ("batch_size", batch_size), ("checkpoint_every", checkpoint_every)):
        if isinstance(val, bool) or not isinstance(val, int):
            raise TypeError(f"{name} must be an int, got {type(val).__name__}")
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")
    x = check_tensor("x", x)
    n = x.shape[0]
    y = x if y is None else check_tensor("y", y, n=n)
    if y_val is not None and x_val is None:
        raise ValueError("y_val given without x_val")
    if x_val is not None:
        x_val = check_tensor("x_val", x_val)
        if x_val.shape[1:] != x.shape[1:]:
            raise ValueError(f"x_val samples have shape {tuple(x_val.shape[1:])}, x samples {tuple(x.shape[1:])}")
        y_val = x_val if y_val is None else check_tensor("y_val", y_val, n=x_val.shape[0])
    loss_fn = mse_loss if loss_fn is None else loss_fn
    if target is not model:
        user_loss = loss_fn
        loss_fn = lambda _module, xb, yb: user_loss(target, xb, yb)  # noqa: E731
    if modes not in ("auto", "keep", "train"):
        raise ValueError(f"modes must be 'auto', 'keep' or 'train', got {modes!r}")
    dev = resolve_device(device)
    saved_modes = [(m, m.training) for m in model.modules()]
    devices = _tensor_devices(model)
    try:
        if puts_in_train_mode(model, modes):
            model.train()
        return _train_on(model, x, y, x_val, y_val, dev, loss_fn, regularizer, epochs=epochs,
                         batch_size=batch_size, lr=lr, seed=seed, checkpoint=checkpoint,
                         checkpoint_every=checkpoint_every, resume=resume, progress=progress,
                         channels_last=channels_last, optimizer=optimizer, on_epoch_end=on_epoch_end)
    finally:
        for m, flag in saved_modes:
            m.training = flag
        _move_back(model, devices, dev)


def puts_in_train_mode(model: nn.Module, modes: str = "auto") -> bool:
    """Whether training under ``modes`` (see :func:`train`) puts the whole model in train mode:
    ``"train"``, or ``"auto"`` with every module in eval mode."""
    return modes == "train" or (modes == "auto" and not any(m.training for m in model.modules()))


def _tensor_devices(model: nn.Module) -> list[tuple[nn.Module, str, torch.device]]:
    """(owner module, name, device) of every parameter and buffer."""
    out = []
    for m in model.modules():
        for store in (m._parameters, m._buffers):
            for name, t in store.items():
                if t is not None:
                    out.append((m, name, t.device))
    return out


def _move_back(model: nn.Module, devices: list[tuple[nn.Module, str, torch.device]], dev: torch.device) -> None:
    """Put every parameter and buffer back on the device it had before training on ``dev``
    (``Module.to`` when the model had one device: the same ``Parameter`` objects are kept)."""
    targets = {d for _, _, d in devices}
    if len(targets) == 1:
        (home,) = targets
        if home != dev:
            model.to(home)
        return
    with torch.no_grad():
        for m, name, d in devices:
            t = m._parameters.get(name) if name in m._parameters else m._buffers.get(name)
            if t is None or t.device == d:
                continue
            if name in m._parameters:
                t.data = t.data.to(d)  # same Parameter object, as Module.to does
            else:
                m._buffers[name] = t.to(d)


def _train_on(model, x, y, x_val, y_val, dev, loss_fn, regularizer, *, epochs, batch_size, lr, seed, checkpoint,
              checkpoint_every, resume, progress, channels_last, optimizer, on_epoch_end) -> TrainResult:
    n = x.shape[0]
    model.to(dev)
    if channels_last and x.ndim == 4:
        model.to(memory_format=torch.channels_last)
    fmt = torch.channels_last if (channels_last and x.ndim == 4) else torch.contiguous_format

    def to_dev(t: torch.Tensor | None) -> torch.Tensor | None:
        if t is None:
            return None
        t = t.to(dev)
        return t.contiguous(memory_format=fmt) if t.ndim == 4 else t

    same_xy = y is x
    x = to_dev(x)
    y = x if same_xy else to_dev(y)
    if x_val is not None:
        same_val = y_val is x_val
        x_val = to_dev(x_val)
        y_val = x_val if same_val else to_dev(y_val)

    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters")
    opt = _make_optimizer(optimizer, params, float(lr))

    ckpt_path = Path(checkpoint) if checkpoint is not None else None
    config = _run_config(
        seed=seed, batch_size=batch_size, lr=float(lr), n_train=n, sample_shape=str(tuple(x.shape[1:])),
        optimizer=optimizer if isinstance(optimizer, str) else getattr(optimizer, "__name__", "callable"),
        model=type(model).__name__,
    )

    gen = torch.Generator(device=dev)
    gen.manual_seed(seed)
    history: dict[str, list[float]] = {}
    start_epoch = 0
    resumed_global_state: torch.Tensor | None = None
    if ckpt_path is not None and resume and ckpt_path.exists():

        def same_run(ck: Checkpoint) -> None:  # runs before load_checkpoint writes anything
            saved_cfg = ck.meta.get("config", {})
            diff = {k: (saved_cfg.get(k), v) for k, v in config.items() if saved_cfg.get(k) != v}
            if diff:
                raise ValueError(
                    f"checkpoint {ckpt_path} was written by a run with a different configuration "
                    f"(saved vs now: {diff}); use another checkpoint path or resume=False"
                )
            if "perm" not in ck.rng_state or "torch" not in ck.rng_state:
                raise CheckpointError(f"checkpoint {ckpt_path} lacks the RNG states needed to resume")

        ck = load_checkpoint(ckpt_path, model, opt, check=same_run)
        gen.set_state(ck.rng_state["perm"])
        resumed_global_state = ck.rng_state["torch"]
        history = {k: list(v) for k, v in ck.meta.get("history", {}).items()}
        start_epoch = ck.epoch
        _write_history(ckpt_path, start_epoch, config, history)  # repair a copy a kill left behind

    fork_devices = [dev] if dev.type == "cuda" else []
    tap = _CodeTap.install(regularizer, model)
    try:
        with torch.random.fork_rng(devices=fork_devices):
            if resumed_global_state is not None:
                _set_global_rng_state(dev, resumed_global_state)
            else:
                torch.manual_seed(seed)
            return _loop(
                model, opt, x, y, x_val, y_val, loss_fn, regularizer if tap is None else tap, gen, dev,
                epochs=epochs, batch_size=batch_size, start_epoch=start_epoch, history=history,
                ckpt_path=ckpt_path, checkpoint_every=checkpoint_every, config=config,
                progress=progress, on_epoch_end=on_epoch_end, memory_format=fmt,
            )
    finally:
        if tap is not None:
            tap.remove()


class _CodeTap:
    """Hands a regularizer the code the data term's forward already computed, instead of letting it
    encode the batch a second time (:func:`aeprobe.regularizers.psi1` encodes every batch).

    Used when the regularizer names the module whose output it reads (``regularizer.code_module(model)``)
    and accepts ``code=``. A forward hook on that module records its last call; the regularizer gets
    that output only when the call's input was the batch itself and the output was not modified in
    place since, else it is called as ``regularizer(model, xb)`` and encodes on its own. The hook lives
    for the training only (removed also when training raises).
    """

    def __init__(self, regularizer, module: nn.Module):
        self.regularizer = regularizer
        self._seen = None
        self._handle = module.register_forward_hook(self._record)

    @classmethod
    def install(cls, regularizer, model: nn.Module) -> "_CodeTap | None":
        find = getattr(regularizer, "code_module", None)
        return None if find is None else cls(regularizer, find(model))

    def _record(self, module, args, output) -> None:
        if args and isinstance(output, torch.Tensor):
            self._seen = (args[0], output, output._version)

    def __call__(self, model: nn.Module, xb: torch.Tensor):
        seen, self._seen = self._seen, None  # drop the reference (and its graph) either way
        if seen is not None and seen[0] is xb and seen[1]._version == seen[2]:
            return self.regularizer(model, xb, code=seen[1])
        return self.regularizer(model, xb)

    def remove(self) -> None:
        self._seen = None
        self._handle.remove()


def _get_global_rng_state(dev: torch.device) -> torch.Tensor:
    if dev.type == "cuda":
        return torch.cuda.get_rng_state(dev)
    return torch.get_rng_state()


def _set_global_rng_state(dev: torch.device, state: torch.Tensor) -> None:
    if dev.type == "cuda":
        torch.cuda.set_rng_state(state, dev)
    else:
        torch.set_rng_state(state)


def _accumulate(sums: dict[str, float], key: str, value: Any, weight: int) -> None:
    v = value.detach() if isinstance(value, torch.Tensor) else float(value)
    sums[key] = sums.get(key, 0.0) + v * weight


def _finalise(sums: dict[str, Any], count: int) -> dict[str, float]:
    return {k: float(v) / count for k, v in sums.items()}


def _loop(
    model, opt, x, y, x_val, y_val, loss_fn, regularizer, gen, dev, *,
    epochs, batch_size, start_epoch, history, ckpt_path, checkpoint_every, config, progress, on_epoch_end,
    memory_format,
) -> TrainResult:
    from tqdm.auto import tqdm

    n = x.shape[0]
    channels_last = memory_format is torch.channels_last
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    seconds = 0.0
    epochs_run = 0
    stopped = False
    bar = tqdm(range(start_epoch, epochs), desc="train", disable=not progress, leave=False,
               initial=0, total=max(epochs - start_epoch, 0))
    for epoch in bar:  # 0-based; "epoch k" in messages and checkpoints is 1-based
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=gen, device=dev)
        sums: dict[str, Any] = {}
        for b, start in enumerate(range(0, n, batch_size)):
            idx = perm[start:start + batch_size]
            xb = x.index_select(0, idx)
            if channels_last:  # index_select returns NCHW-contiguous batches when C > 1
                xb = xb.contiguous(memory_format=torch.channels_last)
            if y is x:
                yb = xb
            else:
                yb = y.index_select(0, idx)
                if channels_last and yb.ndim == 4:
                    yb = yb.contiguous(memory_format=torch.channels_last)
            loss, extras = split_loss(loss_fn(model, xb, yb), "loss_fn")
            total = loss
            if regularizer is not None:
                reg = regularizer(model, xb)
                if not isinstance(reg, torch.Tensor) or reg.numel() != 1:
                    raise ValueError("regularizer must return a scalar tensor")
                total = loss + reg.reshape(())
            if not bool(torch.isfinite(total)):
                what = "regularizer" if regularizer is not None and bool(torch.isfinite(loss)) else "loss"
                raise FloatingPointError(
                    f"non-finite {what} ({float(total.detach())}) at epoch {epoch + 1}, batch {b + 1} "
                    f"(samples {start}..{start + len(idx) - 1} of the epoch's permutation); "
                    f"try a smaller lr or check the data/loss_fn"
                )
            opt.zero_grad(set_to_none=True)
            total.backward()
            bad = nonfinite_grads(named)
            if bad:
                opt.zero_grad(set_to_none=True)
                raise FloatingPointError(
                    f"non-finite gradient at epoch {epoch + 1}, batch {b + 1} (samples {start}..{start + len(idx) - 1} "
                    f"of the epoch's permutation) in parameter {bad[0]!r}"
                    + (f" and {len(bad) - 1} more ({bad[1:4]})" if len(bad) > 1 else "")
                    + f" (loss {float(total.detach()):.6g}); the weights are as before this step"
                )
            opt.step()
            bs = len(idx)
            _accumulate(sums, "train_loss", total, bs)
            if regularizer is not None:
                _accumulate(sums, "data_loss", loss, bs)
                _accumulate(sums, "reg_loss", reg, bs)
            for k, v in extras.items():
                _accumulate(sums, k, v, bs)
        logs = _finalise(sums, n)
        if x_val is not None:
            logs.update(_evaluate(model, x_val, y_val, loss_fn, batch_size))
        seconds += time.perf_counter() - t0
        epochs_run += 1
        for k, v in logs.items():
            history.setdefault(k, []).append(v)
        bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items() if k in ("train_loss", "val_loss")})

        last = epoch + 1 == epochs
        if ckpt_path is not None and ((epoch + 1) % checkpoint_every == 0 or last):
            _save(ckpt_path, model, opt, epoch + 1, gen, dev, history, config)
        if on_epoch_end is not None and on_epoch_end(epoch + 1, history, model) is True:
            stopped = not last
            if ckpt_path is not None and not ((epoch + 1) % checkpoint_every == 0 or last):
                _save(ckpt_path, model, opt, epoch + 1, gen, dev, history, config)
            break
    bar.close()
    return TrainResult(
        history=history,
        seconds=seconds,
        epochs_run=epochs_run,
        images_per_second=(epochs_run * n / seconds) if seconds > 0 else float("nan"),
        start_epoch=start_epoch,
        checkpoint=ckpt_path,
        stopped_early=stopped,
    )


def nonfinite_grads(named: list[tuple[str, torch.Tensor]]) -> list[str]:
    """Names of the parameters in ``[(name, param)]`` whose ``.grad`` holds NaN or inf.

    Fast path: torch's fused finiteness check of GradScaler (``found_inf``, with an unscale by
    exactly 1.0, which leaves every finite value bit-identical) and one sync; the per-tensor scan
    that names the parameters runs only when something is non-finite.
    """
    grads = [(name, p.grad) for name, p in named if p.grad is not None]
    if not grads:
        return []
    vals = [g.coalesce().values() if g.is_sparse else g for _, g in grads]
    try:
        found = torch.zeros(1, device=vals[0].device)
        torch._amp_foreach_non_finite_check_and_unscale_(vals, found, torch.ones(1, device=vals[0].device))
        if not bool(found.item()):
            return []
    except (AttributeError, RuntimeError, TypeError, NotImplementedError):
        pass  # older torch, mixed devices, non-float gradients: the plain scan below decides
    return [name for (name, _), v in zip(grads, vals) if not bool(torch.isfinite(v).all())]


def _save(path, model, opt, epoch, gen, dev, history, config) -> None:
    # the checkpoint (with the history inside) first: it is the source of truth; the JSON copy
    # follows, and a resume rewrites it from the checkpoint (see the module docstring)
    save_checkpoint(
        path, model, opt, epoch=epoch,
        rng_state={"perm": gen.get_state(), "torch": _get_global_rng_state(dev)},
        meta={"config": config, "history": history},
    )
    _write_history(path, epoch, config, history)


def _write_history(path, epoch, config, history) -> None:
    from aeprobe.reporting import write_json

    write_json(history_path(path), {"epoch": epoch, "config": config, "history": history})


@torch.no_grad()
def _evaluate(model, x_val, y_val, loss_fn, batch_size) -> dict[str, float]:
    sums: dict[str, Any] = {}
    m = x_val.shape[0]
    with eval_mode(model):  # restores every submodule's own flag (frozen eval parts stay eval)
        for start in range(0, m, batch_size):
            xb = x_val[start:start + batch_size]
            yb = xb if y_val is x_val else y_val[start:start + batch_size]
            loss, extras = split_loss(loss_fn(model, xb, yb), "loss_fn")
            _accumulate(sums, "val_loss", loss, len(xb))
            for k, v in extras.items():
                _accumulate(sums, f"val_{k}", v, len(xb))
    return _finalise(sums, m)
