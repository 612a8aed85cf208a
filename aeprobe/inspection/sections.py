"""The measurements of ``aeprobe inspect``: one function per section, ``SECTIONS[key](ctx) -> dict``.

Each function reads the model only through the view ``ctx.ae``, calls one probe of aeprobe with
the arguments it names in ``"probe"``, writes its figure into ``ctx.out`` and returns the numbers
(JSON-able) with ``"probe"``, ``"data"`` (which samples, and how many of how many) and
``"figure"``. A section that does not apply raises :class:`NotApplicable` with a one-line reason,
before any work. The readings are computed from these numbers elsewhere
(:mod:`aeprobe.inspection.readings`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from aeprobe.inspection.budget import Budget
from aeprobe.reporting import to_jsonable
from aeprobe.view import Autoencoder

__all__ = ["NotApplicable", "Context", "SECTIONS", "SECTION_TITLES", "strongest_units"]


class NotApplicable(Exception):
    """A section does not apply to this model or data; the message says why, in one line."""


@dataclass
class Context:
    """What every section reads: the view, the data, the budget, where figures go."""

    ae: Autoencoder
    x_train: torch.Tensor
    x_test: torch.Tensor | None
    y_train: np.ndarray | None
    y_test: np.ndarray | None
    budget: Budget
    out: Path
    seed: int = 0
    cli: bool = False
    cache: dict[str, Any] = field(default_factory=dict)

    # ---- data
    @property
    def eval_split(self) -> str:
        """Held-out images when there are some (the fair choice), else the training images."""
        return "test" if self.x_test is not None else "train"

    def subsample(self, split: str, n: int | None, salt: int) -> tuple[torch.Tensor, str, np.ndarray | None]:
        """``(x, note, idx)``: at most ``n`` images of ``split`` (random, seeded by ``seed`` and ``salt``)."""
        x = self.x_train if split == "train" else self.x_test
        what = "training images" if split == "train" else "held-out images"
        total = int(x.shape[0])
        if n is None or total <= n:
            return x, f"all {total} {what}", None
        idx = np.sort(np.random.default_rng([self.seed, salt]).choice(total, size=n, replace=False))
        return x[torch.from_numpy(idx)], f"{n} of {total} {what} (random subset, seed {self.seed})", idx

    # ---- one-line reasons
    def needs(self, piece: str, section: str) -> str:
        ae = self.ae
        model = type(ae.model).__name__
        if piece == "decode":
            why = (f"the view reads the code with code_at={ae.code_at!r} and knows no decoder" if ae.code_at
                   else f"{model} has no decode method or .decoder submodule")
            fix = ("pass --view '{\"decoder\": [NAMES]}' or '{\"decode\": \"METHOD\"}'" if self.cli
                   else "read the model with aeprobe.autoencoder(model, decoder=... | decode=...)")
            return f"{section} needs `decode(z)`, and {why}: {fix}"
        if piece == "encode":
            fix = ("pass --view '{\"encoder\": [NAMES]}', '{\"code_at\": \"NAME\"}' or '{\"encode\": \"METHOD\"}'"
                   if self.cli else "read the model with aeprobe.autoencoder(model, encoder=... | code_at=... | encode=...)")
            return f"{section} needs `encode(x)`, and {model} has no encode method or .encoder submodule: {fix}"
        fix = ("pass --view with encoder and decoder" if self.cli
               else "pass reconstruct= (or encode and decode) to aeprobe.autoencoder")
        return f"{section} needs the reconstruction, and {model} has no forward nor encode and decode: {fix}"

    def require(self, section: str, *pieces: str) -> None:
        have = {"encode": self.ae.can_encode, "decode": self.ae.can_decode, "reconstruct": self.ae.can_reconstruct}
        for p in pieces:
            if not have[p]:
                raise NotApplicable(self.needs(p, section))

    def figure(self, name: str) -> Path:
        return self.out / name

    # ---- shared between sections
    def code_std(self) -> np.ndarray:
        """Per-unit standard deviation of the code (from the code section, else measured here)."""
        if "code_std" not in self.cache:
            x, _, _ = self.subsample("train", self.budget.code_n, salt=1)
            z = self.ae.codes(x).double()
            self.cache["code_std"] = z.std(0, unbiased=False).numpy()
            self.cache["code_shape"] = tuple(self.ae.codes(x[:1], flatten=False).shape[1:])
        return self.cache["code_std"]

    def module_names(self, side: str) -> dict[str, nn.Module]:
        """``{name: module}`` of the encoder or decoder as the view finds them (``{}`` when unknown)."""
        key = f"modules_{side}"
        if key not in self.cache:
            ae = self.ae
            try:
                if side == "encoder":
                    mods = ae.encoder_modules(self.x_train[:1]) if ae.can_encode else {}
                else:
                    if ae.can_decode and ae.can_encode:
                        ae.codes(self.x_train[:1])  # the example code decoder_modules runs decode on
                    mods = ae.decoder_modules() if ae.can_decode else {}
            except (ValueError, TypeError, RuntimeError):
                mods = {}
            self.cache[key] = mods
        return self.cache[key]


def strongest_units(std: np.ndarray, k: int) -> list[int]:
    """The ``k`` units with the largest standard deviation (units that never vary are left out)."""
    order = np.argsort(-std, kind="stable")
    return [int(u) for u in order[:k] if std[u] > 0]


def _under(name: str, roots) -> bool:
    return any(r == "" or name == r or name.startswith(r + ".") for r in roots)


def _params(mods: dict[str, nn.Module]) -> int:
    return sum(p.numel() for p in Autoencoder.parameters_of(mods).values())


# ============================================================================================ sections
def architecture(ctx: Context) -> dict:
    from aeprobe.plots.inspect import plot_architecture
    from aeprobe.weights import layer_weights

    ae = ctx.ae
    enc, dec = ctx.module_names("encoder"), ctx.module_names("decoder")
    layers = []
    for r in layer_weights(ae.model):
        params = r.weight.numel() + (r.bias.numel() if r.bias is not None else 0)
        part = "encoder" if _under(r.name, enc) else "decoder" if _under(r.name, dec) else ""
        layers.append(dict(name=r.name, part=part, type=r.module_type, kind=r.kind,
                           weight_shape=list(r.weight.shape), kernel=None if r.kernel_size is None else list(r.kernel_size),
                           stride=None if r.stride is None else list(r.stride),
                           padding=r.padding if isinstance(r.padding, (int, str)) else list(r.padding or ()),
                           bias=r.bias is not None, params=int(params), in_channels=r.in_channels,
                           out_channels=r.out_channels))
    leaves: dict[str, int] = {}
    for _, m in ae.model.named_modules():
        if next(m.children(), None) is None and not isinstance(m, (nn.Linear, nn.modules.conv._ConvNd)):
            leaves[type(m).__name__] = leaves.get(type(m).__name__, 0) + 1
    x1 = ctx.x_train[:2]
    with ae.evaluating():
        code_shape = list(ae.encode(x1).shape[1:]) if ae.can_encode else None
        out_shape = list(ae.reconstruct(x1).shape[1:]) if ae.can_reconstruct else None
    in_numel = int(np.prod(ctx.x_train.shape[1:]))
    code_numel = None if code_shape is None else int(np.prod(code_shape))
    plot_architecture(layers, ctx.figure("architecture.png"))
    return dict(
        probe="aeprobe.layer_weights(ae.model); parts from ae.encoder_modules(x) / ae.decoder_modules()",
        data="one image (to find the modules encode and decode run, and the shapes)", figure="architecture.png",
        layers=layers, other_modules=leaves, total_params=int(sum(p.numel() for p in ae.model.parameters())),
        encoder_params=_params(enc) if enc else None, decoder_params=_params(dec) if dec else None,
        encoder_modules=sorted(enc), decoder_modules=sorted(dec), input_shape=list(ctx.x_train.shape[1:]),
        code_shape=code_shape, output_shape=out_shape, code_units=code_numel,
        compression=None if not code_numel else in_numel / code_numel,
        conv_decoder=any(l["part"] == "decoder" and l["kind"] != "linear" for l in layers),
        biases=sum(l["bias"] for l in layers), view=repr(ae).splitlines())


def code(ctx: Context) -> dict:
    from aeprobe.probes.code import code_stats

    ctx.require("code statistics", "encode")
    x, note, _ = ctx.subsample("train", ctx.budget.code_n, salt=1)
    st = code_stats(ctx.ae, x, threshold=0.0)
    ctx.cache["code_std"], ctx.cache["code_shape"] = np.asarray(st.std), tuple(st.code_shape)
    st.plot(ctx.figure("code.png"))
    d = st.to_dict()
    d.update(code_size=st.code_size, dead_count=int(st.dead.size), dead_fraction=st.dead_fraction)
    return dict(probe="aeprobe.probes.code.code_stats(ae, x, threshold=0.0)", data=note, figure="code.png", **d)


def identity(ctx: Context) -> dict:
    from aeprobe.plots.inspect import plot_identity
    from aeprobe.probes.identity import identity_tests

    ctx.require("the identity tests", "reconstruct")
    b = ctx.budget
    x, note, _ = ctx.subsample(ctx.eval_split, b.identity_n, salt=2)
    pts = min(b.jacobian_points, x.shape[0])
    rep = identity_tests(ctx.ae, x, jacobian_points=pts, directions=b.jacobian_directions, seed=ctx.seed)
    d = to_jsonable(rep)
    d.update(looks_like_copy=rep.looks_like_copy(0.1), copy_tolerance=0.1)
    plot_identity(d, ctx.figure("identity.png"))
    return dict(probe=f"aeprobe.probes.identity.identity_tests(ae, x, jacobian_points={pts}, "
                      f"directions={b.jacobian_directions}, seed={ctx.seed})",
                data=note + f"; the Jacobian test on the first {pts} of them", figure="identity.png", **d)


def overfitting(ctx: Context) -> dict:
    from aeprobe.plots.inspect import plot_overfitting
    from aeprobe.probes.overfitting import overfitting_split

    if ctx.x_test is None:
        raise NotApplicable("the overfitting split needs held-out images the model was not trained on: "
                            + ("pass --heldout SPEC" if ctx.cli else "pass x_test"))
    ctx.require("the overfitting split", "encode", "decode")
    b = ctx.budget
    xt, note, _ = ctx.subsample("test", b.overfit_heldout, salt=3)
    if xt.shape[0] < 4 or ctx.x_train.shape[0] < 4:
        raise NotApplicable("the overfitting split needs at least 4 training and 4 held-out images")
    rep = overfitting_split(ctx.ae, ctx.x_train, xt, epochs=b.overfit_epochs, control=True,
                            max_train_eval=b.overfit_train_eval, seed=ctx.seed)
    d = to_jsonable(rep)
    d.pop("probe", None)
    d["refit_shortfall"] = None if rep.refit_seen_error is None else rep.refit_seen_error - rep.train_error
    plot_overfitting(d, ctx.figure("overfitting.png"))
    return dict(probe=f"aeprobe.probes.overfitting.overfitting_split(ae, x_train, x_heldout, epochs={b.overfit_epochs}, "
                      f"control=True, max_train_eval={b.overfit_train_eval}, seed={ctx.seed})",
                data=f"{note}; training error on at most {b.overfit_train_eval} training images",
                figure="overfitting.png", **d)


def homogeneity(ctx: Context) -> dict:
    from aeprobe.ablation import bias_parameters, remove_biases
    from aeprobe.inspection.ops import prop1_conditions, record_ops
    from aeprobe.plots.inspect import plot_homogeneity
    from aeprobe.probes.homogeneity import decoder_homogeneity
    from theory.homogeneity import CONDITIONS

    ctx.require("decoder homogeneity", "decode", "encode")
    b = ctx.budget
    x, note, _ = ctx.subsample(ctx.eval_split, max(4 * b.homogeneity_codes, 64), salt=4)
    ae = ctx.ae
    z = ae.codes(x, flatten=False)
    names = [n for n in ctx.module_names("decoder") if not n.startswith("<")]
    biases = bias_parameters(ae.model, names) if names else {}
    kw = dict(data_codes=z, max_codes=b.homogeneity_codes, seed=ctx.seed)
    as_trained = decoder_homogeneity(ae, **kw)
    zeroed = None
    with ae.evaluating():
        if biases:
            with remove_biases(ae.model, names):
                ops = record_ops(ae.decode, z[:2].to(ae.dtype))
                zeroed = decoder_homogeneity(ae, **kw)
        else:
            ops = record_ops(ae.decode, z[:2].to(ae.dtype))
    can_zero = bool(biases) or bool(names)
    cond = prop1_conditions(ops, biases_zeroed=can_zero)
    ref = zeroed if zeroed is not None else as_trained
    d = dict(
        probe=("with aeprobe.remove_biases(ae.model, decoder modules): " if biases else "")
        + f"aeprobe.probes.homogeneity.decoder_homogeneity(ae, data_codes=z, max_codes={b.homogeneity_codes}, "
          f"seed={ctx.seed}); ops recorded by aeprobe.inspection.ops.record_ops(ae.decode, z)",
        data=f"codes of {note}; {ref.codes.shape[0]} of them tested at {len(ref.lambdas)} scales",
        figure="homogeneity.png", lambdas=ref.lambdas, tol=1e-4,
        max_rel_error_biases=as_trained.max_rel_error, per_lambda_biases=as_trained.rel_errors.max(axis=1),
        max_rel_error_zeroed=None if zeroed is None else zeroed.max_rel_error,
        per_lambda_zeroed=None if zeroed is None else zeroed.rel_errors.max(axis=1),
        max_rel_error=ref.max_rel_error, has_biases=bool(biases), biases_zeroed=sorted(biases),
        decoder_modules_known=bool(names), n_codes=int(ref.codes.shape[0]), signs_used=ref.signs_used,
        n_positive=ref.n_positive, n_negative=ref.n_negative, ops=ops.counts, shifts=ops.shifts,
        products=ops.products, conditions_met=cond.met, conditions_breaking=cond.breaking,
        conditions_unclassified=cond.unclassified, conditions_text=cond.text, theory=CONDITIONS)
    plot_homogeneity(d, ctx.figure("homogeneity.png"))
    return to_jsonable(d)


def checkerboard(ctx: Context) -> dict:
    from aeprobe.plots.inspect import plot_image_rows
    from aeprobe.probes.checkerboard import alias_stats, checkerboard_probe, constant_codes, random_codes

    ctx.require("the checkerboard probe", "decode", "encode")
    convs = list(dict.fromkeys(f"{n}.{s}".strip(".") if s else n for n, m in ctx.module_names("decoder").items()
                               for s, sub in m.named_modules() if isinstance(sub, (nn.Conv2d, nn.ConvTranspose2d))))
    if not convs:
        raise NotApplicable("the checkerboard probe is for a convolutional decoder, and this decoder has no 2-D "
                            "convolution")
    b = ctx.budget
    x, note, _ = ctx.subsample(ctx.eval_split, b.checkerboard_n, salt=5)
    ae = ctx.ae
    z = ae.codes(x, flatten=False)
    xh = ae.decodings(z)
    if xh.ndim != 4 or xh.shape[-1] % 2 or xh.shape[-2] % 2:
        raise NotApplicable(f"the checkerboard probe needs even-sized images [N, C, H, W]; the decoder makes "
                            f"{tuple(xh.shape[1:])}")
    crop = min(xh.shape[-2:]) // 8
    rep = checkerboard_probe(ae, data_codes=z, n=b.checkerboard_codes, crop=crop, seed=ctx.seed)
    data = alias_stats(x, crop=crop) if x.shape == xh.shape else None
    recon = alias_stats(xh, crop=crop)
    k = min(8, b.checkerboard_codes)
    shape = tuple(z.shape[1:])
    zc = constant_codes(k, shape, data_codes=z, seed=ctx.seed).to(ae.dtype)
    zr = random_codes(k, shape, data_codes=z, seed=ctx.seed + 1).to(ae.dtype)
    rows = {"constant codes": ae.decodings(zc), "random codes": ae.decodings(zr), "data": x[:k], "reconstructions": xh[:k]}
    plot_image_rows(rows, ctx.figure("checkerboard.png"))
    return to_jsonable(dict(
        probe=f"aeprobe.probes.checkerboard.checkerboard_probe(ae, data_codes=z, n={b.checkerboard_codes}, crop={crop}, "
              f"seed={ctx.seed}); baseline: alias_stats of the images and their reconstructions",
        data=f"{note} (their codes set the code distribution)", figure="checkerboard.png",
        constant=rep.constant, random=rep.random, data_images=data, reconstructions=recon, crop=crop,
        code_shape=list(shape), spatial_code=len(shape) >= 3, conv_layers=convs))


def attribution(ctx: Context) -> dict:
    from aeprobe.attribution import attribute_code
    from aeprobe.plots.inspect import plot_attribution

    ctx.require("attribution", "encode")
    b = ctx.budget
    std = ctx.code_std()
    units = strongest_units(std, b.attribution_units)
    if not units:
        raise NotApplicable("every code unit is constant on the data: there is no unit to attribute")
    x, note, _ = ctx.subsample(ctx.eval_split, b.attribution_images, salt=6)
    shape = ctx.cache.get("code_shape") or tuple(ctx.ae.codes(x[:1], flatten=False).shape[1:])
    rows, maps = [], {}
    for u in units:
        att = attribute_code(ctx.ae, x, unit=u, n_steps=b.attribution_steps)
        a = att.attributions.detach().double().cpu()
        delta = att.delta.abs().double().cpu()
        change = (att.value - att.baseline_value).abs().double().cpu()
        flat = a.abs().reshape(a.shape[0], -1)
        top = max(1, int(round(0.1 * flat.shape[1])))
        share = (flat.sort(dim=1, descending=True).values[:, :top].sum(1) / flat.sum(1).clamp_min(1e-300))
        rows.append(dict(unit=u, index=[int(i) for i in np.unravel_index(u, shape)], std=float(std[u]),
                         value_mean=float(att.value.double().mean()),
                         baseline_value_mean=float(att.baseline_value.double().mean()),
                         max_abs_delta=float(delta.max()),
                         rel_delta=float(delta.max() / change.max()) if float(change.max()) > 0 else None,
                         top10_share=float(share.mean()), top10_pixels=top))
        maps[f"unit {u}"] = a.numpy()
    plot_attribution(x, maps, ctx.figure("attribution.png"))
    return dict(probe=f"aeprobe.attribute_code(ae, x, unit=k, method='integrated_gradients', "
                      f"n_steps={b.attribution_steps}) for each unit k (baseline: zeros)",
                data=f"{note}; units: the {len(units)} with the largest code standard deviation",
                figure="attribution.png", units=rows, n_steps=b.attribution_steps, baseline="zeros",
                method="integrated_gradients", n_images=int(x.shape[0]))


def ablation(ctx: Context) -> dict:
    from aeprobe.probes.code import unit_ablation

    ctx.require("unit ablation", "encode", "decode")
    b = ctx.budget
    std = ctx.code_std()
    units = strongest_units(std, b.ablation_units)
    if not units:
        raise NotApplicable("every code unit is constant on the data: zeroing one changes nothing to compare")
    x, note, _ = ctx.subsample(ctx.eval_split, b.ablation_n, salt=7)
    ab = unit_ablation(ctx.ae, x, units=units)
    ab.plot(ctx.figure("ablation.png"))
    d = ab.to_dict()
    r = np.asarray(ab.ratio, dtype=float)
    fin = r[np.isfinite(r)]
    m = int(std.size)
    d.update(code_size=m, ratio_median=float(np.median(fin)) if fin.size else None,
             ratio_min=float(fin.min()) if fin.size else None, ratio_max=float(fin.max()) if fin.size else None)
    chosen = "all" if len(units) == m else f"the {len(units)} of {m} units with the largest standard deviation"
    return dict(probe=f"aeprobe.probes.code.unit_ablation(ae, x, units=[{len(units)} units])",
                data=f"{note}; units: {chosen}", figure="ablation.png", **d)


def interpolation(ctx: Context) -> dict:
    from aeprobe.plots.inspect import plot_image_rows
    from aeprobe.probes.latent import interpolate

    ctx.require("interpolation", "encode", "decode")
    b = ctx.budget
    xs = ctx.x_test if ctx.x_test is not None else ctx.x_train
    n = xs.shape[0]
    if n < 2:
        raise NotApplicable("interpolation needs at least two images")
    pairs = min(b.interpolation_pairs, n // 2)
    idx = np.random.default_rng([ctx.seed, 8]).choice(n, size=2 * pairs, replace=False)
    a, c = xs[torch.from_numpy(idx[:pairs])], xs[torch.from_numpy(idx[pairs:])]
    steps = b.interpolation_steps
    frames = torch.from_numpy(interpolate(ctx.ae, a, c, steps))  # [P, steps, ...]
    t = torch.linspace(0, 1, steps, dtype=a.dtype).reshape(1, steps, *([1] * (a.ndim - 1)))
    blends = (1 - t) * a[:, None] + t * c[:, None]
    pool, pool_note, _ = ctx.subsample("train", b.interpolation_pool, salt=9)
    d: dict[str, Any] = dict(pairs=[[int(i), int(j)] for i, j in zip(idx[:pairs], idx[pairs:])], steps=steps)
    if frames.shape[2:] == a.shape[1:]:
        flat_pool = pool.reshape(pool.shape[0], -1).double()

        def nn_mse(f: torch.Tensor) -> np.ndarray:  # [P, k, ...] -> [P, k] MSE to the nearest pool image
            q = f.reshape(-1, flat_pool.shape[1]).double()
            dist = torch.cdist(q, flat_pool).pow(2) / flat_pool.shape[1]
            return dist.min(1).values.reshape(f.shape[0], f.shape[1]).numpy()

        inner, ends = slice(1, steps - 1), [0, steps - 1]
        dec, ble = nn_mse(frames[:, inner]), nn_mse(blends[:, inner])
        dec_ends, ble_ends = nn_mse(frames[:, ends]), nn_mse(blends[:, ends])
        d.update(nn_mse_decoded=float(dec.mean()), nn_mse_blend=float(ble.mean()),
                 nn_mse_decoded_ends=float(dec_ends.mean()), nn_mse_blend_ends=float(ble_ends.mean()),
                 nn_mse_decoded_per_pair=dec.mean(1), nn_mse_blend_per_pair=ble.mean(1),
                 endpoint_mse=float(((frames[:, ends].double() - torch.stack([a, c], 1).double()) ** 2).mean()))
    rows = {}
    for p in range(min(pairs, 3)):
        rows[f"pair {p + 1}: codes"] = frames[p]
        rows[f"pair {p + 1}: pixels"] = blends[p]
    plot_image_rows(rows, ctx.figure("interpolation.png"))
    where = "held-out" if ctx.x_test is not None else "training"
    return to_jsonable(dict(probe=f"aeprobe.probes.latent.interpolate(ae, x_a, x_b, steps={steps})",
                            data=f"{pairs} random pairs of {where} images; nearest neighbours among {pool_note}",
                            figure="interpolation.png", **d))


def probe(ctx: Context) -> dict:
    from aeprobe.plots.inspect import plot_probe
    from aeprobe.probes.linear import linear_probe, seen_unseen_probe_features

    if ctx.y_train is None:
        raise NotApplicable("the linear probe needs labels: " + ("pass --labels SPEC" if ctx.cli else "pass labels="))
    ctx.require("the linear probe", "encode")
    b = ctx.budget
    x, note, idx = ctx.subsample("train", b.probe_n, salt=10)
    y = ctx.y_train if idx is None else ctx.y_train[idx]
    z = ctx.ae.codes(x)
    pc = linear_probe(z, y, repeats=b.probe_repeats, seed=ctx.seed)
    pp = linear_probe(x.reshape(x.shape[0], -1), y, repeats=b.probe_repeats, seed=ctx.seed)
    d: dict[str, Any] = dict(acc_codes=pc.accuracy, std_codes=pc.std, acc_pixels=pp.accuracy, std_pixels=pp.std,
                             chance=pc.chance, n=pc.n, code_dim=pc.dim, input_dim=pp.dim, repeats=b.probe_repeats)
    probe_text = (f"aeprobe.probes.linear.linear_probe(codes, y, repeats={b.probe_repeats}, seed={ctx.seed}) and the "
                  "same on the pixels")
    if ctx.x_test is not None and ctx.y_test is not None:
        xt, note_t, it = ctx.subsample("test", b.probe_n, salt=11)
        yt = ctx.y_test if it is None else ctx.y_test[it]
        su = seen_unseen_probe_features(z, y, ctx.ae.codes(xt), yt, repeats=b.probe_repeats, seed=ctx.seed)
        d.update(acc_seen=su.acc_seen, acc_unseen=su.acc_unseen, seen_unseen_gap=su.gap, acc_transfer=su.acc_transfer,
                 n_per_set=su.n_per_set)
        probe_text += "; aeprobe.probes.linear.seen_unseen_probe_features(codes, y, held-out codes, held-out y)"
        note += f" and {note_t}"
    plot_probe(d, ctx.figure("probe.png"))
    return to_jsonable(dict(probe=probe_text, data=note, figure="probe.png", **d))


#: the sections in report order: results.json key -> measuring function
SECTIONS: dict[str, Callable[[Context], dict]] = {
    "architecture": architecture, "code": code, "identity": identity, "overfitting": overfitting,
    "homogeneity": homogeneity, "checkerboard": checkerboard, "attribution": attribution, "ablation": ablation,
    "interpolation": interpolation, "probe": probe,
}

SECTION_TITLES = {
    "architecture": "Architecture", "code": "Code statistics", "identity": "Identity: does it copy?",
    "overfitting": "Overfitting: encoder or decoder?", "homogeneity": "Decoder homogeneity (Newson et al., Prop. 1)",
    "checkerboard": "Checkerboard artifacts", "attribution": "Attribution of the strongest code units",
    "ablation": "Unit ablation: predicted vs measured", "interpolation": "Interpolation in code space",
    "probe": "Linear probe",
}
