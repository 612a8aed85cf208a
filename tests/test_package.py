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
