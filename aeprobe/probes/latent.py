"""Walking the latent space: linear code interpolation and AE iteration (Manakov et al. Sec. 3.5).

* :func:`interpolate`: encode two images, decode the codes on the straight line between
  them, ``z(t) = (1 - t) z_a + t z_b`` for ``t`` in ``linspace(0, 1, steps)``. Small
  bottleneck areas are reported to morph content, large ones to alpha-blend.
* :func:`iterate`: feed the reconstruction back ``n`` times, ``x_{k+1} = f(x_k)``
  (Bengio et al. 2013: a walk along the learnt manifold). The paper reports that images of
  small-area CAEs still look like data after 100 iterations while large-area ones dissolve.
  :func:`iteration_drift` gives a number for that: the MSE of each kept iterate to the start
  image and to the previous kept iterate (a fixed point has zero step size).

Both return numpy arrays (``float32``, channels first) for :mod:`aeprobe.plots.bottleneck`.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import torch

from aeprobe.utils import check_images
from aeprobe.view import as_view


def _batch(x, name: str) -> tuple[torch.Tensor, bool]:
    """Add a batch dim to a single ``[C, H, W]`` image; returns (batch, was_single)."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if isinstance(x, torch.Tensor) and x.ndim == 3:
        return check_images(x.unsqueeze(0), name), True
    return check_images(x, name), False


def interpolate(model, x_a, x_b, steps: int = 8, *, device=None) -> np.ndarray:
    """Decoded linear interpolation between the codes of ``x_a`` and ``x_b``.

    ``model``: an autoencoder or an :func:`aeprobe.autoencoder` view; needs ``encode`` and
    ``decode`` (refused before any work otherwise). ``x_a``, ``x_b``: single images ``[C, H, W]``
    or batches ``[B, C, H, W]`` of equal shape. Returns ``[steps, C, H, W]`` for single images,
    ``[B, steps, C, H, W]`` for batches; index 0 is ``decode(encode(x_a))``, index ``steps - 1``
    that of ``x_b``.

    Example::

        frames = interpolate(aeprobe.autoencoder(vae), x[0], x[1], 8)   # codes: the mean mu of encode
    """
    ae = as_view(model)
    ae.require("encode", "decode", probe="interpolate")
    if steps < 2:
        raise ValueError(f"steps must be >= 2 (both end points), got {steps}")
    a, single_a = _batch(x_a, "x_a")
    b, single_b = _batch(x_b, "x_b")
    if a.shape != b.shape:
        raise ValueError(f"x_a has shape {tuple(a.shape)} but x_b has {tuple(b.shape)}")
    with ae.evaluating(device):
        za, zb = ae.encode(a), ae.encode(b)
        ts = torch.linspace(0.0, 1.0, steps, device=za.device, dtype=za.dtype)
        frames = [ae.decode((1 - t) * za + t * zb).cpu() for t in ts]
    out = torch.stack(frames, dim=1).numpy().astype(np.float32)  # [B, steps, ...]
    return out[0] if (single_a and single_b) else out


def _keep_list(n: int, keep: Iterable[int] | int | None) -> list[int]:
    if keep is None:
        step = max(1, n // 10)
        ks = list(range(0, n + 1, step))
        if ks[-1] != n:
            ks.append(n)
        return ks
    if isinstance(keep, int):
        if keep < 1:
            raise ValueError(f"keep as an int is the spacing between kept iterations, got {keep}")
        ks = list(range(0, n + 1, keep))
        return ks if ks[-1] == n else ks + [n]
    ks = sorted(set(int(k) for k in keep))
    if not ks or ks[0] < 0 or ks[-1] > n:
        raise ValueError(f"keep must be iteration numbers in [0, {n}], got {list(keep)}")
    return ks


def iteration_steps(n: int = 100, keep: Iterable[int] | int | None = None) -> list[int]:
    """Which iterations :func:`iterate` keeps (0 = the input itself)."""
    return _keep_list(n, keep)


def iterate(model, x, n: int = 100, keep: Iterable[int] | int | None = None, *,
            clamp: tuple[float, float] | None = None, device=None) -> np.ndarray:
    """Apply the AE ``n`` times, ``x_{k+1} = f(x_k)``, keeping iterates ``keep``.

    ``model``: an autoencoder or an :func:`aeprobe.autoencoder` view; ``f`` is its reconstruction
    (so a U-Net read with ``code_at=`` works). ``keep``: iteration numbers in ``[0, n]`` (0 = the
    input), an int spacing, or None (every ``n // 10``, plus ``n``); :func:`iteration_steps` gives
    the resulting list. ``clamp=(lo, hi)`` clips each iterate before feeding it back (default: no
    clipping, as in the paper). Returns ``[len(keep), C, H, W]`` for one image, ``[len(keep), B,
    C, H, W]`` for a batch.
    """
    ae = as_view(model)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    ks = _keep_list(n, keep)
    xb, single = _batch(x, "x")
    kept = []
    with ae.evaluating(device):
        cur = ae.prepare(xb)
        for k in range(n + 1):
            if k > 0:
                out = ae.reconstruct(cur)
                if out.shape != cur.shape:
                    raise ValueError(f"model output shape {tuple(out.shape)} differs from input shape "
                                     f"{tuple(cur.shape)}; iteration needs an autoencoder")
                cur = out if clamp is None else out.clamp(*clamp)
                if not torch.isfinite(cur).all():
                    raise FloatingPointError(f"iterate {k} contains NaN/inf")
            if k in ks:
                kept.append(cur.cpu())
    out = torch.stack(kept).numpy().astype(np.float32)
    return out[:, 0] if single else out


def iteration_drift(frames: np.ndarray) -> dict[str, list[float]]:
    """MSE of each kept iterate to the first frame (``"to_start"``) and to the previous kept
    frame (``"step"``, 0 for the first); ``frames`` as returned by :func:`iterate`."""
    f = np.asarray(frames, dtype=np.float64)
    f = f.reshape(f.shape[0], -1)
    to_start = ((f - f[0]) ** 2).mean(1)
    step = np.concatenate([[0.0], ((f[1:] - f[:-1]) ** 2).mean(1)])
    return {"to_start": to_start.tolist(), "step": step.tolist()}


__all__: Sequence[str] = ["interpolate", "iterate", "iteration_steps", "iteration_drift"]
