"""How to read any autoencoder: the one door through which every probe, the trainer and the plots go.

::

    ae = aeprobe.autoencoder(vae)                       # VAE: encode -> (mu, logvar), forward -> (recon, mu, logvar)
    z = ae.encode(x)                                    # mu
    x_hat = ae.reconstruct(x)                           # recon (also ae(x))
    ae                                                  # the repr says what was picked, nothing is silent

    ae = aeprobe.autoencoder(seq, encoder=["0", "1"], decoder=["2", "3"])   # nn.Sequential read by names
    ae = aeprobe.autoencoder(unet, code_at="down2")                       # code = output of unet.down2
    ae = aeprobe.autoencoder(lib_model, encode=lambda x: lib_model.embed(x),
                             decode=lambda z: lib_model.generate(z), output="x_hat")

Where each piece comes from (first that applies):

=============  =============================================================================
encode         ``encode=`` callable; ``encoder=`` module(s); ``code_at=`` (``model(x)`` stopped
               right after that submodule); ``model.encode``; ``model.encoder``
decode         ``decode=`` callable; ``decoder=`` module(s); ``model.decode``; ``model.decoder``;
               for an ``nn.Sequential`` read with ``code_at=`` one of its children, the children
               after it
reconstruct    ``model(x)`` read with ``output=``; ``decode(encode(x))`` when the model has no
               ``forward`` of its own; none for an encoder with an ``encode`` method only (the
               view then serves the probes that only encode)
=============  =============================================================================

What a call returns is normalised to one tensor (:func:`pick`):

* a tensor is used as it is; a tuple or list gives its first tensor;
* a dict (or a ``ModelOutput``-like mapping) gives the key ``recon``, ``reconstruction``,
  ``x_hat``, ``x_recon`` or ``sample`` for a reconstruction (``z``, ``code``, ``latent``,
  ``latents``, ``mu`` or ``mean`` for a code), or its only tensor;
* an object with such an attribute gives that attribute;
* a distribution-like object (``.mean``, or ``.latent_dist.mean`` as in diffusers) gives its mean.

``output=`` / ``code=`` override the choice: an int (index), a str (key or attribute) or a callable.
An ambiguous choice is a ``ValueError`` that asks for them. When the reconstruction picked from a
tuple/dict does not have the input's shape but another entry does, the error says which one.

A probe that needs a piece the view lacks (``decode`` for a U-Net read with ``code_at=``) calls
:meth:`Autoencoder.require` first, which raises a ``TypeError`` naming the missing piece and the
argument that supplies it, before any work. There is no fallback to "the whole model".

Inputs are cast to the model's dtype and moved to its device when that loses nothing (float32 data
into a float64 model, integers that the float type holds exactly); otherwise a ``TypeError`` says
how to cast.
"""
from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from aeprobe._modules import get_module, module_name
from aeprobe.hooks import output_at
from aeprobe.state import ModelGuard
from aeprobe.utils import batched, eval_mode, model_device, model_dtype, on_device

__all__ = ["Autoencoder", "autoencoder", "pick", "OUTPUT_KEYS", "CODE_KEYS", "as_view"]

#: Keys (dict) or attributes (objects) that hold a reconstruction, in the order they are tried.
OUTPUT_KEYS = ("recon", "reconstruction", "x_hat", "x_recon", "sample")
#: Keys or attributes that hold a code.
CODE_KEYS = ("z", "code", "latent", "latents", "mu", "mean")

_ARG_FOR = {"output": "output=", "code": "code="}


# --------------------------------------------------------------------------------------------- picking
def _describe(obj: Any) -> str:
    if isinstance(obj, torch.Tensor):
        return f"Tensor{tuple(obj.shape)}"
    if isinstance(obj, Mapping):
        return f"{type(obj).__name__} with keys {list(obj.keys())}"
    if isinstance(obj, (tuple, list)):
        return f"{type(obj).__name__} of {len(obj)} ({', '.join(type(o).__name__ for o in obj)})"
    return type(obj).__name__


