"""The ``aeprobe inspect`` command: build the user's model, load its weights safely, load the data, inspect.

::

    aeprobe inspect --model mymodels:conv_ae --weights ae.safetensors --data npy:train.npy \\
        --heldout npy:test.npy --labels npy:train_labels.npy --out runs/inspect
    aeprobe inspect --model mymodels:seq_ae --weights ae.pt --data digits \\
        --view '{"encoder": ["0", "1"], "decoder": ["2", "3"]}' --out runs/seq

* ``--model MODULE:FACTORY``: ``MODULE`` is imported (the current directory is searched too; a path
  ending in ``.py`` is loaded from that file) and ``FACTORY()`` called with no arguments.
* ``--weights FILE``: a ``.safetensors`` file (a plain state_dict or an aeprobe checkpoint) or a
  ``torch.save`` state_dict, read by :func:`aeprobe.checkpoint.read_state_dict` -- ``torch.load`` with
  ``weights_only=True``, so a pickle payload is refused, never run. Missing, unexpected or
  mis-shaped keys are named before anything is loaded.
* ``--data`` / ``--heldout`` ``SPEC``: ``npy:PATH`` (an array in the model's input layout ``[N, ...]``,
  loaded with ``allow_pickle=False``; integers are scaled to [0, 1] when uint8), ``folder:PATH`` (an
  image folder), ``torchvision:NAME:ROOT`` (MNIST, FashionMNIST, KMNIST, CIFAR10, CIFAR100 already on
  disk: the train split for ``--data``, the test split for ``--heldout``), ``digits`` (scikit-learn's
  bundled 8x8 digits), ``patches`` (patches of the photographs bundled with scikit-image / scikit-learn;
  another seed for ``--heldout``). ``--size`` resizes images, ``--gray`` keeps one channel.
* ``--labels``: ``npy:PATH`` (one integer per ``--data`` image) or ``data`` (the labels the source has:
  digit classes, class folders, dataset labels, patch source images; also for ``--heldout``).
* ``--view JSON``: the arguments of :func:`aeprobe.autoencoder`; ``encode`` / ``decode`` name
  methods of the model (JSON holds no functions).

Nothing is downloaded. Errors the user can fix are one ``aeprobe: error: ...`` line (exit code 2).
"""
from __future__ import annotations

import argparse
import difflib
import importlib
import importlib.util
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

__all__ = ["add_arguments", "handle", "build_model", "load_weights", "load_images", "load_labels", "parse_view",
           "VIEW_KEYS"]

#: keys ``--view`` accepts (the arguments of :func:`aeprobe.autoencoder`)
VIEW_KEYS = ("encoder", "decoder", "code_at", "encode", "decode", "output", "code", "reconstruct")
_SOURCES = "npy:PATH, folder:PATH, torchvision:NAME:ROOT, digits or patches"


def _usage(msg: str) -> Exception:
    from aeprobe.flags import UsageError

    return UsageError(" ".join(str(msg).split()))  # one line


def add_arguments(p: argparse.ArgumentParser, _study: str | None = None) -> None:
    from aeprobe.flags import shared_flags

    p.epilog = __doc__.split("\n\n", 1)[1].strip()
    g = p.add_argument_group("model and data")
    g.add_argument("--model", required=True, metavar="MODULE:FACTORY", help="factory building the architecture")
    g.add_argument("--weights", metavar="FILE", help=".safetensors or torch.save state_dict (weights_only)")
    g.add_argument("--data", required=True, metavar="SPEC", help=f"training images: {_SOURCES}")
    g.add_argument("--heldout", metavar="SPEC", help="held-out images (same forms): enables the overfitting split")
    g.add_argument("--labels", metavar="SPEC", help="npy:PATH or data: enables the linear probe")
    g.add_argument("--view", metavar="JSON", help='aeprobe.autoencoder arguments, e.g. \'{"encoder": "enc", '
                   '"decoder": "dec"}\' or \'{"code_at": "down2"}\'')
    g.add_argument("--size", type=int, metavar="N", help="resize images to N x N (folder, torchvision, digits; "
                   "patch size for patches, default 32)")
    g.add_argument("--gray", action="store_true", help="one channel (mean of the colour channels)")
    shared_flags(p)  # --quick (default) / --full / --smoke, --out, --device, --threads, --no-progress, --seed


# ----------------------------------------------------------------------------- model


