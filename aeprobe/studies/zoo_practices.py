"""The practices of seed 003 in the zoo study: decoder upsampling choices scored by the checkerboard
probe, and progressive resizing against direct training (same ConvAE, same seeds)."""
from __future__ import annotations

from typing import Any

import torch

__all__ = ["UPSAMPLERS", "upsampling_study", "progressive_study"]

#: (label, upsample kind, kernel size) of the upsampling comparison
UPSAMPLERS: tuple = (("transposed k3", "transposed", 3), ("transposed k4", "transposed", 4),
                     ("nearest", "nearest", 3), ("bilinear", "bilinear", 3), ("pixel_shuffle", "pixel_shuffle", 3))


def _counter(task):
    """An ``on_epoch_end`` that counts epochs across several trainings into ``task``."""
    seen = [0]

    def on_epoch_end(epoch, history, model) -> None:
        seen[0] += 1
        if task is not None:
            task.update(seen[0])

    return on_epoch_end


def upsampling_study(cfg, data: dict, device, task=None) -> dict[str, Any]:
    """ConvAE with each decoder upsampling choice: test MSE, time, checkerboard probe."""
    from aeprobe.models.conv import ConvAE
    from aeprobe.probes.checkerboard import alias_stats, checkerboard_probe, constant_codes, random_codes
    from aeprobe.studies.evaluate import codes, per_sample_mse, reconstruct
    from aeprobe.train import train

    xtr, xte = data["xc_train"], data["xc_test"]
    c = xtr.shape[1]
    out: dict[str, Any] = {"data": alias_stats(xte), "kinds": {}, "size": data["conv_size"]}
    count = _counter(task)
    for label, kind, k in UPSAMPLERS:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            m = ConvAE(in_channels=c, channels=cfg.conv_channels, latent_channels=cfg.conv_latent, upsample=kind,
                       kernel_size=k)
        res = train(m, xtr, epochs=cfg.conv_epochs, batch_size=cfg.batch_size, lr=cfg.conv_lr, seed=cfg.seed,
                    device=device, progress=False, on_epoch_end=count)
        m.eval()
        zc = codes(m, xte, device=device, flatten=False)
        big = (zc.shape[1], zc.shape[2] * cfg.cb_scale, zc.shape[3] * cfg.cb_scale)
        out_size = big[1] * m.factor
        crop = out_size // 4  # keep the central half: away from the zero-padding borders
        rep = checkerboard_probe(m, data_codes=zc, code_shape=big, n=cfg.cb_codes, crop=crop, seed=cfg.seed,
                                 device=device)
        with torch.no_grad():
            dev = next(m.parameters()).device
            img_c = m.decode(constant_codes(1, big, data_codes=zc, seed=cfg.seed).to(dev)).cpu()
            img_r = m.decode(random_codes(1, big, data_codes=zc, seed=cfg.seed + 1).to(dev)).cpu()
        out["kinds"][label] = dict(
            upsample=kind, kernel_size=k, seconds=res.seconds, final_train_mse=res.final_loss,
            test_mse=float(per_sample_mse(m, xte, device=device).mean()), probe=rep,
            recon=alias_stats(reconstruct(m, xte, device=device)),
            _images=(img_c[0, :, crop:out_size - crop, crop:out_size - crop],
                     img_r[0, :, crop:out_size - crop, crop:out_size - crop]))
    if task is not None:
        task.done()
    return out


def progressive_study(cfg, data: dict, device, task=None) -> dict[str, Any]:
    """Same ConvAE, same number of epochs: direct training at full size vs progressive resizing."""
    from aeprobe.models.conv import ConvAE
    from aeprobe.schedules import progressive_resize
    from aeprobe.studies.evaluate import per_sample_mse
    from aeprobe.train import train

    xtr, xte = data["xc_train"], data["xc_test"]
    size = xtr.shape[-1]
    small = max(4, (size // 2) // 4 * 4)
    e1 = max(1, cfg.conv_epochs // 2)
    e2 = max(1, cfg.conv_epochs - e1)

    def fresh():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            return ConvAE(in_channels=xtr.shape[1], channels=cfg.conv_channels, latent_channels=cfg.conv_latent,
                          upsample="nearest")

    kw = dict(batch_size=cfg.batch_size, lr=cfg.conv_lr, device=device, progress=False, on_epoch_end=_counter(task))
    m1 = fresh()
    r1 = train(m1, xtr, epochs=e1 + e2, seed=cfg.seed, **kw)
    m2 = fresh()
    r2 = progressive_resize(m2, xtr, sizes=[small, size], epochs_per_size=[e1, e2], seed=cfg.seed, **kw)
    if task is not None:
        task.done()
    return dict(sizes=[small, size], epochs=[e1, e2],
                direct=dict(seconds=r1.seconds, test_mse=float(per_sample_mse(m1, xte, device=device).mean())),
                progressive=dict(seconds=r2.seconds, test_mse=float(per_sample_mse(m2, xte, device=device).mean()),
                                 seconds_per_size=[r.seconds for r in r2.results]))