def _by_selector(obj: Any, sel: Any, kind: str, where: str) -> tuple[torch.Tensor, str]:
    """Apply an explicit ``output=`` / ``code=`` selector."""
    arg = _ARG_FOR[kind]
    if callable(sel) and not isinstance(sel, (str, int)):
        value = sel(obj)
        how = f"{getattr(sel, '__name__', type(sel).__name__)}(...)"
    elif isinstance(sel, bool):
        raise TypeError(f"{arg} must be an int, a str or a callable, got a bool")
    elif isinstance(sel, int):
        if not isinstance(obj, (tuple, list)):
            raise TypeError(f"{arg}{sel} indexes a tuple or list, but {where} returned {_describe(obj)}")
        if not -len(obj) <= sel < len(obj):
            raise IndexError(f"{arg}{sel} is out of range: {where} returned {_describe(obj)}")
        value, how = obj[sel], f"[{sel}]"
    elif isinstance(sel, str):
        if isinstance(obj, Mapping):
            if sel not in obj:
                raise KeyError(f"{arg}{sel!r}: {where} returned {_describe(obj)}")
            value, how = obj[sel], f"[{sel!r}]"
        elif hasattr(obj, sel):
            value, how = getattr(obj, sel), f".{sel}"
        else:
            raise KeyError(f"{arg}{sel!r}: {where} returned {_describe(obj)}, which has no key or attribute {sel!r}")
    else:
        raise TypeError(f"{arg} must be an int, a str or a callable, got {type(sel).__name__}")
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{arg} picked {_describe(value)} from {where}, not a tensor")
    return value, how


def _auto(obj: Any, kind: str, where: str) -> tuple[torch.Tensor, str]:
    """The default normalisation rules (module docstring)."""
    keys = OUTPUT_KEYS if kind == "output" else CODE_KEYS
    arg = _ARG_FOR[kind]
    if isinstance(obj, torch.Tensor):
        return obj, ""
    if isinstance(obj, (tuple, list)):
        for i, o in enumerate(obj):
            if isinstance(o, torch.Tensor):
                return o, f"[{i}]"
        raise TypeError(f"{where} returned {_describe(obj)} with no tensor in it; pass {arg}")
    if isinstance(obj, Mapping):
        found = [k for k in keys if k in obj and isinstance(obj[k], torch.Tensor)]
        if len(found) == 1:
            return obj[found[0]], f"[{found[0]!r}]"
        if len(found) > 1:
            raise ValueError(f"{where} returned {_describe(obj)}: keys {found} could each be the {kind}; "
                             f"pass {arg} (e.g. {arg}{found[0]!r})")
        tensors = [k for k, v in obj.items() if isinstance(v, torch.Tensor)]
        if len(tensors) == 1:
            return obj[tensors[0]], f"[{tensors[0]!r}]"
        raise ValueError(f"{where} returned {_describe(obj)}; none of the keys {list(keys)} is there and "
                         f"{len(tensors)} entries are tensors; pass {arg} (a key, an index or a callable)")
    found = [k for k in keys if isinstance(getattr(obj, k, None), torch.Tensor)]
    if kind == "code" and not found:
        dist = getattr(obj, "latent_dist", None)
        if isinstance(getattr(dist, "mean", None), torch.Tensor):
            return dist.mean, ".latent_dist.mean"
    if kind == "output" and not found and isinstance(getattr(obj, "mean", None), torch.Tensor):
        return obj.mean, ".mean"  # a decoder returning a distribution: its mean
    if len(found) == 1:
        return getattr(obj, found[0]), f".{found[0]}"
    if len(found) > 1:
        raise ValueError(f"{where} returned a {type(obj).__name__} whose attributes {found} could each be the "
                         f"{kind}; pass {arg} (e.g. {arg}{found[0]!r})")
    raise TypeError(f"{where} returned {_describe(obj)}; cannot find the {kind} in it (tried a tensor, the first "
                    f"tensor of a tuple, the keys/attributes {list(keys)}, a distribution's mean); pass {arg}")


def pick(obj: Any, kind: str = "output", select: Any = None, *, where: str = "the call") -> tuple[torch.Tensor, str]:
    """Normalise what a call returned to one tensor: ``(tensor, how)``, ``how`` a short path like ``"[0]"``.

    ``kind`` is ``"output"`` (a reconstruction) or ``"code"``; ``select`` is the user's ``output=`` /
    ``code=`` (``None``: the default rules of the module docstring).

    >>> pick((torch.ones(2, 3), torch.zeros(2)), "output")[1]
    '[0]'
    """
    if kind not in _ARG_FOR:
        raise ValueError(f"kind must be 'output' or 'code', got {kind!r}")
    if select is not None:
        return _by_selector(obj, select, kind, where)
    return _auto(obj, kind, where)