def _import(module: str):
    if module.endswith(".py"):
        path = Path(module)
        if not path.is_file():
            raise _usage(f"--model: file {module} does not exist")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        mod = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(mod)
        except Exception as exc:  # noqa: BLE001 -- the user's file: say what went wrong in one line
            raise _usage(f"--model: importing {module} failed: {type(exc).__name__}: {exc}") from exc
        return mod
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:  # `aeprobe` as a console script does not search the current directory
        sys.path.append(cwd)
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and module.split(".")[0] == exc.name.split(".")[0]:
            raise _usage(f"--model: no module named {module!r} (searched the current directory and PYTHONPATH)") from exc
        raise _usage(f"--model: importing {module} failed: {exc}") from exc
    except Exception as exc:  # noqa: BLE001
        raise _usage(f"--model: importing {module} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)


def build_model(spec: str):
    """``MODULE:FACTORY`` -> the module ``FACTORY()`` returns (an ``nn.Module``)."""
    from torch import nn

    module, sep, factory = spec.rpartition(":")
    if not sep or not module or not factory:
        raise _usage(f"--model must be MODULE:FACTORY (e.g. mymodels:conv_ae), got {spec!r}")
    mod = _import(module)
    fn = getattr(mod, factory, None)
    if fn is None or not callable(fn):
        have = sorted(n for n, v in vars(mod).items() if callable(v) and not n.startswith("_")
                      and getattr(v, "__module__", None) == mod.__name__)
        close = difflib.get_close_matches(factory, have, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise _usage(f"--model: module {module!r} has no factory {factory!r} ({hint}it defines: "
                     f"{', '.join(have) or 'nothing callable'})")
    try:
        model = fn()
    except Exception as exc:  # noqa: BLE001
        raise _usage(f"--model: {spec}() failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise _usage(f"--model: {spec}() returned {type(model).__name__}, not a torch.nn.Module")
    return model


def load_weights(model, path: str) -> dict[str, Any]:
    """Load ``path`` into ``model`` after checking every key and shape; returns a short description."""
    from aeprobe.checkpoint import CheckpointError, read_state_dict

    try:
        with warnings.catch_warnings():  # torch's note on a pickle protocol it reads anyway: not the user's error
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            sd = read_state_dict(path)
    except CheckpointError as exc:
        raise _usage(f"--weights: {exc}") from exc
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [f"{k} {tuple(sd[k].shape)} in the file, {tuple(own[k].shape)} in the model" for k in own
              if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        def few(keys):
            return ", ".join(keys[:4]) + (f" and {len(keys) - 4} more" if len(keys) > 4 else "")
        parts = ([f"{len(missing)} missing ({few(missing)})"] if missing else []) + \
                ([f"{len(unexpected)} unexpected ({few(unexpected)})"] if unexpected else []) + \
                ([f"shapes differ: {few(shapes)}"] if shapes else [])
        raise _usage(f"--weights {path} does not fit the model: " + "; ".join(parts))
    model.load_state_dict(sd)
    return dict(file=str(path), tensors=len(sd))


# ----------------------------------------------------------------------------- data


def _npy(path: str):
    import numpy as np
    import torch

    try:
        a = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise _usage(f"{path} does not exist") from None
    except ValueError as exc:  # a pickled object array, or not an .npy file
        raise _usage(f"{path}: {exc} (an .npy array of numbers is needed; pickles are never loaded)") from exc
    if not isinstance(a, np.ndarray):
        raise _usage(f"{path} holds several arrays (an .npz?); give one .npy array")
    return torch.from_numpy(np.ascontiguousarray(a))


def load_images(spec: str, *, heldout: bool = False, size: int | None = None, gray: bool = False, seed: int = 0,
                n_patches: int = 2000):
    """``(x, y or None, description)`` for a data ``SPEC`` (module docstring)."""
    import torch

    from aeprobe import data as D

    flag = "--heldout" if heldout else "--data"
    if spec.startswith("npy:"):
        path = spec[4:]
        x = _npy(path)
        if x.ndim < 2:
            raise _usage(f"{flag} {path}: need an array [N, ...], got shape {tuple(x.shape)}")
        if x.dtype == torch.uint8:
            x = x.float() / 255.0
        elif not x.is_floating_point():
            x = x.float()
        if size is not None and x.ndim == 4:
            x = D.resize(x.float(), size)
        y, desc = None, f"{path}"
    elif spec.startswith("folder:"):
        path = spec[7:]
        try:
            x, y = D.image_folder(path, size, gray=gray)
        except FileNotFoundError as exc:
            raise _usage(f"{flag}: {exc}") from exc
        except ValueError as exc:
            raise _usage(f"{flag} {spec}: {exc}" + ("" if size else " (images of different sizes? pass --size)")) from exc
        desc = f"image folder {path}"
    elif spec.startswith("torchvision:"):
        parts = spec.split(":", 2)
        if len(parts) != 3 or not parts[1] or not parts[2]:
            raise _usage(f"{flag} torchvision needs torchvision:NAME:ROOT, got {spec!r}")
        try:
            x, y = D.torchvision_dataset(parts[1], parts[2], train=not heldout, size=size, gray=gray or None)
        except FileNotFoundError as exc:
            raise _usage(f"{flag}: {exc}") from exc
        desc = f"torchvision {parts[1]} ({'test' if heldout else 'train'} split) from {parts[2]}"
    elif spec == "digits":
        x, y = D.digits(size=size)
        desc = "scikit-learn digits"
    elif spec == "patches":
        x, y = D.image_patches(n_patches, size=size or 32, seed=seed + (1 if heldout else 0), gray=True)
        desc = f"{n_patches} patches of the bundled photographs (seed {seed + (1 if heldout else 0)})"
    else:
        raise _usage(f"unknown {flag} {spec!r}; use {_SOURCES}")
    if gray and x.ndim == 4 and x.shape[1] > 1:
        x = x.mean(1, keepdim=True)
    return x.cpu(), (None if y is None else y.cpu()), desc


def load_labels(spec: str | None, y_source, n: int, flag: str = "--labels"):
    import torch

    if spec is None:
        return None
    if spec == "data":
        if y_source is None:
            raise _usage(f"{flag} data: the data source has no labels; give {flag} npy:PATH")
        return y_source
    if spec.startswith("npy:"):
        y = _npy(spec[4:])
        if y.ndim != 1 or y.shape[0] != n or y.is_floating_point() and not torch.equal(y, y.round()):
            raise _usage(f"{flag} {spec[4:]}: need one integer label per image ({n}), got {tuple(y.shape)} {y.dtype}")
        return y.long()
    raise _usage(f"unknown {flag} {spec!r}; use npy:PATH or data")


def parse_view(text: str | None, model) -> dict[str, Any]:
    """``--view`` JSON -> keyword arguments of :func:`aeprobe.autoencoder`."""
    if not text:
        return {}
    try:
        kw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _usage(f"--view is not valid JSON ({exc.msg} at character {exc.pos}): {text!r}") from None
    if not isinstance(kw, dict):
        raise _usage(f"--view must be a JSON object like '{{\"encoder\": \"enc\"}}', got {text!r}")
    bad = sorted(set(kw) - set(VIEW_KEYS))
    if bad:
        raise _usage(f"--view: unknown key(s) {bad}; use {', '.join(VIEW_KEYS)}")
    for key in ("encode", "decode"):
        if key in kw:
            fn = getattr(model, str(kw[key]), None)
            if not callable(fn):
                raise _usage(f"--view: {key}={kw[key]!r} is not a method of {type(model).__name__}")
            kw[key] = fn
    return kw


# ----------------------------------------------------------------------------- the command


def handle(args: argparse.Namespace, argv: Sequence[str]) -> int:
    import aeprobe
    from aeprobe.flags import mode_of, resolve_threads, thread_count
    from aeprobe.device import resolve_device
    from aeprobe.inspection.budget import Budget
    from aeprobe.inspection.run import inspect
    from aeprobe.progress import Progress

    out = args.out if args.out is not None else Path("runs") / "inspect"
    with thread_count(resolve_threads(args.threads)):
        model = build_model(args.model)
        weights = load_weights(model, args.weights) if args.weights else None
        kw = parse_view(args.view, model)
        try:
            ae = aeprobe.autoencoder(model, **kw)
        except (TypeError, KeyError, ValueError) as exc:
            raise _usage(f"--view: {exc}") from exc
        seed = 0 if args.seed is None else args.seed
        x, y, desc = load_images(args.data, size=args.size, gray=args.gray, seed=seed)
        xt = yt = None
        data = dict(train=f"{desc}: {x.shape[0]} images of shape {tuple(x.shape[1:])}")
        if args.heldout:
            xt, yt, desc_t = load_images(args.heldout, heldout=True, size=args.size, gray=args.gray, seed=seed)
            data["test"] = f"{desc_t}: {xt.shape[0]} images"
        labels = load_labels(args.labels, y, x.shape[0])
        labels_t = None
        if labels is not None and xt is not None and args.labels == "data":
            labels_t = yt
        if labels is not None:
            data["labels"] = f"{args.labels} ({len(labels.unique())} classes)"
        data["weights"] = f"{weights['file']} ({weights['tensors']} tensors)" if weights else "none (the factory's own)"
        model.to(resolve_device(args.device))
        x = x.to(ae.dtype)  # the model's own float type (an .npy of float64 for a float32 model)
        xt = None if xt is None else xt.to(ae.dtype)
        with Progress("inspect", live=False if args.no_progress else None, stages=10) as progress:
            rep = inspect(ae, x, xt, labels=labels, labels_test=labels_t, out=out, budget=Budget.for_mode(mode_of(args)),
                          seed=seed, progress=progress, data=data, command=["aeprobe", *argv], cli=True)
    for key, s in rep.results.items():
        if isinstance(s, dict) and "status" in s:
            print(f"{key:<13} {s['status']:<15} {s['reading']}")
    print(f"wrote {out}/report.md, {out}/report.html, {out}/results.json")
    return 0
