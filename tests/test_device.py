"""aeprobe.device: thread choice on every platform (os.getloadavg is Unix-only)."""
from __future__ import annotations

import os

import pytest

from aeprobe.device import choose_threads, load_average


def test_without_getloadavg_the_load_is_unknown_and_threads_still_chosen(monkeypatch):
    """Windows has no os.getloadavg: no AttributeError, the load is None, and an unknown load is
    treated as an idle machine (up to 2 threads)."""
    monkeypatch.delattr(os, "getloadavg", raising=False)
    assert load_average() is None
    assert choose_threads() == min(2, os.cpu_count() or 1)
    assert choose_threads(3) == 3


@pytest.mark.parametrize("load, cpus, expected", [(1.5, 2, 1), (0.2, 2, 2), (1.5, 8, 2), (0.0, 1, 1)])
def test_busy_small_machines_get_one_thread(monkeypatch, load, cpus, expected):
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load), raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: cpus)
    assert load_average() == (load, load, load)
    assert choose_threads() == expected


def test_a_failing_getloadavg_means_unknown(monkeypatch):
    def fails():
        raise OSError("load average unobtainable")

    monkeypatch.setattr(os, "getloadavg", fails, raising=False)
    assert load_average() is None
    assert choose_threads() >= 1
