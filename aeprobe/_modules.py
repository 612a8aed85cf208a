"""Name resolution: address the submodules of any ``nn.Module`` by their ``named_modules()`` names.

Every probe of the package takes module *names* (``"encoder.0"``, ``"decoder.fc"``) so it works on
any model, not only ours. This module turns names into modules and fails loudly, with the closest
existing names, when a name does not exist::

    >>> get_module(model, "encodr.0")
    KeyError: no module named 'encodr.0' in Sequential; close matches: 'encoder.0', 'decoder.0'

The empty string ``""`` is the model itself (as in ``named_modules()``). A module object that is a
submodule of the model is accepted wherever a name is, and mapped back to its name.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable

import torch.nn as nn

__all__ = ["ModuleNotFoundKeyError", "get_module", "resolve_modules", "module_name", "leaf_names"]


class ModuleNotFoundKeyError(KeyError):
    """``KeyError`` for an unknown module name; ``str()`` shows the message, not its ``repr``."""

    def __str__(self) -> str:  # KeyError.__str__ would repr() the message (quotes, escaped newlines)
        return str(self.args[0]) if self.args else ""


def _all_names(model: nn.Module) -> list[str]:
    # remove_duplicate=False: a module shared under two paths is addressable by both.
    return [n for n, _ in model.named_modules(remove_duplicate=False)]


def _not_found(model: nn.Module, name: str) -> ModuleNotFoundKeyError:
    names = _all_names(model)
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    if close:
        hint = "close matches: " + ", ".join(repr(c) for c in close)
    else:
        shown = [n for n in names if n][:12]
        more = "" if len(names) - 1 <= 12 else f", ... ({len(names) - 1} in total)"
        hint = "available: " + ", ".join(repr(n) for n in shown) + more if shown else "the model has no submodules"
    return ModuleNotFoundKeyError(f"no module named {name!r} in {type(model).__name__}; {hint}")


def get_module(model: nn.Module, name: str) -> nn.Module:
    """Return the submodule of ``model`` called ``name`` (``""`` is ``model`` itself).

    Raises ``KeyError`` listing close matches (difflib) when the name does not exist, and
    ``TypeError`` when ``model`` is not an ``nn.Module`` or ``name`` not a string.

    Example::

        conv = get_module(model, "encoder.0")
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(name, str):
        raise TypeError(f"module name must be a str, got {type(name).__name__} ({name!r})")
    try:
        module = model.get_submodule(name)
    except AttributeError:
        raise _not_found(model, name) from None
    if not isinstance(module, nn.Module):  # pragma: no cover - get_submodule already checks
        raise _not_found(model, name)
    return module


def module_name(model: nn.Module, module: nn.Module) -> str:
    """Name under which ``module`` appears in ``model`` (first one if shared); ``KeyError`` if absent."""
    for n, m in model.named_modules(remove_duplicate=False):
        if m is module:
            return n
    raise ModuleNotFoundKeyError(
        f"{type(module).__name__} object is not a submodule of {type(model).__name__} (pass a name or a submodule)"
    )


def resolve_modules(model: nn.Module, names: str | nn.Module | Iterable[str | nn.Module]) -> dict[str, nn.Module]:
    """Resolve one or several names (or submodule objects) to an ordered ``{name: module}`` dict.

    Duplicates are dropped (first occurrence kept). An empty collection raises ``ValueError``;
    unknown names raise ``KeyError`` with close matches (all unknown names are checked before raising
    so the message reports the first one).

    Example::

        mods = resolve_modules(model, ["encoder.0", "decoder.2"])
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(names, (str, nn.Module)):
        names = [names]
    try:
        items = list(names)
    except TypeError:
        raise TypeError(
            f"names must be a module name, a submodule or an iterable of them, got {type(names).__name__}"
        ) from None
    if not items:
        raise ValueError("no module names given (empty list); use leaf_names(model) for every leaf module")
    out: dict[str, nn.Module] = {}
    for item in items:
        if isinstance(item, nn.Module):
            name, module = module_name(model, item), item
        else:
            name, module = item, get_module(model, item)
        out.setdefault(name, module)
    return out


def leaf_names(model: nn.Module) -> list[str]:
    """Names of the leaf modules (no children) in ``named_modules()`` order; ``[""]`` for a leaf model."""
    return [n for n, m in model.named_modules() if next(m.children(), None) is None]
