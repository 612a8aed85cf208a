r"""The bake-off zoo: eight kinds of autoencoder on one fully-connected backbone.

Contestants of "The Great Autoencoder Bake Off" (seed 004), all sharing the article's
architecture: a dense encoder and decoder of ``num_layers`` layers each (shallow: one),
hidden layers ``Linear(bias=False) -> BatchNorm1d -> ReLU``, a plain ``Linear`` to the code
and a ``Linear -> Sigmoid`` output. Hidden widths shrink geometrically from the input size
to the code size, ``h_i = round(d * (n / d) ** (i / num_layers))`` for ``i < num_layers``
(``d`` = pixels, ``n`` = latent size; the article's integer-shrinkage rule degenerates on
8x8 digits), or are given with ``hidden=``.

Every model is trained on the article's reconstruction loss, binary cross-entropy *summed
over the pixels of an image and averaged over the batch*,

.. math:: L_r = \frac1N \sum_i \sum_j \operatorname{BCE}(\hat x^{(i)}_j, x^{(i)}_j),

computed from the decoder's pre-sigmoid logits for numerical stability (inputs must lie in
[0, 1]). Kinds (:data:`KINDS`, the article's names):

``shallow``
    one encoder layer ``Linear -> ReLU``, one decoder layer ``Linear -> Sigmoid``.
``vanilla``
    the deep AE, trained end to end.
``stacked``
    the same network as ``vanilla`` trained greedily layer by layer
    (:func:`greedy_pretrain`): encoder layer ``k`` and decoder layer ``n-1-k`` form a
    shallow AE trained to reconstruct the (frozen) representation of the layers before.
``sparse``
    code ``sigma(enc(x))`` in [0, 1] plus ``beta * L_s``,
    ``L_s = sum_i p log(p / zbar_i) + (1-p) log((1-p) / (1-zbar_i))`` with ``zbar_i`` the
    batch-mean activation of unit ``i`` (article: ``p = 0.25``, ``beta = 1``).
``denoising``
    trained to reconstruct ``x`` from ``x' = clip(x + N(0, beta I), 0, 1)`` (``beta`` is the
    noise *variance*, article 0.5). The noise is applied only in :meth:`loss` and only in
    ``train`` mode; ``encode``/``forward`` never corrupt their input.
``vae``, ``beta_vae_strict``, ``beta_vae_loose``
    the encoder outputs ``[mu, log_sigma]`` (``2n`` units); training decodes the
    reparametrised sample ``z = mu + exp(log_sigma) * eps`` and adds ``beta * L_KL``,
    ``L_KL = 1/(2N) sum (sigma^2 + mu^2 - 1 - 2 log sigma)``; ``beta = 1`` / 2 / 0.5.
    ``encode`` returns the mean ``mu`` (deterministic); sampling is explicit:
    :meth:`VAE.reparametrize`, :meth:`VAE.sample`.
``vq``
    vector-quantised VAE: the code ``z_e = enc(x)`` is split into ``n / embedding_dim``
    groups, each replaced by its nearest of ``codebook_size`` learned codebook vectors
    (``embedding_dim = 1`` = the article's element-wise quantisation). Loss
    ``L_r + L_vq + beta L_c`` with ``L_vq = 1/N sum (sg(z_e) - z_q)^2`` (moves the codebook),
    ``L_c = 1/N sum (z_e - sg(z_q))^2`` (commitment, ``beta = 1``); the decoder gets
    ``z_e + sg(z_q - z_e)`` (straight-through estimator: forward value ``z_q``, gradient
    copied to ``z_e``). ``encode`` returns ``z_e``; ``decode`` quantises then decodes, so
    interpolating codes interpolates *before* quantisation (as the article does).
    :meth:`VQVAE.sample` draws codebook indices uniformly (article) or with given
    probabilities (e.g. the empirical usage from :meth:`VQVAE.code_usage`).

All models: ``.encoder``, ``.decoder`` (``nn.Sequential``), ``encode(x)``, ``decode(z)``,
``forward(x) = decode(encode(x))`` (deterministic in ``eval`` mode), ``loss(x, y=None) ->
(loss, {name: float})`` for :func:`aeprobe.train.train` via
``loss_fn=lambda m, xb, yb: m.loss(xb, yb)`` (or :func:`zoo_loss_fn`), ``latent_dim``,
``input_shape``, ``kind``. Build them with :func:`build`.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from aeprobe.models._base import AutoEncoder

__all__ = [
    "KINDS", "SAMPLERS", "ZooAE", "DenseAE", "SparseAE", "DenoisingAE", "VAE", "VQVAE", "build",
    "bce_sum", "zoo_loss_fn", "greedy_pretrain", "hidden_widths",
]

KINDS: tuple[str, ...] = (
    "shallow", "vanilla", "stacked", "sparse", "denoising", "vae", "beta_vae_strict", "beta_vae_loose", "vq",
)
#: Kinds that can generate unconditional samples (``model.sample(n)``).
SAMPLERS: tuple[str, ...] = ("vae", "beta_vae_strict", "beta_vae_loose", "vq")


# ----------------------------------------------------------------------------- helpers


def hidden_widths(in_units: int, latent_dim: int, num_layers: int) -> list[int]:
    """Widths ``[in_units, h_1, ..., h_{num_layers-1}]`` shrinking geometrically towards ``latent_dim``."""
    ratio = latent_dim / in_units
    return [max(1, int(round(in_units * ratio ** (i / num_layers)))) for i in range(num_layers)]


def _hidden_block(i: int, o: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(i, o, bias=False), nn.BatchNorm1d(o), nn.ReLU())


def bce_sum(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy from logits, summed per image and averaged over the batch."""
    if logits.shape != x.shape:
        raise ValueError(f"reconstruction shape {tuple(logits.shape)} does not match target shape {tuple(x.shape)}")
    return F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / x.shape[0]


