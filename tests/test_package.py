"""The package's lazy top-level names resolve to the objects of their submodules."""
import importlib

import pytest

import aeprobe


def test_every_lazy_name_resolves_to_its_module_object():
    for name, module in aeprobe._LAZY.items():
        assert getattr(aeprobe, name) is getattr(importlib.import_module(module), name)
    assert set(aeprobe._LAZY) <= set(dir(aeprobe))


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'capturee'"):
        aeprobe.capturee  # noqa: B018


def test_no_lazy_name_is_shadowed_by_a_submodule():
    """Importing a submodule sets it as a package attribute; a lazy name equal to a submodule's
    name would then resolve to the module instead of the function."""
    import pkgutil

    subs = {m.name for m in pkgutil.iter_modules(aeprobe.__path__)}
    assert not subs & set(aeprobe._LAZY)


def test_torch_threads_restores_the_count_also_on_error():
    import torch

    from aeprobe.device import torch_threads

    prev = torch.get_num_threads()
    with pytest.raises(RuntimeError):
        with torch_threads(prev + 1) as n:
            assert n == torch.get_num_threads() == prev + 1
            raise RuntimeError
    assert torch.get_num_threads() == prev
