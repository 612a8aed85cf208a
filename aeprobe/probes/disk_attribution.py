r"""Attribution of a disk code to pixels: does the encoder integrate over the disk? (Newson et al., Sect. 4.2)

If the encoder computes ``z ~ <w, x>`` with ``w`` roughly constant over the image (an integral over
the disk, so ``z`` is proportional to the area), the attribution of ``z`` to the pixels is spread
evenly *inside* the disk. :func:`disk_attribution` uses :func:`aeprobe.attribution.attribute_code`
(captum; integrated gradients from a zero baseline by default) and reports

* ``inside_fraction``: ``sum_{|p-c| <= r + margin} |A_p| / sum_p |A_p|`` averaged over the disks.
  Caveat: integrated gradients from a zero baseline give ``A_p = x_p * (mean gradient)``, which is
  zero wherever the input is zero, so this fraction is close to 1 for *any* encoder on blurred
  disks (up to the blur tail beyond ``r + margin``); it checks the wrapper more than the encoder;
* ``density_cv``: the informative number -- the coefficient of variation (std / |mean|) of the
  attribution *per unit of input* ``A_p / x_p`` over the pixels well inside the disk
  (``|p - c| <= r - margin`` and ``x_p > 0.5``), averaged over disks. For integrated gradients this
  is the path-averaged gradient ``dz/dx_p``: 0 means every pixel of the disk counts the same
  (pure area integration); large values mean a weighted integral;
* ``density_profile``: mean ``A_p / x_p`` in rings around the centre (pixels with ``x_p > 0.5``),
  pooled over disks, for plotting;
* ``completeness``: largest ``|delta| / |z(x) - z(0)|`` (captum's convergence check).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from aeprobe.attribution import attribute_code
from aeprobe.view import as_view

__all__ = ["DiskAttributionReport", "disk_attribution"]


@dataclass
class DiskAttributionReport:
    radii: np.ndarray
    inside_fraction: float
    density_cv: float
    density_t: np.ndarray
    density_profile: np.ndarray
    attributions: np.ndarray  # [N, H, W]
    completeness: float | None
    method: str
    margin: float


def disk_attribution(model, x, radii, *, center=None, margin: float = 1.0,
                     method: str = "integrated_gradients", n_steps: int = 32) -> DiskAttributionReport:
    """Attribute the code to the pixels of disks ``x`` ``[N, 1, H, W]`` of radii ``radii``.

    ``model``: an autoencoder or an :func:`aeprobe.autoencoder` view with ``encode`` (refused
    before any work otherwise); a code of several units is attributed through its sum.
    """
    ae = as_view(model)
    ae.require("encode", probe="disk_attribution")
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    if x.ndim != 4 or x.shape[1] != 1:
        raise ValueError(f"x must be [N, 1, H, W], got shape {tuple(x.shape)}")
    r = np.asarray(radii.detach().cpu().numpy() if hasattr(radii, "detach") else radii, dtype=float).reshape(-1)
    if r.size != x.shape[0]:
        raise ValueError(f"got {x.shape[0]} images but {r.size} radii")
    if not margin >= 0:
        raise ValueError(f"margin must be >= 0, got {margin!r}")
    att = attribute_code(ae, x, unit=None, method=method, n_steps=n_steps)
    A = att.to_numpy().reshape(x.shape[0], x.shape[2], x.shape[3]).astype(float)
    X = x.detach().cpu().double().numpy()[:, 0]
    H, W = X.shape[1:]
    c = ((H - 1) / 2.0, (W - 1) / 2.0) if center is None else (float(center[0]), float(center[1]))
    yy, xx = np.indices((H, W), dtype=float)
    d = np.hypot(yy - c[0], xx - c[1])
    fracs, cvs, dens_d, dens_v = [], [], [], []
    for i in range(A.shape[0]):
        tot = np.abs(A[i]).sum()
        if tot > 0:
            fracs.append(np.abs(A[i])[d <= r[i] + margin].sum() / tot)
        ok = X[i] > 0.5
        dens = np.divide(A[i], X[i], out=np.zeros_like(A[i]), where=ok)
        core = ok & (d <= r[i] - margin)
        if core.sum() >= 4:
            v = dens[core]
            if abs(v.mean()) > 0:
                cvs.append(v.std() / abs(v.mean()))
        dens_d.append(d[ok])
        dens_v.append(dens[ok])
    dd, dv = np.concatenate(dens_d), np.concatenate(dens_v)
    k = np.floor(dd).astype(int)
    cnt = np.bincount(k, minlength=1)
    keep = cnt > 0
    prof_t = (np.bincount(k, weights=dd)[keep] / cnt[keep]) if dd.size else np.zeros(0)
    prof_v = (np.bincount(k, weights=dv)[keep] / cnt[keep]) if dd.size else np.zeros(0)
    comp = None
    if att.delta is not None and att.baseline_value is not None:
        span = (att.value - att.baseline_value).abs().clamp_min(1e-12)
        comp = float((att.delta.abs() / span).max())
    return DiskAttributionReport(
        radii=r, inside_fraction=float(np.mean(fracs)) if fracs else float("nan"),
        density_cv=float(np.mean(cvs)) if cvs else float("nan"), density_t=prof_t, density_profile=prof_v,
        attributions=A, completeness=comp, method=method, margin=float(margin),
    )
