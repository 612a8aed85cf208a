"""Autoencoders written the usual ways, none of them shaped like aeprobe's own: one tiny model per kind.

All read 1x8x8 images (``images(n)``) and are built deterministically (``torch.manual_seed``), so any
test can use them: the view's tests, the probes' tests ("every probe on every kind") and inspect's.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

SHAPE = (1, 8, 8)
CODE = 4


def images(n: int = 32, seed: int = 0) -> torch.Tensor:
    """Smooth random images in [0, 1], ``[n, 1, 8, 8]``."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 1, 4, 4, generator=g)
    return nn.functional.interpolate(low, size=(8, 8), mode="bilinear", align_corners=False)


class TupleVAE(nn.Module):
    """The PyTorch-examples VAE, shrunk: ``encode -> (mu, logvar)``, ``forward -> (recon, mu, logvar)``.

    The decoder is ``fc3``/``fc4`` used inside ``decode``: there is no ``.decoder`` submodule.
    Samples ``z`` only in training mode (``always_sample=True``: in eval mode too).
    """

    def __init__(self, code: int = CODE, always_sample: bool = False):
        super().__init__()
        self.fc1 = nn.Linear(64, 32)
        self.fc21 = nn.Linear(32, code)
        self.fc22 = nn.Linear(32, code)
        self.fc3 = nn.Linear(code, 32)
        self.fc4 = nn.Linear(32, 64)
        self.always_sample = always_sample

    def encode(self, x):
        h = torch.relu(self.fc1(x.flatten(1)))
        return self.fc21(h), self.fc22(h)

    def decode(self, z):
        return torch.sigmoid(self.fc4(torch.relu(self.fc3(z)))).view(-1, *SHAPE)

    def forward(self, x):
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if (self.training or self.always_sample) else mu
        return self.decode(z), mu, logvar


class DictAE(nn.Module):
    """Conv encoder and decoder as submodules with other names; ``forward -> {"recon": ..., "z": ...}``."""

    def __init__(self, code: int = CODE):
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64, code))
        self.dec = nn.Sequential(nn.Linear(code, 64), nn.Unflatten(1, (4, 4, 4)), nn.ReLU(),
                                 nn.ConvTranspose2d(4, 1, 4, stride=2, padding=1))

    def forward(self, x):
        z = self.enc(x)
        return {"recon": self.dec(z), "z": z}


def sequential_ae(code: int = CODE) -> nn.Sequential:
    """An ``nn.Sequential`` autoencoder: no encoder, no decoder; the code is the output of ``"2"``."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, code), nn.Tanh(), nn.Linear(code, 64), nn.Unflatten(1, SHAPE))


class UNet(nn.Module):
    """A tiny U-Net: the bottleneck is ``down2``, and the decoder also reads ``down1`` (a skip)."""

    def __init__(self):
        super().__init__()
        self.down1 = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
        self.down2 = nn.Sequential(nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.ReLU())
        self.up = nn.ConvTranspose2d(8, 4, 2, stride=2)
        self.out = nn.Conv2d(8, 1, 3, padding=1)

    def forward(self, x):
        h1 = self.down1(x)
        h2 = self.down2(h1)
        return self.out(torch.cat([self.up(h2), h1], dim=1))


class LatentDist:
    """diffusers-like ``DiagonalGaussianDistribution``: ``.mean``, ``.std``, ``.sample()``."""

    def __init__(self, mean, logvar):
        self.mean, self.std = mean, torch.exp(0.5 * logvar)

    def sample(self):
        return self.mean + self.std * torch.randn_like(self.mean)


@dataclass
class EncoderOutput:
    latent_dist: LatentDist


@dataclass
class DecoderOutput:
    sample: torch.Tensor


class LibraryAE(nn.Module):
    """Shaped like a library autoencoder (diffusers' AutoencoderKL): output objects, not tensors."""

    def __init__(self, code: int = CODE):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 2 * code))
        self.head = nn.Linear(code, 64)

    def encode(self, x):
        m, lv = self.body(x).chunk(2, dim=1)
        return EncoderOutput(LatentDist(m, lv))

    def decode(self, z):
        return DecoderOutput(self.head(z).view(-1, *SHAPE))

    def forward(self, x):
        return self.decode(self.encode(x).latent_dist.mean)


