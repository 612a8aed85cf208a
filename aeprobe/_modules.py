"""Name resolution: address the submodules of any ``nn.Module`` by their ``named_modules()`` names.

Every probe of the package takes module *names* (``"encoder.0"``, ``"decoder.fc"``) so it works on
any model, not only ours. This module turns names into modules and fails loudly, with the closest
existing names, when a name does not exist::

    >>> get_module(model, "encodr.0")
    KeyError: no module named 'encodr.0' in Sequential; close matches: 'encoder.0', 'decoder.0'

The empty string ``""`` is the model itself (as in ``named_modules()``). A module object that is a
submodule of the model is accepted wherever a name is, and mapped back to its name.

**Wildcards**: a name containing ``*``, ``?`` or ``[`` is an ``fnmatch`` pattern over the
``named_modules()`` names (case-sensitive; ``*`` also crosses dots), expanded in tree order:
``"decoder.*"`` is every submodule of ``decoder``, ``"*.conv"`` every module called ``conv``. The
model itself (``""``) is never matched by a pattern, a module shared under several names is matched
once (its first name), and a pattern that matches nothing is a ``KeyError`` with close matches.
The tree is walked at most once per call, and not at all for plain names.
"""
from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from fnmatch import fnmatchcase

import torch.nn as nn

__all__ = ["ModuleNotFoundKeyError", "get_module", "resolve_modules", "module_name", "leaf_names"]

_WILDCARD = re.compile(r"[*?\[]")


def _is_pattern(name: str) -> bool:
    """True when ``name`` is a wildcard pattern (contains ``*``, ``?`` or ``[``), not a plain module name."""
    return isinstance(name, str) and _WILDCARD.search(name) is not None


class ModuleNotFoundKeyError(KeyError):
    """``KeyError`` for an unknown module name; ``str()`` shows the message, not its ``repr``."""

    def __str__(self) -> str:  # KeyError.__str__ would repr() the message (quotes, escaped newlines)
        return str(self.args[0]) if self.args else ""


def _all_names(model: nn.Module) -> list[str]:
    # remove_duplicate=False: a module shared under two paths is addressable by both.
    return [n for n, _ in model.named_modules(remove_duplicate=False)]


def _not_found(model: nn.Module, name: str, names: list[str] | None = None) -> ModuleNotFoundKeyError:
    names = _all_names(model) if names is None else names
    pattern = _is_pattern(name)
    # for a pattern, compare its literal part ("decodr.*" -> "decodr") with the names
    probe = (_WILDCARD.split(name)[0].rstrip(".") or name) if pattern else name
    close = difflib.get_close_matches(probe, [n for n in names if n], n=5, cutoff=0.5)
    if close:
        hint = "close matches: " + ", ".join(repr(c) for c in close)
    else:
        shown = [n for n in names if n][:12]
        more = "" if len(names) - 1 <= 12 else f", ... ({len(names) - 1} in total)"
        hint = "available: " + ", ".join(repr(n) for n in shown) + more if shown else "the model has no submodules"
    what = f"no module matches the pattern {name!r}" if pattern else f"no module named {name!r}"
    return ModuleNotFoundKeyError(f"{what} in {type(model).__name__}; {hint}")


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
    module = model
    if name:
        for atom in name.split("."):  # the registered children, as get_submodule, by dict lookups
            children = getattr(module, "_modules", None)
            module = children.get(atom) if children is not None else None
            if module is None:
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
    """Resolve names, wildcard patterns or submodule objects to an ordered ``{name: module}`` dict.

    Duplicate names are dropped (first occurrence kept); a pattern adds its matches in tree order,
    skipping modules already resolved. An empty collection raises ``ValueError``; an unknown name
    or a pattern that matches nothing raises ``KeyError`` with close matches.

    Example::

        mods = resolve_modules(model, ["encoder.0", "decoder.*"])
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
    named: list[tuple[str, nn.Module]] | None = None  # the one walk of the tree, done only when needed

    def walk() -> list[tuple[str, nn.Module]]:
        nonlocal named
        if named is None:
            named = list(model.named_modules(remove_duplicate=False))
        return named

    out: dict[str, nn.Module] = {}
    for item in items:
        if isinstance(item, nn.Module):
            for n, m in walk():
                if m is item:
                    out.setdefault(n, m)
                    break
            else:
                module_name(model, item)  # raises the KeyError
        elif isinstance(item, str) and _is_pattern(item):
            taken = {id(m) for m in out.values()}
            found = False
            for n, m in walk():
                if n and fnmatchcase(n, item):
                    found = True
                    if id(m) not in taken:
                        taken.add(id(m))
                        out.setdefault(n, m)
            if not found:
                raise _not_found(model, item, [n for n, _ in walk()])
        else:
            if item not in out:
                out[item] = get_module(model, item)
    return out


def leaf_names(model: nn.Module) -> list[str]:
    """Names of the leaf modules (no children) in ``named_modules()`` order; ``[""]`` for a leaf model."""
    return [n for n, m in model.named_modules() if next(m.children(), None) is None]
