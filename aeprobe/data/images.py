"""Real images without downloads: bundled digits, natural-image patches, and on-disk loaders.

* :func:`digits` -- scikit-learn's bundled 8x8 digits (1797 images, 10 classes), scaled to
  [0, 1] and optionally resized (bilinear with antialiasing).
* :func:`image_patches` -- random square patches cut from the photographs that scikit-image and
  scikit-learn ship (:data:`PATCH_SOURCES`), labelled with the index of their source image.
* :func:`image_folder` -- a user's own folder of images, ImageFolder-style (one sub-folder per
  class, labels = sorted sub-folder index) or flat (labels ``None``).
* :func:`torchvision_dataset` -- datasets a user already has on disk in torchvision's layout
  (``MNIST``, ``FashionMNIST``, ``KMNIST``: IDX files under ``ROOT/NAME/raw``; ``CIFAR10`` /
  ``CIFAR100``: the python batches). They are read directly, without importing torchvision (its
  PyPI wheels need a CUDA torch), and CIFAR's pickled batches through a restricted unpickler that
  only rebuilds plain numpy arrays, lists, dicts and strings -- nothing else can execute.

All return ``(x, y)``: ``x`` float32 ``[N, C, H, W]`` in [0, 1] on ``device``, ``y`` int64 ``[N]``
(or ``None``).
"""
from __future__ import annotations

import gzip
import io
import pickle
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from aeprobe.device import resolve_device

