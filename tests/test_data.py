"""Data generators and loaders: shapes, ranges, holes, blur exactness, determinism, safe loading."""
from __future__ import annotations

import gzip
import math
import pickle
import struct

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from scipy import ndimage

from aeprobe.data import (PATCH_SOURCES, digits, disks, ellipses, image_folder, image_patches, one_hots, squares,
                          torchvision_dataset, triangular_diracs)


# ----------------------------------------------------------------------------- disks
def test_disk_batch_shapes_and_range():
    b = disks(50, size=32, r_min=2, r_max=10, seed=3)
    assert b.images.shape == (50, 1, 32, 32) and b.images.dtype == torch.float32
    r = b.params["radius"]
    assert r.shape == (50,) and float(r.min()) >= 2 and float(r.max()) <= 10
    assert float(b.images.min()) >= 0 and float(b.images.max()) <= 1


def test_default_radius_range_is_paper_uniform_0_to_half_size():
    r = disks(4000, size=4, r_max=32.0, seed=0).params["radius"].numpy()
    # U(0, 32): mean 16, sd 32/sqrt(12) = 9.24; the mean of 4000 draws has sd 0.146 -> 5 sd = 0.73
    assert r.min() >= 0 and r.max() <= 32 and abs(r.mean() - 16) < 0.73


@settings(max_examples=25)
@given(lo=st.floats(1, 20), width=st.floats(0.5, 10), seed=st.integers(0, 1000))
def test_hole_radii_never_sampled_and_both_sides_used(lo, width, seed):
    hi = min(lo + width, 31.0)
    r = disks(400, size=16, r_min=0.0, r_max=32.0, hole=(lo, hi), seed=seed).params["radius"].numpy()
    assert not ((r > lo) & (r < hi)).any()
    # each side has probability >= 1/32 of 400 draws, P(side empty) <= (31/32)^400 < 3e-6
    assert (r <= lo).any() and (r >= hi).any()


def test_hole_sampling_is_uniform_on_the_remaining_set():
    r = disks(20000, size=8, r_min=0, r_max=32, hole=(11, 18), seed=1).params["radius"].numpy()
    # remaining length 25: P(r < 11) = 11/25 = 0.44; binomial sd sqrt(.44*.56/20000) = 0.0035 -> 5 sd
    assert abs((r < 11).mean() - 0.44) < 0.018


def test_fixed_radii_are_used_exactly():
    radii = [1.0, 5.5, 30.0]
    b = disks(radii=radii, size=64)
    assert torch.equal(b.params["radius"], torch.tensor(radii))


@pytest.mark.parametrize("kw, msg", [
    (dict(n=4, hole=(20, 10)), "hole"), (dict(n=4, hole=(0, 32)), "removes the whole range"),
    (dict(n=4, r_min=5, r_max=3), "r_min"), (dict(n=4, sigma=float("nan")), "sigma"),
    (dict(radii=[1.0, float("nan")]), "radii"), (dict(n=3, radii=[1.0, 2.0]), "n=3"),
    (dict(), "either n"), (dict(n=2, size=1), "size"), (dict(n=2, method="fft"), "method"),
])
def test_bad_disk_arguments_are_named(kw, msg):
    with pytest.raises(ValueError, match=msg):
        disks(**kw)


def test_same_seed_same_disks_other_seed_other_disks():
    a, b, c = disks(8, size=16, seed=5), disks(8, size=16, seed=5), disks(8, size=16, seed=6)
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)


def test_monte_carlo_eq21_agrees_with_exact_blur():
    n_mc = 20000
    radii = [2.0, 7.3, 15.0, 31.0]
    ex = disks(radii=radii, size=64, sigma=1.5).images
    mc = disks(radii=radii, size=64, sigma=1.5, method="monte_carlo", n_samples=n_mc, seed=2).images
    # each MC pixel is a mean of N Bernoulli draws: sd <= 0.5/sqrt(N) = 0.0035; 6 sd over ~500
    # distinct distances leaves a false-alarm rate < 1e-6
    assert float((ex - mc).abs().max()) < 6 * 0.5 / math.sqrt(n_mc)