class CallableOnlyAE(nn.Module):
    """Methods with other names (``embed`` / ``generate``): read with ``encode=`` / ``decode=``."""

    def __init__(self, code: int = CODE):
        super().__init__()
        self.a = nn.Linear(64, code)
        self.b = nn.Linear(code, 64)

    def embed(self, x):
        return self.a(x.flatten(1))

    def generate(self, z):
        return self.b(z).view(-1, *SHAPE)

    def forward(self, x):
        return {"x_hat": self.generate(self.embed(x)), "aux": torch.zeros(())}


def all_kinds():
    """``{kind: (model, view kwargs)}``: every way above, with the view arguments that read it."""
    torch.manual_seed(0)
    lib = CallableOnlyAE()
    return {
        "tuple_vae": (TupleVAE(), {}),
        "dict_ae": (DictAE(), {"encoder": "enc", "decoder": "dec"}),
        "sequential": (sequential_ae(), {"encoder": ["0", "1", "2"], "decoder": ["3", "4"]}),
        "library": (LibraryAE(), {}),
        "callables": (lib, {"encode": lib.embed, "decode": lib.generate, "output": "x_hat"}),
    }


def references(kind: str, model: nn.Module) -> dict:
    """What each kind's encode / decode / reconstruct are, written out by hand (eval mode), to check
    that a probe read the model right: ``{"encode": fn, "decode": fn, "reconstruct": fn}``."""
    m = model
    if kind == "tuple_vae":
        return dict(encode=lambda x: m.encode(x)[0], decode=m.decode, reconstruct=lambda x: m(x)[0])
    if kind == "dict_ae":
        return dict(encode=m.enc, decode=m.dec, reconstruct=lambda x: m(x)["recon"])
    if kind == "sequential":
        return dict(encode=lambda x: m[2](m[1](m[0](x))), decode=lambda z: m[4](m[3](z)), reconstruct=m)
    if kind == "library":
        return dict(encode=lambda x: m.encode(x).latent_dist.mean, decode=lambda z: m.decode(z).sample,
                    reconstruct=lambda x: m(x).sample)
    if kind == "callables":
        return dict(encode=m.embed, decode=m.generate, reconstruct=lambda x: m(x)["x_hat"])
    raise KeyError(kind)


# ----------------------------------------------------------------------------------------- 1-D signals
L_SIGNAL = 3
N_SIGNAL = 2 ** L_SIGNAL


def _conv_stack(out_last: int = 1) -> list[nn.Module]:
    """``L_SIGNAL`` layers ``Conv1d(k=3, stride 2, padding 1)``: ``[N, 1, 8]`` -> ``[N, out_last, 1]``."""
    return [nn.Conv1d(1, 1 if i < L_SIGNAL - 1 else out_last, 3, stride=2, padding=1) for i in range(L_SIGNAL)]


