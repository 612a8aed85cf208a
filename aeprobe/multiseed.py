"""Train K copies of one small architecture at once (different inits/seeds/lr) with torch.func.

The K models' parameters are stacked along a new leading dimension
(``torch.func.stack_module_state``), one forward/backward runs all K models through
``vmap(functional_call(...))``, and Adam updates the stacked tensors elementwise — which
is the same update as K independent Adams, since Adam acts per coordinate.  Model k sees
the batch order of ``torch.Generator().manual_seed(seeds[k])``, exactly as
``aeprobe.train.train(model_k, ..., seed=seeds[k])`` would, so the result equals K
sequential runs up to floating-point reassociation (vmapped convs run as grouped convs).

Pays when the model is small enough that per-op overhead dominates (position nets, MLP
AEs); for compute-bound convnets (DiskAE at 64x64) the gain is small — see
``benchmarks/train.py``.  Limitations: modules that mutate buffers in forward (BatchNorm in
train mode) cannot be vmapped (clear ``ValueError``); stochastic losses/regularisers draw
different random numbers per model (``randomness="different"``) and so do not reproduce a
sequential run's draws.

As :func:`aeprobe.train.train` (same ``modes=`` rule): every submodule is trained in the mode
the caller set (all K models must agree; a frozen part in eval mode stays in eval mode, and a
BatchNorm in eval mode is vmappable; a model entirely in eval mode is trained in train mode with
``modes="auto"``), the caller's modes are never changed, the models stay on their own device (the stacked copies are trained on
``device`` and copied back), and a non-finite loss or gradient stops training naming the
epoch, the batch, the model and (for a gradient) the parameter.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import nn

from aeprobe.device import resolve_device
from aeprobe.train import mse_loss, nonfinite_grads, split_loss, puts_in_train_mode
from aeprobe.utils import check_tensor, eval_mode


@dataclass
class MultiTrainResult:
    """``models[k]`` (trained in place, unstacked) with ``histories[k]`` (per-epoch lists as in
    :class:`aeprobe.train.TrainResult`); ``images_per_second`` counts K * n images per epoch."""

    models: list[nn.Module]
    histories: list[dict[str, list[float]]]
    seconds: float
    epochs_run: int
    images_per_second: float


class _Objective(nn.Module):
    """``forward(xb, yb) -> (objective, data loss, reg, extras)`` for one model; vmapped over K."""

    def __init__(self, model: nn.Module, loss_fn, regularizer):
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn
        self.regularizer = regularizer

    def forward(self, xb, yb):
        loss, extras = split_loss(self.loss_fn(self.model, xb, yb), "loss_fn")
        reg = self.regularizer(self.model, xb).reshape(()) if self.regularizer is not None else torch.zeros((), device=xb.device)
        extras = {k: torch.as_tensor(v, dtype=loss.dtype, device=loss.device) for k, v in extras.items()}
        return loss + reg, loss, reg, extras


class _StackedAdam:
    """Adam (Kingma & Ba; torch.optim.Adam's formula, no weight decay) on stacked tensors with
    a per-model learning rate ``lr[k]`` broadcast over each tensor's leading dimension."""

    def __init__(self, params: list[torch.Tensor], lr: torch.Tensor, betas=(0.9, 0.999), eps=1e-8):
        self.params = params
        self.lr = lr
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.step_count = 0
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]

    @torch.no_grad()
    def step(self) -> None:
        self.step_count += 1
        bc1 = 1 - self.beta1 ** self.step_count
        bc2_sqrt = math.sqrt(1 - self.beta2 ** self.step_count)
        for p, m, v in zip(self.params, self.m, self.v):
            if p.grad is None:
                continue
            g = p.grad
            m.lerp_(g, 1 - self.beta1)
            v.mul_(self.beta2).addcmul_(g, g, value=1 - self.beta2)
            denom = (v.sqrt() / bc2_sqrt).add_(self.eps)
            step_size = (self.lr / bc1).reshape((-1,) + (1,) * (p.ndim - 1))
            p.sub_(step_size * m / denom)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None


def _check_vmappable(model: nn.Module) -> None:
    for name, mod in model.named_modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm) and mod.training and mod.track_running_stats:
            raise ValueError(
                f"module {name or type(model).__name__!r} ({type(mod).__name__}) updates its running "
                f"statistics in train mode, which torch.func.vmap cannot do; use GroupNorm/InstanceNorm, "
                f"call torch.func.replace_all_batch_norm_modules_(model) (batch statistics, no running "
                f"stats), or train the models sequentially with aeprobe.train.train"
            )