def test_exact_blur_equals_numerical_convolution():
    """Eq. (20) computed independently: a hard disk on a 16x finer grid convolved with the
    Gaussian by scipy.ndimage, read at pixel centres."""
    size, s, sigma, r = 32, 16, 1.2, 9.4
    t = (np.arange(size * s) + 0.5) / s - 0.5 - (size - 1) / 2
    yy, xx = np.meshgrid(t, t, indexing="ij")
    fine = ndimage.gaussian_filter((np.hypot(yy, xx) < r).astype(float), sigma * s, mode="constant", truncate=6)
    # the pixel centre (i) lies between fine samples i*s + s/2 - 1 and i*s + s/2: average the 2x2
    c = np.arange(size) * s + s // 2
    ref = (fine[c - 1][:, c - 1] + fine[c][:, c] + fine[c - 1][:, c] + fine[c][:, c - 1]) / 4
    got = disks(radii=[r], size=size, sigma=sigma).images[0, 0].double().numpy()
    # the fine grid resolves the edge to 1/16 px: error <= slope (1/(sigma sqrt(2 pi)) = 0.33/px)
    # x half a fine step (1/32 px) ~ 0.01
    assert np.abs(got - ref).max() < 0.012


@settings(max_examples=30)
@given(r=st.floats(3.0, 24.0), sigma=st.floats(0.8, 2.0))
def test_blur_preserves_mass(r, sigma):
    """g_sigma * 1_B has integral pi r^2; the pixel sum is a Riemann sum of a smooth function whose
    aliasing error is ~exp(-(2 pi sigma)^2 / 2) < 1e-5 for sigma >= 0.8."""
    img = disks(radii=[r], size=64, sigma=sigma).images.double()
    assert abs(float(img.sum()) - math.pi * r * r) / (math.pi * r * r) < 1e-3


def test_sigma_zero_is_the_hard_indicator():
    img = disks(radii=[5.0], size=16, sigma=0).images[0, 0].numpy()
    t = np.arange(16) - 7.5
    assert np.array_equal(img, (np.hypot(*np.meshgrid(t, t, indexing="ij")) < 5).astype(np.float32))


# ----------------------------------------------------------------------------- other shapes
@settings(max_examples=20)
@given(a=st.floats(3.0, 20.0), sigma=st.floats(0.8, 2.0))
def test_square_blur_is_exact_and_preserves_mass(a, sigma):
    img = squares(half_sides=[a], size=64, sigma=sigma).images.double()
    assert abs(float(img.sum()) - 4 * a * a) / (4 * a * a) < 1e-3


def test_ellipse_area_and_parameters():
    b = ellipses(6, size=64, r_min=5, r_max=20, rotate=True, seed=1)
    a, bb = b.params["a"].double(), b.params["b"].double()
    area = b.images.double().sum((1, 2, 3))
    # 4x4 supersampling: edge error ~ perimeter x (1/4 px)^2 / area-ish, well under 2 %
    assert torch.allclose(area, math.pi * a * bb, rtol=0.02)
    assert set(b.params) == {"a", "b", "angle"} and float(b.params["angle"].max()) < math.pi


# ----------------------------------------------------------------------------- diracs
def test_one_hots_and_triangular_diracs():
    x = one_hots(4)
    assert x.shape == (16, 1, 16) and torch.equal(x[:, 0], torch.eye(16))
    a = np.array([0.0, 2.25, 14.5])
    y = triangular_diracs(a, 16)[:, 0].double()
    assert torch.allclose(y.sum(1), torch.ones(3, dtype=torch.float64))
    assert torch.allclose((y * torch.arange(16.0, dtype=torch.float64)).sum(1), torch.tensor(a))
    with pytest.raises(ValueError, match="L must be"):
        one_hots(0)


