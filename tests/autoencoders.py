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