def _check_same_architecture(models: Sequence[nn.Module]) -> None:
    ref = {k: (tuple(v.shape), v.dtype) for k, v in models[0].state_dict().items()}
    for i, m in enumerate(models[1:], start=1):
        if type(m) is not type(models[0]):
            raise ValueError(f"models[{i}] is a {type(m).__name__}, models[0] a {type(models[0]).__name__}")
        other = {k: (tuple(v.shape), v.dtype) for k, v in m.state_dict().items()}
        if other != ref:
            diff = sorted(set(ref.items()) ^ set(other.items()))[:6]
            raise ValueError(f"models[{i}] does not have the same parameters/shapes as models[0]: {diff}")
    ref_modes = [(name, mod.training) for name, mod in models[0].named_modules()]
    for i, m in enumerate(models[1:], start=1):
        modes = [(name, mod.training) for name, mod in m.named_modules()]
        if modes != ref_modes:
            diff = [f"{a[0] or '<root>'}: {a[1]} vs {b[1]}" for a, b in zip(ref_modes, modes) if a != b][:6]
            raise ValueError(f"models[{i}] has other train/eval modes than models[0] (models[0] vs models[{i}]: "
                             f"{diff}); all models are run with one set of modes")


def train_many(
    models: Sequence[nn.Module],
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    epochs: int,
    batch_size: int,
    lr: float | Sequence[float] = 1e-3,
    seeds: Sequence[int] | None = None,
    loss_fn: Callable | None = None,
    regularizer: Callable | None = None,
    x_val: torch.Tensor | None = None,
    y_val: torch.Tensor | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    randomness: str = "different",
    modes: str = "auto",
) -> MultiTrainResult:
    """Train ``models`` (same architecture, any inits) simultaneously; returns them trained in place.

    ``seeds[k]`` (default ``k``) seeds model k's batch permutation; ``lr`` is one value or one
    per model.  ``loss_fn``/``regularizer`` have the :func:`aeprobe.train.train` signatures and
    must be vmap-compatible (pure torch ops, no ``.item()``).  ``randomness`` is passed to
    ``torch.func.vmap`` for stochastic losses; ``modes`` as in :func:`aeprobe.train.train`.
    """
    from torch.func import functional_call, stack_module_state, vmap

    models = list(models)
    if not models:
        raise ValueError("models is empty")
    if not all(isinstance(m, nn.Module) for m in models):
        raise TypeError("models must be a sequence of nn.Module")
    k_models = len(models)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs must be an int >= 0, got {epochs!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    seeds = list(range(k_models)) if seeds is None else [int(s) for s in seeds]
    if len(seeds) != k_models:
        raise ValueError(f"got {len(seeds)} seeds for {k_models} models")
    lrs = [float(lr)] * k_models if isinstance(lr, (int, float)) else [float(v) for v in lr]
    if len(lrs) != k_models or not all(math.isfinite(v) and v > 0 for v in lrs):
        raise ValueError(f"lr must be a positive number or {k_models} positive numbers, got {lr!r}")
    if modes not in ("auto", "keep", "train"):
        raise ValueError(f"modes must be 'auto', 'keep' or 'train', got {modes!r}")
    _check_same_architecture(models)
    template = copy.deepcopy(models[0])  # carries the modes the K models are run with
    if puts_in_train_mode(template, modes):
        template.train()
    _check_vmappable(template)
    x = check_tensor("x", x)
    n = x.shape[0]
    y = None if y is None else check_tensor("y", y, n=n)
    if x_val is not None:
        x_val = check_tensor("x_val", x_val)
        y_val = None if y_val is None else check_tensor("y_val", y_val, n=x_val.shape[0])
    elif y_val is not None:
        raise ValueError("y_val given without x_val")
    loss_fn = mse_loss if loss_fn is None else loss_fn

    dev = resolve_device(device)
    x = x.to(dev)
    y = None if y is None else y.to(dev)
    x_val = None if x_val is None else x_val.to(dev)
    y_val = None if y_val is None else y_val.to(dev)

    params, buffers = stack_module_state(models)  # new leaf tensors, on the models' device
    frozen = {name for name, p in models[0].named_parameters() if not p.requires_grad}
    # train the stacked copies on dev (the caller's models are not moved); keep frozen ones frozen
    params = {name: p.detach().to(dev).requires_grad_(name not in frozen) for name, p in params.items()}
    buffers = {name: b.to(dev) for name, b in buffers.items()}
    base = _Objective(template.to("meta"), loss_fn, regularizer)
    pkeys = {f"model.{k}": v for k, v in params.items()}
    bkeys = {f"model.{k}": v for k, v in buffers.items()}

    def one(p, b, xb, yb):
        return functional_call(base, (p, b), (xb, yb))

    batched = vmap(one, in_dims=(0, 0, 0, 0), randomness=randomness)
    batched_val = vmap(one, in_dims=(0, 0, None, None), randomness=randomness)
    opt = _StackedAdam(list(params.values()), torch.tensor(lrs, device=dev, dtype=x.dtype))
    gens = []
    for s in seeds:
        g = torch.Generator(device=dev)
        g.manual_seed(s)
        gens.append(g)

    histories: list[dict[str, list[float]]] = [{} for _ in range(k_models)]
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(seeds[0])  # stochastic losses: reproducible, caller's RNG untouched
        seconds = _loop(batched, batched_val, base, pkeys, bkeys, opt, gens, x, y, x_val, y_val, histories,
                        regularizer is not None, epochs=epochs, batch_size=batch_size, progress=progress, dev=dev,
                        model_name=type(models[0]).__name__, param_names=list(params))

    with torch.no_grad():
        for k, m in enumerate(models):
            state = {name: t[k] for name, t in params.items()}
            state.update({name: t[k] for name, t in buffers.items()})
            m.load_state_dict(state)
    return MultiTrainResult(
        models=models,
        histories=histories,
        seconds=seconds,
        epochs_run=epochs,
        images_per_second=(epochs * n * k_models / seconds) if seconds > 0 else float("nan"),
    )


def _loop(batched, batched_val, base, pkeys, bkeys, opt, gens, x, y, x_val, y_val, histories, has_reg, *,
          epochs, batch_size, progress, dev, model_name, param_names) -> float:
    from tqdm.auto import tqdm

    k_models, n = len(histories), x.shape[0]
    seconds = 0.0
    for epoch in tqdm(range(epochs), desc=f"train x{k_models}", disable=not progress, leave=False):
        t0 = time.perf_counter()
        perms = torch.stack([torch.randperm(n, generator=g, device=dev) for g in gens])  # [K, n]
        sums: dict[str, torch.Tensor] = {}
        for b, start in enumerate(range(0, n, batch_size)):
            idx = perms[:, start:start + batch_size]  # [K, B]
            xb = x[idx]
            yb = xb if y is None else y[idx]
            try:
                total, loss, reg, extras = batched(pkeys, bkeys, xb, yb)
            except RuntimeError as exc:
                if epoch == 0 and b == 0:
                    raise ValueError(
                        f"{model_name} (or its loss/regularizer) cannot be run under "
                        f"torch.func.vmap: {exc}. Train sequentially with aeprobe.train.train instead."
                    ) from exc
                raise
            if not bool(torch.isfinite(total).all()):
                bad = torch.nonzero(~torch.isfinite(total)).flatten().tolist()
                raise FloatingPointError(f"non-finite loss for models {bad} at epoch {epoch + 1}, batch {b + 1}")
            opt.zero_grad()
            total.sum().backward()  # models are independent: d(sum)/d(theta_k) = d(loss_k)/d(theta_k)
            bad = nonfinite_grads(list(zip(param_names, opt.params)))
            if bad:
                where = {name: torch.nonzero(~torch.isfinite(p.grad.reshape(k_models, -1)).all(1)).flatten().tolist()
                         for name, p in zip(param_names, opt.params) if name in bad}
                opt.zero_grad()
                raise FloatingPointError(
                    f"non-finite gradient at epoch {epoch + 1}, batch {b + 1} in parameter(s) "
                    + ", ".join(f"{name!r} of models {ks}" for name, ks in where.items())
                    + "; the weights are as before this step"
                )
            opt.step()
            bs = idx.shape[1]
            logged = {"train_loss": total, **extras}
            if has_reg:
                logged.update(data_loss=loss, reg_loss=reg)
            for key, val in logged.items():
                sums[key] = sums.get(key, 0) + val.detach() * bs
        logs = {key: (val / n).tolist() for key, val in sums.items()}
        if x_val is not None:
            with eval_mode(base):  # restores every submodule's own flag (frozen eval parts stay eval)
                logs.update(_evaluate(batched_val, pkeys, bkeys, x_val, y_val, batch_size))
        seconds += time.perf_counter() - t0
        for key, vals in logs.items():
            for k in range(k_models):
                histories[k].setdefault(key, []).append(float(vals[k]))

    return seconds


@torch.no_grad()
def _evaluate(batched_val, pkeys, bkeys, x_val, y_val, batch_size) -> dict[str, list[float]]:
    m = x_val.shape[0]
    sums: dict[str, Any] = {}
    for start in range(0, m, batch_size):
        xb = x_val[start:start + batch_size]
        yb = xb if y_val is None else y_val[start:start + batch_size]
        _, loss, _, extras = batched_val(pkeys, bkeys, xb, yb)
        for key, val in {"val_loss": loss, **{f"val_{k}": v for k, v in extras.items()}}.items():
            sums[key] = sums.get(key, 0) + val * len(xb)
    return {key: (val / m).tolist() for key, val in sums.items()}