# --------------------------------------------------------------------------------------------- parts
def _as_modules(model: nn.Module, spec, arg: str) -> list[tuple[str, nn.Module]]:
    items = list(spec) if isinstance(spec, (list, tuple)) else [spec]
    if not items:
        raise ValueError(f"{arg} is an empty list; give a submodule, its name, or a list of them")
    out = []
    for item in items:
        if isinstance(item, str):
            out.append((item, get_module(model, item)))
        elif isinstance(item, nn.Module):
            try:
                out.append((module_name(model, item), item))
            except KeyError:
                out.append((f"<{type(item).__name__} outside the model>", item))
        else:
            raise TypeError(f"{arg} must be a submodule, its name, or a list of them; got {type(item).__name__}")
    return out


def _run_chain(mods: Sequence[tuple[str, nn.Module]], x: Any) -> Any:
    for _, m in mods:
        x = m(x)
    return x


def _shown(name: str) -> str:
    return name if name else "(the model itself)"


def _callable_name(fn: Callable) -> str:
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__
    return name if name != "<lambda>" else "a lambda"


def _lossless(src: torch.dtype, dst: torch.dtype) -> bool:
    return src == dst or (src.is_floating_point and dst.is_floating_point and torch.promote_types(src, dst) == dst)


class Autoencoder:
    """A view of ``model`` as an autoencoder: ``encode``, ``decode``, ``reconstruct`` (module docstring).

    Build it with :func:`autoencoder`. The view holds no weights of its own: every call runs
    ``model`` (or the callables given), so it always reflects the model's current state.
    """

    def __init__(self, model: nn.Module, *, encoder=None, decoder=None, code_at=None, encode=None, decode=None,
                 output=None, code=None, reconstruct=None):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        given = [n for n, v in (("encode=", encode), ("encoder=", encoder), ("code_at=", code_at)) if v is not None]
        if len(given) > 1:
            raise ValueError(f"give at most one of encode=, encoder=, code_at= (got {', '.join(given)})")
        if decode is not None and decoder is not None:
            raise ValueError("give decode= or decoder=, not both")
        for arg, fn in (("encode=", encode), ("decode=", decode)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{arg} must be a callable, got {type(fn).__name__}")
        self.model = model
        self.output_select = output
        self.code_select = code
        self.spec = {k: v for k, v in dict(encoder=encoder, decoder=decoder, code_at=code_at, encode=encode,
                                           decode=decode, output=output, code=code,
                                           reconstruct=reconstruct).items() if v is not None}
        self._checked_random = False
        self._picked: dict[str, str] = {}
        self._example_code: torch.Tensor | None = None
        self._module_cache: dict[str, dict[str, nn.Module]] = {}

        # ---- encode side
        self._enc_modules: list[tuple[str, nn.Module]] | None = None
        self.code_at: str | None = None
        if encode is not None:
            self._enc, self._enc_src = encode, f"encode={_callable_name(encode)}"
        elif encoder is not None:
            self._enc_modules = _as_modules(model, encoder, "encoder=")
            self._enc = lambda x: _run_chain(self._enc_modules, x)
            self._enc_src = "encoder=" + " -> ".join(_shown(n) for n, _ in self._enc_modules)
        elif code_at is not None:
            if not isinstance(code_at, str):
                raise TypeError(f"code_at= must be a submodule name, got {type(code_at).__name__}")
            self.code_at = code_at
            self._code_module = get_module(model, code_at)
            if self._code_module is model:
                raise ValueError("code_at='' is the whole model; name the submodule whose output is the code")
            self._enc, self._enc_src = self._encode_by_stopping, f"model(x) stopped after {code_at!r}"
        elif callable(getattr(model, "encode", None)):
            self._enc, self._enc_src = model.encode, "model.encode"
        elif isinstance(getattr(model, "encoder", None), nn.Module):
            self._enc_modules = [("encoder", model.encoder)]
            self._enc, self._enc_src = model.encoder, "model.encoder"
        else:
            self._enc, self._enc_src = None, None

        # ---- decode side
        self._dec_modules: list[tuple[str, nn.Module]] | None = None
        if decode is not None:
            self._dec, self._dec_src = decode, f"decode={_callable_name(decode)}"
        elif decoder is not None:
            self._dec_modules = _as_modules(model, decoder, "decoder=")
            self._dec = lambda z: _run_chain(self._dec_modules, z)
            self._dec_src = "decoder=" + " -> ".join(_shown(n) for n, _ in self._dec_modules)
        elif code_at is not None and isinstance(model, nn.Sequential) and code_at in model._modules:
            names = list(model._modules)
            rest = names[names.index(code_at) + 1:]
            if rest:
                self._dec_modules = [(n, model._modules[n]) for n in rest]
                self._dec = lambda z: _run_chain(self._dec_modules, z)
                self._dec_src = "the Sequential's children after the code: " + " -> ".join(rest)
            else:
                self._dec, self._dec_src = None, None
        elif code_at is None and callable(getattr(model, "decode", None)):
            self._dec, self._dec_src = model.decode, "model.decode"
        elif code_at is None and isinstance(getattr(model, "decoder", None), nn.Module):
            self._dec_modules = [("decoder", model.decoder)]
            self._dec, self._dec_src = model.decoder, "model.decoder"
        else:
            self._dec, self._dec_src = None, None

        # ---- reconstruct
        has_forward = type(model).forward is not nn.Module.forward
        if reconstruct is not None:
            if reconstruct == "decode":
                if self._enc is None or self._dec is None:
                    raise TypeError("reconstruct='decode' needs both encode and decode; pass encode=/encoder= "
                                    "and decode=/decoder=")
                self._rec, self._rec_src = (lambda x: self.decode(self.encode(x))), "decode(encode(x))"
            elif callable(reconstruct):
                self._rec, self._rec_src = reconstruct, f"reconstruct={_callable_name(reconstruct)}"
            else:
                raise TypeError(f"reconstruct= must be 'decode' or a callable x -> x_hat, got {reconstruct!r}")
        elif has_forward:
            self._rec, self._rec_src = model, "model(x)"
        elif self._enc is not None and self._dec is not None:
            self._rec, self._rec_src = (lambda x: self.decode(self.encode(x))), "decode(encode(x))"
        else:  # e.g. an encoder with an encode method only: fine for the probes that only encode
            self._rec, self._rec_src = None, None

    # ------------------------------------------------------------------------------- what it has
    @property
    def can_encode(self) -> bool:
        return self._enc is not None

    @property
    def can_decode(self) -> bool:
        return self._dec is not None

    @property
    def can_reconstruct(self) -> bool:
        return self._rec is not None

    def require(self, *needs: str, probe: str = "this probe") -> None:
        """Raise ``TypeError`` before any work when the view lacks ``"encode"``, ``"decode"`` or ``"reconstruct"``.

        The message names the missing piece and the argument of :func:`autoencoder` that supplies it.
        """
        for need in needs:
            if need == "encode" and not self.can_encode:
                raise TypeError(
                    f"{probe} needs encode(x), and {type(self.model).__name__} has no encode method or .encoder "
                    "submodule; read it with aeprobe.autoencoder(model, encoder=... | code_at=... | encode=...) "
                    "(a model that is itself the encoder: aeprobe.autoencoder(enc, encoder=enc))")
            if need == "decode" and not self.can_decode:
                why = (f"read with code_at={self.code_at!r}, the decoder is unknown" if self.code_at is not None
                       else f"{type(self.model).__name__} has no decode method or .decoder submodule")
                raise TypeError(f"{probe} needs decode(z), and {why}; pass decoder= (submodule names) or decode= "
                                "(a callable z -> x_hat) to aeprobe.autoencoder (a model that is itself the "
                                "decoder: aeprobe.autoencoder(dec, decoder=dec))")
            if need == "reconstruct" and not self.can_reconstruct:
                raise TypeError(f"{probe} needs the reconstruction x_hat of x, and {type(self.model).__name__} has "
                                "no forward() and no encode and decode to build decode(encode(x)) from; pass "
                                "reconstruct= (a callable x -> x_hat), or encode=/encoder= and decode=/decoder=")
            if need not in ("encode", "decode", "reconstruct"):
                raise ValueError(f"unknown need {need!r}; use 'encode', 'decode' or 'reconstruct'")

    @property
    def device(self) -> torch.device:
        return model_device(self.model)

    @property
    def dtype(self) -> torch.dtype:
        return model_dtype(self.model)

    # ------------------------------------------------------------------------------- calls
    def prepare(self, x: Any, name: str = "x") -> torch.Tensor:
        """``x`` as a tensor of the model's dtype on its device, when the cast loses nothing.

        A model without floating parameters or buffers has no dtype of its own: ``x`` keeps its dtype.
        """
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(np.ascontiguousarray(x))
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}")
        want = model_dtype(self.model, default=None)
        if want is not None and x.dtype != want:
            if x.is_floating_point() or x.is_complex():
                if not _lossless(x.dtype, want):
                    raise TypeError(f"{name} is {x.dtype} but the model computes in {want}; casting would lose "
                                    f"precision, so cast it yourself ({name}.to({want})) or the model (model.to({x.dtype}))")
                x = x.to(want)
            else:
                y = x.to(want)
                if not torch.equal(y.to(x.dtype), x):
                    raise TypeError(f"{name} is {x.dtype} with values that {want} cannot hold exactly; cast it yourself")
                x = y
        dev = self.device
        return x if x.device == dev else x.to(dev)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The code of ``x`` (one tensor, picked by ``code=`` or the default rules)."""
        self.require("encode", probe="encode(x)")
        out = self._enc(self.prepare(x))
        z, how = pick(out, "code", self.code_select, where=self._enc_src)
        self._picked["code"] = how
        self._example_code = z[:1].detach()
        return z

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The reconstruction decoded from code ``z`` (a non-tensor result is read like ``model(x)``'s)."""
        self.require("decode", probe="decode(z)")
        out = self._dec(self.prepare(z, "z"))
        xh, how = pick(out, "output", None if isinstance(out, torch.Tensor) else self.output_select,
                       where=self._dec_src)
        self._picked["decode"] = how
        return xh

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """The reconstruction of ``x`` (``model(x)`` read with ``output=``)."""
        self.require("reconstruct", probe="reconstruct(x)")
        x = self.prepare(x)
        out = self._rec(x)
        if self._rec is self.model:
            xh, how = pick(out, "output", self.output_select, where="model(x)")
            if self.output_select is None and xh.shape != x.shape and isinstance(out, (tuple, list, Mapping)):
                items = out.items() if isinstance(out, Mapping) else enumerate(out)
                same = [k for k, v in items if isinstance(v, torch.Tensor) and v.shape == x.shape]
                if same:
                    raise ValueError(f"model(x) returned {_describe(out)}; the default pick {how} has shape "
                                     f"{tuple(xh.shape)}, but entry {same[0]!r} has the input's shape "
                                     f"{tuple(x.shape)}: pass output={same[0]!r}")
            self._picked["output"] = how
            return xh
        if self._rec_src.startswith("reconstruct="):
            xh, how = pick(out, "output", None, where=self._rec_src)
            self._picked["output"] = how
            return xh
        return out

    __call__ = reconstruct

    def _encode_by_stopping(self, x: torch.Tensor) -> Any:
        # the forward ends right after the code; like any encode call it keeps the graph and, in
        # train mode, updates BatchNorm statistics (restore_buffers=False)
        try:
            return output_at(self.model, self.code_at, x, restore_buffers=False)
        except KeyError as e:
            raise RuntimeError(f"module {self.code_at!r} did not run during model(x); check code_at=") from e

    # ------------------------------------------------------------------------------- batched, no grad
    @contextlib.contextmanager
    def evaluating(self, device=None) -> Iterator[torch.device]:
        """The model in eval mode, without gradients, on ``device`` (restored on exit)."""
        with on_device(self.model, device) as dev, eval_mode(self.model), torch.no_grad():
            yield dev

    def codes(self, x, *, batch_size: int = 256, flatten: bool = True, device=None) -> torch.Tensor:
        """Codes of ``x`` in eval mode, batch by batch, on CPU; ``[N, m]`` when ``flatten``."""
        self.require("encode", probe="codes(x)")
        x = _as_batch(x)
        with self.evaluating(device):
            z = batched(self.encode, x, batch_size=batch_size)
        return z.reshape(z.shape[0], -1) if flatten else z

    def reconstructions(self, x, *, batch_size: int = 256, device=None) -> torch.Tensor:
        """Reconstructions of ``x`` in eval mode, batch by batch, on CPU."""
        self.require("reconstruct", probe="reconstructions(x)")
        x = _as_batch(x)
        with self.evaluating(device):
            self._warn_if_random(x[:batch_size])
            return batched(self.reconstruct, x, batch_size=batch_size)

    def _warn_if_random(self, xb: torch.Tensor) -> None:
        """Once per view: warn when ``model(x)`` differs between two runs in eval mode (a sampling VAE)."""
        if self._checked_random or self._rec is not self.model:
            return
        self._checked_random = True
        dev = self.device
        outs = []
        for seed in (1, 2):
            with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
                torch.manual_seed(seed)
                outs.append(self.reconstruct(xb))
        diff = (outs[0] - outs[1]).abs().max().item()
        if diff > 0:
            warnings.warn(f"model(x) of {type(self.model).__name__} is random in eval mode (two runs differ by up to "
                          f"{diff:.3g}): reconstructions are samples. For the deterministic reconstruction read it "
                          "with aeprobe.autoencoder(model, reconstruct='decode')", RuntimeWarning, stacklevel=3)

    def decodings(self, z, *, batch_size: int = 256, device=None) -> torch.Tensor:
        """Decodings of codes ``z`` in eval mode, batch by batch, on CPU."""
        self.require("decode", probe="decodings(z)")
        z = _as_batch(z, "z")
        with self.evaluating(device):
            return batched(self.decode, z, batch_size=batch_size)

    def per_sample_mse(self, x, *, batch_size: int = 256, device=None) -> np.ndarray:
        """Mean squared reconstruction error of each sample (float64 numpy ``[N]``)."""
        x = _as_batch(x)
        xh = self.reconstructions(x, batch_size=batch_size, device=device)
        if xh.shape != x.shape:
            raise ValueError(f"the reconstruction has shape {tuple(xh.shape)} but the input {tuple(x.shape)}")
        return ((xh.double() - x.double()) ** 2).reshape(x.shape[0], -1).mean(1).numpy()

    # ------------------------------------------------------------------------------- modules
    def _fired(self, fn: Callable, arg: torch.Tensor) -> dict[str, nn.Module]:
        order: dict[str, nn.Module] = {}
        named = list(self.model.named_modules(remove_duplicate=False))

        def make(name):
            def pre(module, args):
                order.setdefault(name, module)
            return pre

        guard = ModelGuard(self.model)
        try:
            for name, m in named:
                if m is not self.model:
                    guard.add_handle(m.register_forward_pre_hook(make(name)))
            with eval_mode(self.model), torch.no_grad():
                fn(arg)
        finally:
            guard.restore()
        return order

    def encoder_modules(self, x: torch.Tensor | None = None) -> dict[str, nn.Module]:
        """``{name: module}`` of the encoder: the given/known modules, else those that run during
        ``encode(x)`` (``x`` an example input, needed once)."""
        self.require("encode", probe="encoder_modules()")
        if self._enc_modules is not None:
            return dict(self._enc_modules)
        if "encoder" not in self._module_cache:
            if x is None:
                raise ValueError("the encoder's modules are found by running encode once: pass an example input x")
            self._module_cache["encoder"] = self._fired(self.encode, _as_batch(x)[:1])
        return dict(self._module_cache["encoder"])

    def decoder_modules(self, z: torch.Tensor | None = None) -> dict[str, nn.Module]:
        """``{name: module}`` of the decoder: the given/known modules, else those that run during
        ``decode(z)`` (``z`` an example code; the last code :meth:`encode` produced is used if none)."""
        self.require("decode", probe="decoder_modules()")
        if self._dec_modules is not None:
            return dict(self._dec_modules)
        if "decoder" not in self._module_cache:
            z = self._example_code if z is None else _as_batch(z, "z")[:1]
            if z is None:
                raise ValueError("the decoder's modules are found by running decode once: pass an example code z "
                                 "(or call encode first)")
            self._module_cache["decoder"] = self._fired(self.decode, z)
        return dict(self._module_cache["decoder"])

    @staticmethod
    def parameters_of(modules: Mapping[str, nn.Module]) -> dict[str, nn.Parameter]:
        """``{qualified name: parameter}`` owned by ``modules`` (each parameter once)."""
        out: dict[str, nn.Parameter] = {}
        seen: set[int] = set()
        for prefix, m in modules.items():
            for n, p in m.named_parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    out[f"{prefix}.{n}" if prefix else n] = p
        return out

    # ------------------------------------------------------------------------------- repr
    def __repr__(self) -> str:
        def row(label, src, key):
            if src is None:
                return f"  {label:<12} -"
            how = getattr(self, "_picked", {}).get(key)
            tail = "" if how is None else (f" -> {how}" if how else " -> tensor")
            return f"  {label:<12} {src}{tail}" + ("" if how is not None else " (not called yet)")

        lines = [f"Autoencoder({type(getattr(self, 'model', None)).__name__})",
                 row("encode", getattr(self, "_enc_src", None), "code"),
                 row("decode", getattr(self, "_dec_src", None), "decode"),
                 row("reconstruct", getattr(self, "_rec_src", None),
                     "output" if getattr(self, "_rec", None) is getattr(self, "model", None) else "decode")]
        return "\n".join(lines)


