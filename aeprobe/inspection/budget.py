"""How much work each section of ``aeprobe inspect`` may do: sample counts, steps, epochs.

:meth:`Budget.quick` keeps the whole report within about 70 bare epochs (two minutes on an idle
2-core machine) for a small conv AE and 2,000 images of 32x32 (``python benchmarks/inspect_bench.py``);
:meth:`Budget.full` spends more where more samples tighten the numbers; :meth:`Budget.smoke` is for
tests. Every cap subsamples at random (seeded), and the report says how many samples each
section used.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Budget"]


@dataclass(frozen=True)
class Budget:
    """Caps per section (``None``: no cap)."""

    mode: str = "quick"
    code_n: int | None = 2000              # images for code statistics (streamed: cheap)
    identity_n: int | None = 512           # images for the OOD errors
    jacobian_points: int = 16              # points of the Jacobian test
    jacobian_directions: int = 16          # Hutchinson directions per point
    overfit_heldout: int | None = 1000     # held-out images (half refit, half scored)
    overfit_train_eval: int | None = 1000  # training images scored
    overfit_epochs: int = 30               # epochs of each refit decoder
    homogeneity_codes: int = 32            # data codes tested at every scale
    checkerboard_codes: int = 32           # constant and random codes each
    checkerboard_n: int | None = 256       # data images / reconstructions for the baseline
    attribution_units: int = 3             # strongest code units attributed
    attribution_images: int = 4            # images attributed
    attribution_steps: int = 32            # integration steps
    ablation_units: int = 16               # strongest units zeroed one at a time
    ablation_n: int | None = 256           # images of the ablation
    interpolation_pairs: int = 4
    interpolation_steps: int = 8
    interpolation_pool: int | None = 1000  # data images searched for each frame's nearest neighbour
    probe_n: int | None = 1000             # images per probe
    probe_repeats: int = 1

    @classmethod
    def quick(cls) -> "Budget":
        return cls()

    @classmethod
    def full(cls) -> "Budget":
        return cls(mode="full", code_n=None, identity_n=2000, jacobian_points=32, jacobian_directions=32,
                   overfit_heldout=None, overfit_train_eval=2000, overfit_epochs=60, homogeneity_codes=64,
                   checkerboard_codes=64, checkerboard_n=1000, attribution_units=4, attribution_images=8,
                   attribution_steps=64, ablation_units=64, ablation_n=1000, interpolation_pairs=6,
                   interpolation_pool=None, probe_n=None, probe_repeats=3)

    @classmethod
    def smoke(cls) -> "Budget":
        return cls(mode="smoke", code_n=256, identity_n=64, jacobian_points=2, jacobian_directions=4,
                   overfit_heldout=64, overfit_train_eval=64, overfit_epochs=2, homogeneity_codes=8,
                   checkerboard_codes=8, checkerboard_n=32, attribution_units=2, attribution_images=2,
                   attribution_steps=8, ablation_units=4, ablation_n=32, interpolation_pairs=2,
                   interpolation_steps=5, interpolation_pool=64, probe_n=128, probe_repeats=1)

    @classmethod
    def for_mode(cls, mode: str) -> "Budget":
        if mode not in ("quick", "full", "smoke"):
            raise ValueError(f"mode must be 'quick', 'full' or 'smoke', got {mode!r}")
        return getattr(cls, mode)()
