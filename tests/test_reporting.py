"""aeprobe.reporting: atomic writes with the permissions a plain open() gives, for every output type."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from aeprobe.reporting import atomic_write_bytes, atomic_write_npz, atomic_writer, write_json


def _with_umask(mask, fn):
    old = os.umask(mask)
    try:
        return fn()
    finally:
        os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_new_files_get_0o666_filtered_by_the_umask(tmp_path, mask):
    plain = _with_umask(mask, lambda: open(tmp_path / "plain.txt", "w").close())  # noqa: SIM115
    assert plain is None
    expected = (tmp_path / "plain.txt").stat().st_mode & 0o777
    assert expected == 0o666 & ~mask  # what the OS gives a plain open()
    for name, write in [("a.bin", lambda p: atomic_write_bytes(p, b"x")),
                        ("r.json", lambda p: write_json(p, {"a": 1})),
                        ("p.npz", lambda p: atomic_write_npz(p, t=np.arange(3)))]:
        path = _with_umask(mask, lambda: write(tmp_path / name))
        assert (path.stat().st_mode & 0o777) == expected, name


def test_an_existing_file_keeps_its_mode(tmp_path):
    path = tmp_path / "results.json"
    path.write_text("{}")
    os.chmod(path, 0o640)
    write_json(path, {"a": 2})
    assert (path.stat().st_mode & 0o777) == 0o640 and json.loads(path.read_text()) == {"a": 2}


def test_npz_round_trip_at_the_exact_path(tmp_path):
    path = atomic_write_npz(tmp_path / "profile.npz", t=torch.linspace(0, 1, 5), f=np.ones(5))
    with np.load(path) as z:
        assert np.allclose(z["t"], np.linspace(0, 1, 5)) and np.array_equal(z["f"], np.ones(5))
    atomic_write_npz(tmp_path / "noext", compressed=True, a=np.zeros(2))
    assert (tmp_path / "noext").exists() and not (tmp_path / "noext.npz").exists()
    with pytest.raises(ValueError, match="at least one"):
        atomic_write_npz(tmp_path / "empty.npz")


def test_a_failure_mid_write_leaves_the_old_file_and_no_temp_file(tmp_path):
    path = tmp_path / "profile.npz"
    atomic_write_npz(path, t=np.arange(4))
    before = path.read_bytes()

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with atomic_writer(path) as fh:
            fh.write(b"half a zip")
            raise Boom
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["profile.npz"]
