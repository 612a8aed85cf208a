"""aeprobe: open trained autoencoders up and check what is inside against closed-form theory.

Top-level names are imported lazily (PEP 562) so ``import aeprobe`` stays cheap and a
submodule is only loaded when one of its names is used.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> submodule that defines it
_LAZY = {
    # the view: how to read any autoencoder (every probe goes through it)
    "autoencoder": "aeprobe.view",
    "Autoencoder": "aeprobe.view",
    # probe core (hooks, ablation, weights, attribution)
    "capture": "aeprobe.hooks",
    "stream": "aeprobe.hooks",
    "intervene": "aeprobe.hooks",
    "remove_biases": "aeprobe.ablation",
    "strip_biases": "aeprobe.ablation",
    "zero_weights": "aeprobe.ablation",
    "replace_weights": "aeprobe.ablation",
    "freeze": "aeprobe.ablation",
    "layer_weights": "aeprobe.weights",
    "LayerRecord": "aeprobe.weights",
    "attribute_code": "aeprobe.attribution",
    "patching": "aeprobe.activation_patching",
    "PatchingReport": "aeprobe.activation_patching",
    "Variance": "aeprobe.hooks",
    "Projection": "aeprobe.hooks",
    "set_value": "aeprobe.hooks",
    "get_module": "aeprobe._modules",
    "leaf_names": "aeprobe._modules",
    # state guarantees: snapshot a model, compare, assert nothing changed
    "snapshot": "aeprobe.state",
    "diff": "aeprobe.state",
    "assert_unchanged": "aeprobe.state",
    # training and checkpoints (the trainer itself: ``from aeprobe.train import train`` -- a
    # top-level ``train`` would be replaced by the submodule as soon as it is imported)
    "TrainResult": "aeprobe.train",
    "save_checkpoint": "aeprobe.checkpoint",
    "load_checkpoint": "aeprobe.checkpoint",
    "CheckpointError": "aeprobe.checkpoint",
    "train_many": "aeprobe.multiseed",
    # practices: upsampling, checkerboard probe, progressive resizing, feature loss, user weights
    "make_upsample": "aeprobe.models.upsample",
    "checkerboard_probe": "aeprobe.probes.checkerboard",
    "progressive_resize": "aeprobe.schedules",
    "FeatureLoss": "aeprobe.losses",
    "load_feature_net": "aeprobe.pretrained",
    "load_encoder": "aeprobe.pretrained",
    "read_state_dict": "aeprobe.checkpoint",
    "resolve_device": "aeprobe.device",
    # scale-out: mergeable reducers (all_reduce across torch.distributed ranks), sharding, sweeps
    # (the sweep function lives in aeprobe.sweeps: a submodule named ``sweep`` would replace it)
    "Reducer": "aeprobe.reducers",
    "Mean": "aeprobe.reducers",
    "MinMax": "aeprobe.reducers",
    "Fold": "aeprobe.reducers",
    "shard": "aeprobe.distributed",
    "sweep": "aeprobe.sweeps",
    "SweepError": "aeprobe.sweeps",
    "config_key": "aeprobe.sweeps",
    # the report on a user's own model (the module is ``aeprobe.inspection``: a submodule named
    # ``inspect`` would replace the function)
    "inspect": "aeprobe.inspection",
    "InspectReport": "aeprobe.inspection",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str):
    try:
        module = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'aeprobe' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
