"""aeprobe.device: the machine load on every platform (os.getloadavg is Unix-only)."""
from __future__ import annotations

import os

from aeprobe.device import load_average
from aeprobe.report import machine_load


def test_without_getloadavg_the_load_is_unknown(monkeypatch):
    """Windows has no os.getloadavg: no AttributeError, the load is None (reports say so)."""
    monkeypatch.delattr(os, "getloadavg", raising=False)
    assert load_average() is None
    assert machine_load() is None


def test_the_load_is_read_once_and_rounded_for_reports(monkeypatch):
    monkeypatch.setattr(os, "getloadavg", lambda: (1.234, 0.5, 0.25), raising=False)
    assert load_average() == (1.234, 0.5, 0.25)
    assert machine_load() == [1.23, 0.5, 0.25]


def test_a_failing_getloadavg_means_unknown(monkeypatch):
    def fails():
        raise OSError("load average unobtainable")

    monkeypatch.setattr(os, "getloadavg", fails, raising=False)
    assert load_average() is None