def _check_unit_interval(x: torch.Tensor, name: str = "target") -> None:
    lo, hi = float(x.min()), float(x.max())
    if lo < 0.0 or hi > 1.0 or not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"BCE needs the {name} in [0, 1], got values in [{lo:.4g}, {hi:.4g}]")


def zoo_loss_fn(model: nn.Module, xb: torch.Tensor, yb: torch.Tensor):
    """``loss_fn`` for :func:`aeprobe.train.train`: ``model.loss(xb, yb)``."""
    return model.loss(xb, yb)


# ----------------------------------------------------------------------------- base


class ZooAE(AutoEncoder):
    """Dense AE backbone shared by the zoo (see module docstring).

    ``encoder = Sequential(Flatten, block_1, ..., block_{L-1}, Linear -> code[, Sigmoid])``;
    ``decoder = Sequential(block'_1, ..., block'_{L-1}, Linear, Sigmoid, Unflatten)``.
    ``encoder_layers()``/``decoder_layers()`` list the ``L`` trainable layers of each in data
    order (used by :func:`greedy_pretrain`).
    """

    kind = "vanilla"

    def __init__(self, input_shape: Sequence[int], latent_dim: int = 20, *, num_layers: int = 3,
                 hidden: Sequence[int] | None = None, encoder_out: int | None = None, code_activation: nn.Module | None = None,
                 shallow: bool = False):
        super().__init__()
        input_shape = tuple(int(s) for s in input_shape)
        if not input_shape or any(s < 1 for s in input_shape):
            raise ValueError(f"input_shape must be a non-empty tuple of positive ints, got {input_shape}")
        if not isinstance(latent_dim, int) or isinstance(latent_dim, bool) or latent_dim < 1:
            raise ValueError(f"latent_dim must be a positive int, got {latent_dim!r}")
        if not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(f"num_layers must be a positive int, got {num_layers!r}")
        self.input_shape = input_shape
        self.latent_dim = latent_dim
        d = math.prod(input_shape)
        enc_out = latent_dim if encoder_out is None else int(encoder_out)
        if shallow:
            num_layers = 1
        if hidden is None:
            widths = hidden_widths(d, latent_dim, num_layers)
        else:
            hidden = [int(h) for h in hidden]
            if len(hidden) != num_layers - 1 or any(h < 1 for h in hidden):
                raise ValueError(f"hidden must list {num_layers - 1} positive widths (num_layers={num_layers}), got {hidden}")
            widths = [d] + hidden
        self.widths = widths
        self.num_layers = num_layers
        enc: list[nn.Module] = [nn.Flatten()]
        dec: list[nn.Module] = []
        if shallow:
            enc += [nn.Sequential(nn.Linear(d, enc_out), nn.ReLU())]
        else:
            enc += [_hidden_block(a, b) for a, b in zip(widths[:-1], widths[1:])]
            enc += [nn.Linear(widths[-1], enc_out)]
            rev = [latent_dim] + widths[::-1][:-1]
            dec += [_hidden_block(a, b) for a, b in zip(rev[:-1], rev[1:])]
        if code_activation is not None:
            enc.append(code_activation)
        dec += [nn.Linear(latent_dim if shallow else widths[1] if num_layers > 1 else latent_dim, d), nn.Sigmoid(),
                nn.Unflatten(1, input_shape)]
        self.encoder = nn.Sequential(*enc)
        self.decoder = nn.Sequential(*dec)

    # -- layers in data order (for greedy training)
    def encoder_layers(self) -> list[nn.Module]:
        """The ``num_layers`` trainable encoder layers, input side first."""
        return [m for m in self.encoder if not isinstance(m, (nn.Flatten, nn.Sigmoid))]

    def decoder_layers(self) -> list[nn.Module]:
        """The ``num_layers`` trainable decoder layers, code side first (last = output ``Linear``)."""
        return [m for m in self.decoder if not isinstance(m, (nn.Sigmoid, nn.Unflatten))]

    # -- contract
    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"{type(self).__name__} expects inputs of shape [N, {', '.join(map(str, self.input_shape))}], "
                             f"got {tuple(x.shape)}")
        return x

    def _check_code(self, z: torch.Tensor) -> torch.Tensor:
        if not isinstance(z, torch.Tensor):
            raise TypeError(f"z must be a torch.Tensor, got {type(z).__name__}")
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"{type(self).__name__} expects codes of shape [N, {self.latent_dim}], got {tuple(z.shape)}")
        return z

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(self._check_input(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self._check_code(z))

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid decoder output, shaped like the input (``decode = sigmoid(decode_logits)``)."""
        return self.decoder[:-2](self._check_code(z)).reshape(z.shape[0], *self.input_shape)

    def loss(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """Summed-per-image BCE of the reconstruction of ``x`` against ``y`` (default ``x``)."""
        x = self._check_input(x)
        y = x if y is None else y
        _check_unit_interval(y)
        rec = bce_sum(self.decode_logits(self.encode(x)), y)
        return rec, {"recon": float(rec.detach())}

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, input_shape={self.input_shape}, latent_dim={self.latent_dim}, widths={self.widths}"


class DenseAE(ZooAE):
    """``shallow``, ``vanilla`` and ``stacked`` (same network as vanilla; trained by :func:`greedy_pretrain`)."""

    def __init__(self, input_shape, latent_dim: int = 20, *, kind: str = "vanilla", **kw):
        if kind not in ("shallow", "vanilla", "stacked"):
            raise ValueError(f"DenseAE kind must be 'shallow', 'vanilla' or 'stacked', got {kind!r}")
        super().__init__(input_shape, latent_dim, shallow=(kind == "shallow"), **kw)
        self.kind = kind


class SparseAE(ZooAE):
    """Sigmoid code plus ``beta * KL(p || zbar)`` sparsity penalty (article: p = 0.25, beta = 1)."""

    kind = "sparse"

    def __init__(self, input_shape, latent_dim: int = 20, *, sparsity: float = 0.25, beta: float = 1.0, **kw):
        if not 0.0 < sparsity < 1.0:
            raise ValueError(f"sparsity p must be in (0, 1), got {sparsity}")
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        super().__init__(input_shape, latent_dim, code_activation=nn.Sigmoid(), **kw)
        self.sparsity, self.beta = float(sparsity), float(beta)

    def sparsity_loss(self, z: torch.Tensor) -> torch.Tensor:
        """``sum_i p log(p / zbar_i) + (1 - p) log((1 - p) / (1 - zbar_i))`` over code units."""
        p = self.sparsity
        zbar = z.mean(0).clamp(1e-6, 1 - 1e-6)
        return torch.sum(p * torch.log(p / zbar) + (1 - p) * torch.log((1 - p) / (1 - zbar)))

    def loss(self, x, y=None):
        x = self._check_input(x)
        y = x if y is None else y
        _check_unit_interval(y)
        z = self.encode(x)
        rec = bce_sum(self.decode_logits(z), y)
        sp = self.sparsity_loss(z)
        return rec + self.beta * sp, {"recon": float(rec.detach()), "sparsity": float(sp.detach())}


class DenoisingAE(ZooAE):
    """Reconstruct clean ``y`` from ``clip(x + N(0, noise_var), 0, 1)``; noise only in ``train`` mode."""

    kind = "denoising"

    def __init__(self, input_shape, latent_dim: int = 20, *, noise_var: float = 0.5, **kw):
        if noise_var < 0:
            raise ValueError(f"noise_var must be >= 0, got {noise_var}")
        super().__init__(input_shape, latent_dim, **kw)
        self.noise_var = float(noise_var)

    def corrupt(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``clip(x + sqrt(noise_var) * eps, 0, 1)`` with ``eps ~ N(0, I)``."""
        eps = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        return (x + math.sqrt(self.noise_var) * eps).clamp(0.0, 1.0)

    def loss(self, x, y=None):
        x = self._check_input(x)
        y = x if y is None else y
        _check_unit_interval(y)
        xin = self.corrupt(x) if self.training else x
        rec = bce_sum(self.decode_logits(self.encode(xin)), y)
        return rec, {"recon": float(rec.detach())}


class VAE(ZooAE):
    """Gaussian VAE / beta-VAE; ``encode`` = mean, sampling explicit (see module docstring)."""

    kind = "vae"

    def __init__(self, input_shape, latent_dim: int = 20, *, beta: float = 1.0, kind: str = "vae", **kw):
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        super().__init__(input_shape, latent_dim, encoder_out=2 * latent_dim, **kw)
        self.beta = float(beta)
        self.kind = kind

    def encode_params(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, log_sigma)`` of the approximate posterior, each ``[N, latent_dim]``."""
        h = self.encoder(self._check_input(x))
        return h[:, :self.latent_dim], h[:, self.latent_dim:]

    def encode(self, x):
        return self.encode_params(x)[0]

    @staticmethod
    def reparametrize(mu: torch.Tensor, log_sigma: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``mu + exp(log_sigma) * eps``, ``eps ~ N(0, I)`` (differentiable in mu and log_sigma)."""
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
        return mu + log_sigma.exp() * eps

    @staticmethod
    def kl(mu: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
        """``KL(N(mu, sigma^2) || N(0, I))`` summed over units, averaged over the batch."""
        return 0.5 * torch.sum((2 * log_sigma).exp() + mu ** 2 - 1 - 2 * log_sigma, dim=1).mean()

    def prior_codes(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` codes from the prior ``N(0, I)``."""
        dev = next(self.parameters()).device
        return torch.randn(n, self.latent_dim, generator=generator, device=dev)

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` unconditional samples ``decode(z)``, ``z ~ N(0, I)``."""
        return self.decode(self.prior_codes(n, generator=generator))

    def loss(self, x, y=None):
        x = self._check_input(x)
        y = x if y is None else y
        _check_unit_interval(y)
        mu, log_sigma = self.encode_params(x)
        z = self.reparametrize(mu, log_sigma)
        rec = bce_sum(self.decode_logits(z), y)
        kl = self.kl(mu, log_sigma)
        return rec + self.beta * kl, {"recon": float(rec.detach()), "kl": float(kl.detach())}


class VQVAE(ZooAE):
    """Vector-quantised VAE with a straight-through estimator (see module docstring)."""

    kind = "vq"

    def __init__(self, input_shape, latent_dim: int = 20, *, codebook_size: int = 512, embedding_dim: int = 1,
                 beta: float = 1.0, **kw):
        if codebook_size < 1:
            raise ValueError(f"codebook_size must be >= 1, got {codebook_size}")
        if embedding_dim < 1 or latent_dim % embedding_dim:
            raise ValueError(f"embedding_dim must divide latent_dim={latent_dim}, got {embedding_dim}")
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        super().__init__(input_shape, latent_dim, **kw)
        self.codebook_size, self.embedding_dim, self.beta = int(codebook_size), int(embedding_dim), float(beta)
        self.codebook = nn.Parameter(torch.empty(codebook_size, embedding_dim).uniform_(-1 / codebook_size, 1 / codebook_size))

    @property
    def groups(self) -> int:
        return self.latent_dim // self.embedding_dim

    def code_indices(self, z: torch.Tensor) -> torch.Tensor:
        """Index of the nearest codebook vector for each group: ``[N, groups]`` (int64)."""
        zg = self._check_code(z).reshape(-1, self.embedding_dim)
        d = (zg.pow(2).sum(1, keepdim=True) - 2 * zg @ self.codebook.t() + self.codebook.pow(2).sum(1)[None])
        return d.argmin(1).reshape(z.shape[0], self.groups)

    def lookup(self, idx: torch.Tensor) -> torch.Tensor:
        """Codes ``[N, latent_dim]`` from codebook indices ``[N, groups]``."""
        return self.codebook[idx].reshape(idx.shape[0], self.latent_dim)

    def quantize(self, z: torch.Tensor) -> torch.Tensor:
        """Nearest-codebook replacement ``z_q`` (no straight-through; gradient flows to the codebook only)."""
        return self.lookup(self.code_indices(z))

    def decode(self, z):
        return self.decoder(self.quantize(z))

    def decode_logits(self, z):
        return self.decoder[:-2](self.quantize(z)).reshape(z.shape[0], *self.input_shape)

    @torch.no_grad()
    def code_usage(self, x: torch.Tensor) -> torch.Tensor:
        """Empirical codebook usage ``[groups, codebook_size]`` (rows sum to 1) on data ``x``."""
        idx = self.code_indices(self.encode(x))
        counts = torch.zeros(self.groups, self.codebook_size, device=idx.device)
        counts.scatter_add_(1, idx.t(), torch.ones_like(idx.t(), dtype=counts.dtype))
        return counts / counts.sum(1, keepdim=True)

    def prior_codes(self, n: int, *, probs: torch.Tensor | None = None,
                    generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` codes with indices drawn per group uniformly (``probs=None``, the article's choice)
        or from ``probs`` (``[codebook_size]`` or ``[groups, codebook_size]``)."""
        dev = self.codebook.device
        if probs is None:
            idx = torch.randint(0, self.codebook_size, (n, self.groups), generator=generator, device=dev)
        else:
            p = torch.as_tensor(probs, dtype=torch.float32, device=dev)
            if p.ndim == 1:
                p = p.expand(self.groups, -1)
            if p.shape != (self.groups, self.codebook_size) or bool((p < 0).any()) or not bool((p.sum(1) > 0).all()):
                raise ValueError(f"probs must be non-negative with shape [{self.codebook_size}] or "
                                 f"[{self.groups}, {self.codebook_size}], got {tuple(p.shape)}")
            idx = torch.multinomial(p, n, replacement=True, generator=generator).t()
        return self.lookup(idx)

    @torch.no_grad()
    def sample(self, n: int, *, probs: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` unconditional samples from uniformly (or ``probs``-) drawn codebook indices."""
        return self.decoder(self.prior_codes(n, probs=probs, generator=generator))

    def loss(self, x, y=None):
        x = self._check_input(x)
        y = x if y is None else y
        _check_unit_interval(y)
        z_e = self.encode(x)
        z_q = self.quantize(z_e)
        n = x.shape[0]
        vq = ((z_e.detach() - z_q) ** 2).sum() / n
        commit = ((z_e - z_q.detach()) ** 2).sum() / n
        z_st = z_e + (z_q - z_e).detach()  # straight-through: value z_q, d/dz_e = identity
        rec = bce_sum(self.decoder[:-2](z_st).reshape(n, *self.input_shape), y)
        return rec + vq + self.beta * commit, {"recon": float(rec.detach()), "vq": float(vq.detach()),
                                               "commitment": float(commit.detach())}


# ----------------------------------------------------------------------------- factory


def build(kind: str, input_shape: Sequence[int], latent_dim: int = 20, **kwargs: Any) -> ZooAE:
    """Build a zoo model by name (:data:`KINDS`).

    ``kwargs`` go to the class: ``num_layers`` (3), ``hidden`` (widths of the hidden layers);
    sparse: ``sparsity`` (0.25), ``beta`` (1); denoising: ``noise_var`` (0.5); VAEs: ``beta``
    (defaults 1, 2 strict, 0.5 loose); vq: ``codebook_size`` (512), ``embedding_dim`` (1),
    ``beta`` (1). The ``stacked`` model must be trained with :func:`greedy_pretrain`.
    """
    if kind in ("shallow", "vanilla", "stacked"):
        return DenseAE(input_shape, latent_dim, kind=kind, **kwargs)
    if kind == "sparse":
        return SparseAE(input_shape, latent_dim, **kwargs)
    if kind == "denoising":
        return DenoisingAE(input_shape, latent_dim, **kwargs)
    if kind in ("vae", "beta_vae_strict", "beta_vae_loose"):
        beta = kwargs.pop("beta", {"vae": 1.0, "beta_vae_strict": 2.0, "beta_vae_loose": 0.5}[kind])
        return VAE(input_shape, latent_dim, beta=beta, kind=kind, **kwargs)
    if kind == "vq":
        return VQVAE(input_shape, latent_dim, **kwargs)
    import difflib

    close = difflib.get_close_matches(str(kind), KINDS, n=3)
    raise ValueError(f"unknown zoo kind {kind!r}; choose from {list(KINDS)}" + (f" (did you mean {close}?)" if close else ""))


# ----------------------------------------------------------------------------- greedy layer-wise training


class _ShallowPair(nn.Module):
    """Encoder layer ``k`` and its mirror decoder layer, as a shallow AE on representations."""

    def __init__(self, enc: nn.Module, dec: nn.Module, out_shape: tuple[int, ...] | None):
        super().__init__()
        self.encoder, self.decoder = enc, dec
        self.out_shape = out_shape

    def forward(self, h):
        out = self.decoder(self.encoder(h))
        return out if self.out_shape is None else out.reshape(h.shape[0], *self.out_shape)


def _stage_loss_bce(pair: _ShallowPair, xb, yb):
    rec = bce_sum(pair(xb), yb)  # the output layer's logits (no sigmoid in the pair)
    return rec, {"recon": float(rec.detach())}


def _stage_loss_sse(pair: _ShallowPair, xb, yb):
    rec = ((pair(xb) - yb) ** 2).sum() / xb.shape[0]
    return rec, {"recon": float(rec.detach())}


def greedy_pretrain(model: ZooAE, x: torch.Tensor, *, epochs: int, batch_size: int, lr: float = 1e-3,
                    finetune_epochs: int = 0, x_val: torch.Tensor | None = None, seed: int = 0, device=None,
                    progress: bool = False, on_stage_end: Callable[[int, ZooAE], Any] | None = None,
                    **train_kwargs: Any) -> dict[str, Any]:
    """Greedy layer-wise training of a deep zoo AE (the article's *stacked* AE), then optional fine-tuning.

    Stage ``k = 0 .. L-1`` trains the shallow AE made of encoder layer ``k`` and decoder layer
    ``L-1-k`` (:meth:`ZooAE.encoder_layers` / :meth:`ZooAE.decoder_layers`) for
    ``epochs // L`` epochs (the first stages get the remainder), with everything else frozen:

    * stage 0 reconstructs the images ``x`` (BCE summed per image, from logits);
    * stage ``k > 0`` reconstructs ``h_k``, the representation after encoder layers ``< k``,
      computed once in ``eval`` mode ("encode the whole dataset"), with the squared error
      summed per sample (the targets are unbounded ReLU activations).

    Then ``finetune_epochs`` epochs of end-to-end training on ``model.loss`` (0 = the article's
    stacked AE, never trained end to end). ``on_stage_end(k, model)`` is called after stage
    ``k`` (e.g. to snapshot the weights). Returns ``{"stages": [TrainResult, ...],
    "finetune": TrainResult | None, "seconds": total}``; the model is left in ``train`` mode.
    """
    from aeprobe.utils import eval_mode
    from aeprobe.train import train

    if not isinstance(model, ZooAE):
        raise TypeError(f"greedy_pretrain needs a zoo model (ZooAE), got {type(model).__name__}")
    if isinstance(model, (VAE, VQVAE)):
        raise TypeError(f"greedy layer-wise training is defined for deterministic AEs, not {type(model).__name__}")
    enc_layers, dec_layers = model.encoder_layers(), model.decoder_layers()
    L = len(enc_layers)
    if len(dec_layers) != L:
        raise ValueError(f"encoder has {L} layers but decoder has {len(dec_layers)}")
    if not isinstance(epochs, int) or epochs < L:
        raise ValueError(f"epochs must be an int >= the number of layers ({L}) so every layer trains, got {epochs!r}")
    per = [epochs // L + (1 if k < epochs % L else 0) for k in range(L)]
    dev = next(model.parameters()).device if device is None else torch.device(device)
    model.to(dev)
    x = model._check_input(x)
    stages = []
    seconds = 0.0
    h = x
    for k in range(L):
        enc = enc_layers[k]
        dec = dec_layers[L - 1 - k]
        if k == 0:
            pair = _ShallowPair(nn.Sequential(nn.Flatten(), enc), dec, model.input_shape)
            loss_fn, target = _stage_loss_bce, x
            _check_unit_interval(x)
        else:
            pair = _ShallowPair(enc, dec, None)
            loss_fn, target = _stage_loss_sse, h
        res = train(pair, h, None if target is h else target, epochs=per[k], batch_size=batch_size, lr=lr,
                    loss_fn=loss_fn, seed=seed + k, device=dev, progress=progress, **train_kwargs)
        stages.append(res)
        seconds += res.seconds
        if on_stage_end is not None:
            on_stage_end(k, model)
        if k + 1 < L:
            with torch.no_grad(), eval_mode(model):
                inp = torch.flatten(h, 1) if k == 0 else h
                h = torch.cat([enc(inp[i:i + 1024].to(dev)) for i in range(0, inp.shape[0], 1024)])
    fin = None
    if finetune_epochs:
        fin = train(model, x, epochs=finetune_epochs, batch_size=batch_size, lr=lr, loss_fn=zoo_loss_fn,
                    x_val=x_val, seed=seed + L, device=dev, progress=progress, **train_kwargs)
        seconds += fin.seconds
    model.train()
    return {"stages": stages, "finetune": fin, "seconds": seconds, "epochs_per_layer": per}