__all__ = ["PATCH_SOURCES", "digits", "image_patches", "image_folder", "torchvision_dataset", "resize",
           "load_source_image"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")

#: Bundled photographs usable offline: scikit-image ``data.<name>()`` and sklearn sample images.
PATCH_SOURCES: tuple[str, ...] = ("camera", "astronaut", "coffee", "chelsea", "coins", "moon", "grass", "brick",
                                  "sklearn:china.jpg", "sklearn:flower.jpg")


def resize(x: torch.Tensor, size: int | None) -> torch.Tensor:
    """Bilinear (antialiased when shrinking) resize of ``[N, C, H, W]`` to ``size x size``, clamped to [0, 1]."""
    if size is None or tuple(x.shape[-2:]) == (size, size):
        return x
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    return F.interpolate(x, size=(int(size), int(size)), mode="bilinear", align_corners=False,
                         antialias=int(size) < x.shape[-1]).clamp_(0.0, 1.0)


def _to_float01(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    if a.dtype == np.uint16:
        return a.astype(np.float32) / 65535.0
    if a.dtype == bool:
        return a.astype(np.float32)
    a = a.astype(np.float32)
    return a / 255.0 if a.max() > 1.0 else a


def digits(size: int | None = None, *, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's digits: ``x [1797, 1, s, s]`` in [0, 1] (``s = 8`` or ``size``), ``y`` the digit."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.as_tensor(d.images / 16.0, dtype=torch.float32).unsqueeze(1)
    x = resize(x, size)
    dev = resolve_device(device)
    return x.to(dev), torch.as_tensor(d.target, dtype=torch.int64, device=dev)


def load_source_image(name: str, gray: bool = True) -> np.ndarray:
    """One bundled photograph as ``[C, H, W]`` float32 in [0, 1] (``C = 1`` if ``gray``)."""
    if name.startswith("sklearn:"):
        from sklearn.datasets import load_sample_image

        img = load_sample_image(name.split(":", 1)[1])
    else:
        from skimage import data as skdata

        fn = getattr(skdata, name, None)
        if fn is None or name not in PATCH_SOURCES:
            raise KeyError(f"unknown source image {name!r}; choose from {PATCH_SOURCES}")
        img = fn()
    img = _to_float01(img)
    if img.ndim == 2:
        img = img[..., None]
    img = img[..., :3]
    if gray:
        img = img.mean(axis=-1, keepdims=True) if img.shape[-1] == 3 else img
    elif img.shape[-1] == 1:
        img = np.repeat(img, 3, axis=-1)
    return np.ascontiguousarray(img.transpose(2, 0, 1))


def image_patches(n: int, size: int = 32, *, seed: int = 0, gray: bool = True, sources=None,
                  device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random ``size x size`` patches, as evenly as possible from each source image.

    Returns ``(x [n, C, size, size], source_id [n])`` where ``source_id`` indexes ``sources``
    (default :data:`PATCH_SOURCES`). Same seed, same patches.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    sources = tuple(PATCH_SOURCES if sources is None else sources)
    rng = np.random.default_rng(seed)
    imgs = [load_source_image(s, gray) for s in sources]
    for s, im in zip(sources, imgs):
        if min(im.shape[1:]) < size:
            raise ValueError(f"patch size {size} exceeds source image {s!r} of shape {im.shape[1:]}")
    ids = np.arange(int(n)) % len(sources)
    rng.shuffle(ids)
    out = np.empty((int(n), imgs[0].shape[0], size, size), dtype=np.float32)
    for k, i in enumerate(ids):
        _, H, W = imgs[i].shape
        r, c = rng.integers(0, H - size + 1), rng.integers(0, W - size + 1)
        out[k] = imgs[i][:, r:r + size, c:c + size]
    dev = resolve_device(device)
    return torch.as_tensor(out, device=dev), torch.as_tensor(ids, dtype=torch.int64, device=dev)


def _read_image(path: Path, gray: bool, size: int | None) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("L" if gray else "RGB")
            if size is not None:
                im = im.resize((size, size), Image.BILINEAR)
            a = np.asarray(im, dtype=np.float32) / 255.0
    except OSError as e:
        raise ValueError(f"cannot read image {path}: {e}") from e
    return a[None] if gray else a.transpose(2, 0, 1)


def image_folder(path, size: int, *, gray: bool = False, device=None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Images under ``path`` resized to ``size x size``.

    With sub-folders (``path/<class>/*.png``, torchvision's ImageFolder layout) the labels are the
    sorted class-folder indices; a flat folder gives labels ``None``.
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    is_img = lambda p: p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS  # noqa: E731
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and any(is_img(p) for p in d.rglob("*")))
    if classes:
        files = [(p, k) for k, c in enumerate(classes) for p in sorted((root / c).rglob("*")) if is_img(p)]
    else:
        files = [(p, -1) for p in sorted(root.iterdir()) if is_img(p)]
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {root}")
    x = np.stack([_read_image(p, gray, size) for p, _ in files])
    dev = resolve_device(device)
    y = torch.as_tensor([k for _, k in files], dtype=torch.int64, device=dev) if classes else None
    return torch.as_tensor(x, device=dev), y


# ----------------------------------------------------------------------------- torchvision layout
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IDX_FILES = {True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
              False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def read_idx(path) -> np.ndarray:
    """An IDX file (MNIST format), optionally gzipped."""
    path = Path(path)
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number)")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">i4", count=ndim, offset=4)
    dt = np.dtype(_IDX_TYPES[raw[2]])
    count = int(np.prod(dims))
    if len(raw) != 4 + 4 * ndim + count * dt.itemsize:
        raise ValueError(f"{path}: size {len(raw)} bytes does not match header dims {tuple(dims)}")
    return np.frombuffer(raw, dtype=dt, offset=4 + 4 * ndim).reshape(tuple(int(d) for d in dims))


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only (CIFAR batches); anything else is refused."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a dataset file")


def _load_cifar_batch(path: Path) -> dict:
    try:
        d = _NumpyOnlyUnpickler(io.BytesIO(path.read_bytes()), encoding="latin1").load()
    except pickle.UnpicklingError as e:
        raise ValueError(f"{path}: {e}") from e
    if not isinstance(d, dict) or "data" not in d:
        raise ValueError(f"{path} is not a CIFAR python batch (no 'data' entry)")
    return d


def torchvision_dataset(name: str, root, *, train: bool = True, size: int | None = None, n: int | None = None,
                        gray: bool | None = None, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """A dataset already on disk in torchvision's layout (no download, no torchvision import).

    ``name``: ``MNIST``, ``FashionMNIST``, ``KMNIST`` (``root/<name>/raw/*-idx?-ubyte[.gz]``) or
    ``CIFAR10`` / ``CIFAR100`` (``root/cifar-10-batches-py`` / ``root/cifar-100-python``). ``n``
    keeps the first ``n`` samples; ``gray`` converts colour to grey (default: keep).
    """
    root = Path(root)
    if name in ("MNIST", "FashionMNIST", "KMNIST"):
        raw = root / name / "raw"
        files = []
        for stem in _IDX_FILES[bool(train)]:
            cand = [raw / stem, raw / (stem + ".gz")]
            hit = next((p for p in cand if p.is_file()), None)
            if hit is None:
                raise FileNotFoundError(f"{name}: expected {cand[0]} (or .gz); download it yourself, e.g. with "
                                        "torchvision on a machine with network access")
            files.append(hit)
        xs, ys = read_idx(files[0]), read_idx(files[1])
        if xs.ndim != 3 or ys.ndim != 1 or len(xs) != len(ys):
            raise ValueError(f"{name}: images {xs.shape} and labels {ys.shape} do not match")
        x = _to_float01(xs)[:, None]
    elif name in ("CIFAR10", "CIFAR100"):
        base = root / ("cifar-10-batches-py" if name == "CIFAR10" else "cifar-100-python")
        if name == "CIFAR10":
            parts = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
        else:
            parts = ["train" if train else "test"]
        missing = [p for p in parts if not (base / p).is_file()]
        if missing:
            raise FileNotFoundError(f"{name}: missing {', '.join(str(base / p) for p in missing)}")
        batches = [_load_cifar_batch(base / p) for p in parts]
        key = "labels" if name == "CIFAR10" else "fine_labels"
        x = np.concatenate([np.asarray(b["data"], dtype=np.uint8).reshape(-1, 3, 32, 32) for b in batches])
        ys = np.concatenate([np.asarray(b[key]) for b in batches])
        x = _to_float01(x)
    else:
        raise ValueError(f"unknown dataset {name!r}; supported: MNIST, FashionMNIST, KMNIST, CIFAR10, CIFAR100")
    if n is not None:
        x, ys = x[:n], ys[:n]
    xt = torch.as_tensor(np.ascontiguousarray(x))
    if gray and xt.shape[1] == 3:
        xt = xt.mean(1, keepdim=True)
    elif gray is False and xt.shape[1] == 1:
        xt = xt.repeat(1, 3, 1, 1)
    dev = resolve_device(device)
    return resize(xt, size).to(dev), torch.as_tensor(np.asarray(ys, dtype=np.int64), device=dev)