class SignalTupleVAE(nn.Module):
    """1-D ``TupleVAE``: conv encoder inside ``encode -> (mu, logvar)``, ``decode`` uses ``fc3``/``fc4``."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2, self.c3 = _conv_stack(2)
        self.fc3 = nn.Linear(1, 4)
        self.fc4 = nn.Linear(4, N_SIGNAL)

    def encode(self, x):
        h = self.c3(torch.relu(self.c2(torch.relu(self.c1(x))))).flatten(1)
        return h[:, :1], h[:, 1:]

    def decode(self, z):
        return self.fc4(torch.relu(self.fc3(z))).view(-1, 1, N_SIGNAL)

    def forward(self, x):
        mu, logvar = self.encode(x)
        return self.decode(mu), mu, logvar


class SignalDictAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.Sequential(*_conv_stack(), nn.Flatten())
        self.dec = nn.Sequential(nn.Linear(1, N_SIGNAL), nn.Unflatten(1, (1, N_SIGNAL)))

    def forward(self, x):
        z = self.enc(x)
        return {"recon": self.dec(z), "z": z}


class SignalLibraryAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(*_conv_stack(2), nn.Flatten())
        self.head = nn.Linear(1, N_SIGNAL)

    def encode(self, x):
        m, lv = self.body(x).chunk(2, dim=1)
        return EncoderOutput(LatentDist(m, lv))

    def decode(self, z):
        return DecoderOutput(self.head(z).view(-1, 1, N_SIGNAL))

    def forward(self, x):
        return self.decode(self.encode(x).latent_dist.mean)


class SignalCallableAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Sequential(*_conv_stack(), nn.Flatten())
        self.b = nn.Linear(1, N_SIGNAL)

    def embed(self, x):
        return self.a(x)

    def generate(self, z):
        return self.b(z).view(-1, 1, N_SIGNAL)

    def forward(self, x):
        return {"x_hat": self.generate(self.embed(x)), "aux": torch.zeros(())}


def signal_kinds():
    """Like :func:`all_kinds` for 1-D signals ``[N, 1, 8]`` with a scalar code and a conv encoder of
    three ``Conv1d(1, 1, 3, stride=2, padding=1)`` layers (the position probes' domain)."""
    torch.manual_seed(0)
    lib = SignalCallableAE()
    seq = nn.Sequential(*_conv_stack(), nn.Flatten(), nn.Linear(1, N_SIGNAL), nn.Unflatten(1, (1, N_SIGNAL)))
    return {
        "tuple_vae": (SignalTupleVAE(), {}),
        "dict_ae": (SignalDictAE(), {"encoder": "enc", "decoder": "dec"}),
        "sequential": (seq, {"encoder": ["0", "1", "2", "3"], "decoder": ["4", "5"]}),
        "library": (SignalLibraryAE(), {}),
        "callables": (lib, {"encode": lib.embed, "decode": lib.generate, "output": "x_hat"}),
    }


def signal_references(kind: str, model: nn.Module) -> dict:
    """Hand-written encode / decode of each signal kind (eval mode)."""
    m = model
    if kind == "tuple_vae":
        return dict(encode=lambda x: m.encode(x)[0], decode=m.decode)
    if kind == "dict_ae":
        return dict(encode=m.enc, decode=m.dec)
    if kind == "sequential":
        return dict(encode=lambda x: m[3](m[2](m[1](m[0](x)))), decode=lambda z: m[5](m[4](z)))
    if kind == "library":
        return dict(encode=lambda x: m.encode(x).latent_dist.mean, decode=lambda z: m.decode(z).sample)
    if kind == "callables":
        return dict(encode=m.embed, decode=m.generate)
    raise KeyError(kind)


# ----------------------------------------------------------------------------------------- output wrappers
@dataclass
class Out:
    """A dataclass-like output: the reconstruction under ``x_hat``, something else under ``z``."""

    x_hat: torch.Tensor
    z: torch.Tensor


class Normalish:
    """A distribution-like code: only ``.mean``."""

    def __init__(self, mean):
        self.mean = mean


WRAPS = ("tensor", "tuple", "list", "dict", "object")


def wrap(kind: str, t: torch.Tensor, other: torch.Tensor, role: str, pos: int = 0):
    """``t`` (the code or reconstruction, ``role`` ``"code"``/``"output"``) wrapped the way ``kind``
    says, next to ``other`` and non-tensor fillers, at position ``pos`` of a tuple/list."""
    if kind == "tensor":
        return t
    if kind == "tuple":
        return tuple([None] * pos + [t, other])
    if kind == "list":
        return [None] * pos + [t, other]
    if kind == "dict":
        key = "recon" if role == "output" else "mu"
        return {"other": "text", key: t, "logvar": other} if role == "code" else {key: t, "n": 3}
    if kind == "object":
        return Out(x_hat=t, z=other) if role == "output" else Normalish(t)
    raise AssertionError(kind)