def _as_batch(x, name: str = "x") -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}")
    if x.ndim < 1 or x.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty batch [N, ...], got shape {tuple(x.shape)}")
    return x


def autoencoder(model, *, encoder=None, decoder=None, code_at=None, encode=None, decode=None, output=None,
                code=None, reconstruct=None) -> Autoencoder:
    """A view that says how to read ``model`` as an autoencoder (module docstring).

    ``encoder=`` / ``decoder=``: a submodule, its ``named_modules()`` name, or a list of them applied
    in order. ``code_at="name"``: the code is that submodule's output during ``model(x)`` (the
    forward stops right after it when only the code is needed). ``encode=`` / ``decode=``:
    callables ``x -> z`` and ``z -> x_hat``. ``output=`` picks the reconstruction from what
    ``model(x)`` returns, ``code=`` the code from what encode returns (an index, a key/attribute
    or a callable). ``reconstruct="decode"`` reconstructs as ``decode(encode(x))`` instead of
    ``model(x)`` (e.g. the mean reconstruction of a VAE whose forward samples; the view warns when
    ``model(x)`` is random in eval mode), a callable ``x -> x_hat`` is used as it is. Passing an
    existing view returns it (with new arguments: a new view of its model, the new arguments
    replacing the old ones).

    Example::

        ae = autoencoder(model)                 # model.encode / model.decode, or .encoder / .decoder
        z, x_hat = ae.encode(x), ae(x)
    """
    kw = dict(encoder=encoder, decoder=decoder, code_at=code_at, encode=encode, decode=decode, output=output,
              code=code, reconstruct=reconstruct)
    if isinstance(model, Autoencoder):
        if all(v is None for v in kw.values()):
            return model
        merged = dict(model.spec)
        sides = {"encode": ("encoder", "code_at", "encode"), "decode": ("decoder", "decode"),
                 "reconstruct": ("reconstruct",)}
        for key, value in kw.items():
            if value is None:
                continue
            for group in sides.values():  # a new source for one side replaces the old source of that side
                if key in group:
                    for other in group:
                        merged.pop(other, None)
            merged[key] = value
        return Autoencoder(model.model, **merged)
    return Autoencoder(model, **kw)


def as_view(model_or_view, *, name: str = "model") -> Autoencoder:
    """What every consumer calls first: a view unchanged, a plain module wrapped with ``autoencoder(model)``."""
    if isinstance(model_or_view, Autoencoder):
        return model_or_view
    if isinstance(model_or_view, nn.Module):
        return Autoencoder(model_or_view)
    raise TypeError(f"{name} must be an nn.Module or an aeprobe.autoencoder(...) view, got "
                    f"{type(model_or_view).__name__}")