# ----------------------------------------------------------------------------- bundled images
def test_digits_scaled_to_unit_interval_and_resizable():
    x, y = digits()
    assert x.shape == (1797, 1, 8, 8) and y.shape == (1797,) and float(x.max()) == 1.0 and float(x.min()) == 0.0
    assert set(y.tolist()) == set(range(10))
    x16, _ = digits(16)
    assert x16.shape == (1797, 1, 16, 16) and 0 <= float(x16.min()) and float(x16.max()) <= 1


def test_image_patches_are_deterministic_cut_from_their_sources():
    x, sid = image_patches(30, 16, seed=4)
    x2, sid2 = image_patches(30, 16, seed=4)
    assert x.shape == (30, 1, 16, 16) and torch.equal(x, x2) and torch.equal(sid, sid2)
    assert set(sid.tolist()) == set(range(len(PATCH_SOURCES)))  # 30 >= 10 sources: all used
    xc, _ = image_patches(5, 16, seed=4, gray=False)
    assert xc.shape == (5, 3, 16, 16)
    with pytest.raises(ValueError, match="patch size"):
        image_patches(2, 5000)


# ----------------------------------------------------------------------------- on-disk loaders
def _png(path, value, size=(10, 12)):
    from PIL import Image

    Image.fromarray(np.full(size, value, dtype=np.uint8)).save(path)


def test_image_folder_with_classes_and_flat(tmp_path):
    for k, cls in enumerate(["b_cls", "a_cls"]):
        (tmp_path / cls).mkdir()
        for i in range(2):
            _png(tmp_path / cls / f"{i}.png", 100 * k + 20 * i)
    x, y = image_folder(tmp_path, 8, gray=True)
    assert x.shape == (4, 1, 8, 8) and y.tolist() == [0, 0, 1, 1]  # sorted: a_cls first
    assert torch.allclose(x[:, 0, 0, 0], torch.tensor([100, 120, 0, 20]) / 255.0, atol=1e-6)
    flat = tmp_path / "b_cls"
    xf, yf = image_folder(flat, 4)
    assert xf.shape == (2, 3, 4, 4) and yf is None
    with pytest.raises(FileNotFoundError):
        image_folder(tmp_path / "nope", 4)


def _idx(path, arr: np.ndarray, gz: bool):
    head = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}i", *arr.shape)
    raw = head + arr.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)


@pytest.mark.parametrize("gz", [False, True])
def test_torchvision_mnist_layout_is_read_without_torchvision(tmp_path, gz):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    imgs = np.random.default_rng(0).integers(0, 256, (5, 28, 28))
    sfx = ".gz" if gz else ""
    _idx(raw / f"t10k-images-idx3-ubyte{sfx}", imgs, gz)
    _idx(raw / f"t10k-labels-idx1-ubyte{sfx}", np.array([3, 1, 4, 1, 5]), gz)
    x, y = torchvision_dataset("MNIST", tmp_path, train=False)
    assert x.shape == (5, 1, 28, 28) and y.tolist() == [3, 1, 4, 1, 5]
    assert torch.allclose(x[:, 0], torch.tensor(imgs / 255.0, dtype=torch.float32))
    with pytest.raises(FileNotFoundError, match="train-images"):
        torchvision_dataset("MNIST", tmp_path, train=True)


def test_torchvision_cifar_batches_load_and_malicious_pickle_is_refused(tmp_path):
    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    data = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072)
    (base / "test_batch").write_bytes(pickle.dumps({"data": data, "labels": [7, 2]}))
    x, y = torchvision_dataset("CIFAR10", tmp_path, train=False, size=16, gray=True)
    assert x.shape == (2, 1, 16, 16) and y.tolist() == [7, 2]

    class Evil:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    (base / "test_batch").write_bytes(pickle.dumps({"data": Evil(), "labels": [0]}))
    with pytest.raises(ValueError, match="refusing"):
        torchvision_dataset("CIFAR10", tmp_path, train=False)
    assert not (tmp_path / "pwned").exists()


def test_unknown_torchvision_name(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset"):
        torchvision_dataset("ImageNet", tmp_path)
