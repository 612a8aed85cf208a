"""aeprobe.checkpoint: round trip, atomic writes, and refusal of corrupted / malicious files."""
from __future__ import annotations

import math
import os
import pickle
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from aeprobe.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


class TinyAE(nn.Module):
    def __init__(self, n: int = 6, d: int = 2):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(n, 4), nn.LeakyReLU(0.2), nn.Linear(4, d))
        self.decoder = nn.Sequential(nn.Linear(d, 4), nn.LeakyReLU(0.2), nn.Linear(4, n))

    def forward(self, x):
        return self.decoder(self.encoder(x))


def _trained_pair(seed: int = 0):
    torch.manual_seed(seed)
    model = TinyAE()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x = torch.randn(16, 6)
    for _ in range(3):
        opt.zero_grad()
        ((model(x) - x) ** 2).mean().backward()
        opt.step()
    return model, opt


def _same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_round_trip_restores_model_optimizer_rng_and_meta(tmp_path):
    model, opt = _trained_pair()
    gen = torch.Generator().manual_seed(123)
    gen_state = gen.get_state()
    meta = {"history": {"train_loss": [0.5, 0.25]}, "betas": (0.9, 0.999), "bad": float("nan"), "big": float("inf")}
    path = save_checkpoint(tmp_path / "run" / "ck.safetensors", model, opt, epoch=7,
                           rng_state={"perm": gen_state}, meta=meta)

    torch.manual_seed(99)
    fresh = TinyAE()
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=1e-2)
    ck = load_checkpoint(path, fresh, fresh_opt)

    assert ck.epoch == 7
    assert _same_state(fresh.state_dict(), model.state_dict())
    # optimizer state: every moment tensor bit-identical, hyper-parameters restored (tuple betas too)
    s_old, s_new = opt.state_dict(), fresh_opt.state_dict()
    for idx, per in s_old["state"].items():
        for key, val in per.items():
            assert torch.equal(s_new["state"][idx][key], val), (idx, key)
    assert s_new["param_groups"][0]["betas"] == (0.9, 0.999)
    assert torch.equal(ck.rng_state["perm"], gen_state)
    assert ck.meta["history"] == meta["history"] and ck.meta["betas"] == (0.9, 0.999)
    assert math.isnan(ck.meta["bad"]) and ck.meta["big"] == float("inf")
    # a restored generator continues the same stream
    g2 = torch.Generator()
    g2.set_state(ck.rng_state["perm"])
    assert torch.equal(torch.randperm(50, generator=g2), torch.randperm(50, generator=gen))


@settings(max_examples=15)
@given(
    n=st.integers(1, 7), d=st.integers(1, 3),
    dtype=st.sampled_from([torch.float32, torch.float64, torch.bfloat16, torch.float16]),
)
def test_any_model_state_round_trips_bit_exactly(tmp_path_factory, n, d, dtype):
    """Universal: whatever the sizes and dtype, load(save(state)) == state bit for bit."""
    tmp = tmp_path_factory.mktemp("ck")
    model = TinyAE(n, d).to(dtype)
    save_checkpoint(tmp / "m.safetensors", model, epoch=0)
    other = TinyAE(n, d).to(dtype)
    load_checkpoint(tmp / "m.safetensors", other)
    assert _same_state(other.state_dict(), model.state_dict())


def test_tied_and_channels_last_tensors_are_saved(tmp_path):
    conv = nn.Conv2d(2, 3, 3).to(memory_format=torch.channels_last)
    model = nn.Sequential(conv, nn.Conv2d(3, 3, 1))
    model[1].weight = nn.Parameter(torch.randn(3, 3, 1, 1))
    save_checkpoint(tmp_path / "c.safetensors", model, epoch=1)
    other = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Conv2d(3, 3, 1))
    load_checkpoint(tmp_path / "c.safetensors", other)
    assert _same_state(other.state_dict(), model.state_dict())


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path, monkeypatch):
    model, opt = _trained_pair()
    path = tmp_path / "ck.safetensors"
    save_checkpoint(path, model, opt, epoch=1)
    before = path.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.safetensors"]

    # simulate a crash at the moment of the rename: the old checkpoint must survive intact
    def boom(src, dst):
        raise OSError("simulated crash during rename")

    monkeypatch.setattr(os, "replace", boom)
    model2, opt2 = _trained_pair(seed=1)
    with pytest.raises(OSError, match="simulated crash"):
        save_checkpoint(path, model2, opt2, epoch=2)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.safetensors"]
    assert load_checkpoint(path, TinyAE()).epoch == 1


class _Payload:
    """Unpickling this object touches ``marker`` — stands in for arbitrary code execution."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_malicious_pickle_is_refused_and_payload_never_runs(tmp_path, writer):
    marker = tmp_path / "pwned"
    evil = tmp_path / f"evil_{writer}.ckpt"
    if writer == "pickle":
        evil.write_bytes(pickle.dumps({"state_dict": _Payload(str(marker))}, protocol=4))
    else:
        torch.save({"state_dict": _Payload(str(marker))}, evil)
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_checkpoint(evil, TinyAE())
    assert not marker.exists()
    # guard against a vacuous test: the payload is live when unpickled naively
    if writer == "pickle":
        pickle.loads(evil.read_bytes())
        assert marker.exists()


def test_plain_torch_save_state_dict_loads_with_weights_only(tmp_path):
    model = TinyAE()
    torch.save(model.state_dict(), tmp_path / "w.pt")
    other = TinyAE()
    from aeprobe.checkpoint import UnverifiedCheckpointWarning

    with pytest.warns(UnverifiedCheckpointWarning):  # a foreign file carries no aeprobe checksum
        ck = load_checkpoint(tmp_path / "w.pt", other)
    assert ck.epoch == 0 and _same_state(other.state_dict(), model.state_dict())


@pytest.mark.parametrize("keep", [0, 5, 100, -20])
def test_truncated_file_gives_checkpoint_error(tmp_path, keep):
    model, opt = _trained_pair()
    path = save_checkpoint(tmp_path / "ck.safetensors", model, opt, epoch=3)
    raw = path.read_bytes()
    path.write_bytes(raw[:keep] if keep >= 0 else raw[:keep])
    with pytest.raises(CheckpointError):
        load_checkpoint(path, TinyAE())


def test_flipped_byte_in_tensor_data_is_detected(tmp_path):
    model, opt = _trained_pair()
    path = save_checkpoint(tmp_path / "ck.safetensors", model, opt, epoch=3)
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0xFF  # last bytes are tensor payload, not header
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="corrupted"):
        load_checkpoint(path, TinyAE())


def test_garbage_and_missing_files(tmp_path):
    (tmp_path / "junk").write_bytes(os.urandom(256))
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "junk", TinyAE())
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.safetensors", TinyAE())


def test_wrong_architecture_names_the_keys(tmp_path):
    save_checkpoint(tmp_path / "a.safetensors", TinyAE(6, 2), epoch=0)
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_checkpoint(tmp_path / "a.safetensors", TinyAE(6, 3))
    with pytest.raises(CheckpointError, match="missing keys"):
        load_checkpoint(tmp_path / "a.safetensors", nn.Sequential(nn.Linear(6, 2)))


def test_optimizer_requested_but_not_saved(tmp_path):
    model = TinyAE()
    save_checkpoint(tmp_path / "m.safetensors", model, epoch=0)
    with pytest.raises(CheckpointError, match="no optimizer state"):
        load_checkpoint(tmp_path / "m.safetensors", model, torch.optim.Adam(model.parameters()))
    model2, opt2 = _trained_pair()
    save_checkpoint(tmp_path / "o.safetensors", model2, opt2, epoch=0)
    with pytest.raises(CheckpointError, match="Adam"):
        load_checkpoint(tmp_path / "o.safetensors", model, torch.optim.SGD(model.parameters(), lr=0.1))


def test_bad_arguments():
    with pytest.raises(ValueError, match="epoch"):
        save_checkpoint("/tmp/never_written.safetensors", TinyAE(), epoch=-1)
    with pytest.raises(TypeError, match="nn.Module"):
        save_checkpoint("/tmp/never_written.safetensors", {"w": torch.zeros(1)}, epoch=0)
    with pytest.raises(TypeError, match="JSON"):
        save_checkpoint("/tmp/never_written.safetensors", TinyAE(), epoch=0, meta={"f": object()})


# ----------------------------------------------------------------------------- issue 11: reliability

def _header_len(path: Path) -> int:
    return int.from_bytes(path.read_bytes()[:8], "little")


def test_every_checkpoint_of_a_300_step_header_size_sweep_loads_back(tmp_path, monkeypatch):
    """A safetensors file starts with its header length (8 bytes, little-endian). Lengths of 128
    mod 256 start with b"\\x80" (the pickle opcode) and 0x4B50 mod 65536 with b"PK" (zip): those
    files must still be read as safetensors. The sweep grows the metadata one byte per step
    across both cases, as a run with ``checkpoint_every=1`` grows its history."""
    monkeypatch.setattr(os, "fsync", lambda fd: None)  # durability is not under test: keep it fast
    model = nn.Linear(2, 2)
    probe = save_checkpoint(tmp_path / "probe.safetensors", model, epoch=0, meta={"pad": ""})
    start = 0x4B50 - 150 - _header_len(probe)  # the sweep crosses the "PK" length and two \x80 ones
    lengths = []
    for i in range(300):
        path = save_checkpoint(tmp_path / f"ck{i}.safetensors", model, epoch=i,
                               meta={"pad": "x" * (start + i), "history": {"train_loss": [0.5] * (i % 7)}})
        lengths.append(_header_len(path))
        ck = load_checkpoint(path, nn.Linear(2, 2))
        assert ck.epoch == i and len(ck.meta["pad"]) == start + i
    # the sweep is not vacuous: it contains the lengths that used to be misread as pickle / zip
    assert any(n % 256 == 0x80 for n in lengths)
    assert 0x4B50 in lengths
    assert (tmp_path / f"ck{lengths.index(0x4B50)}.safetensors").read_bytes()[:2] == b"PK"


def _trained_other(seed: int = 5):
    """A model + optimizer with non-trivial state, the target of refused loads."""
    return _trained_pair(seed)


def _opt_tensors(opt: torch.optim.Optimizer) -> dict:
    out = {}
    for idx, per in opt.state_dict()["state"].items():
        for key, val in per.items():
            out[(idx, key)] = val.detach().clone() if isinstance(val, torch.Tensor) else val
    return out


def _assert_opt_unchanged(opt, before: dict) -> None:
    from aeprobe.state import bits_equal

    now = _opt_tensors(opt)
    assert now.keys() == before.keys()
    for k, v in before.items():
        assert bits_equal(now[k], v) if isinstance(v, torch.Tensor) else now[k] == v, k


def _refusals(tmp_path):
    """(name, path, model, optimizer, kwargs, match) for loads that must be refused."""
    model, opt = _trained_pair(0)
    full = save_checkpoint(tmp_path / "full.safetensors", model, opt, epoch=3, meta={"config": {"lr": 1}})
    bare = save_checkpoint(tmp_path / "bare.safetensors", model, epoch=3)
    corrupt = tmp_path / "corrupt.safetensors"
    raw = bytearray(full.read_bytes())
    raw[-3] ^= 0xFF
    corrupt.write_bytes(bytes(raw))

    def deny(ck):
        raise ValueError(f"run configuration differs: {ck.meta['config']}")

    cases = []
    m, o = _trained_other()
    cases.append(("no optimizer state", bare, m, o, {}, "no optimizer state"))
    m, o = _trained_other()
    cases.append(("optimizer class", full, m, torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9), {}, "Adam"))
    m, _ = _trained_other()
    o = torch.optim.Adam(m.decoder.parameters(), lr=1e-2)  # another parameter-group structure
    m(torch.randn(3, 6)).sum().backward()
    o.step()
    cases.append(("optimizer structure", full, m, o, {}, "does not fit"))
    m, o = _trained_other()
    cases.append(("check refuses", full, m, o, {"check": deny}, "configuration differs"))
    m, o = _trained_other()
    cases.append(("corrupted", corrupt, m, o, {}, "corrupted"))
    m = TinyAE(6, 3)
    cases.append(("shape", full, m, torch.optim.Adam(m.parameters()), {}, "shape mismatch"))
    m = nn.Sequential(nn.Linear(6, 2))
    cases.append(("missing keys", bare, m, None, {}, "missing keys"))
    return cases


def test_refused_loads_leave_model_and_optimizer_bit_identical(tmp_path):
    from aeprobe.state import assert_unchanged, snapshot

    for name, path, model, opt, kwargs, match in _refusals(tmp_path):
        before = snapshot(model)
        opt_before = _opt_tensors(opt) if opt is not None else None
        with pytest.raises((CheckpointError, ValueError), match=match):
            load_checkpoint(path, model, opt, **kwargs)
        assert_unchanged(model, before)
        if opt is not None:
            _assert_opt_unchanged(opt, opt_before)


def test_check_runs_before_any_write_and_sees_the_checkpoint(tmp_path):
    model, opt = _trained_pair()
    path = save_checkpoint(tmp_path / "ck.safetensors", model, opt, epoch=4, meta={"tag": "a"})
    seen = []
    target = TinyAE()
    load_checkpoint(path, target, check=lambda ck: seen.append((ck.epoch, ck.meta["tag"])))
    assert seen == [(4, "a")] and _same_state(target.state_dict(), model.state_dict())


def _rewrite_metadata(path: Path, edit) -> None:
    """Re-save the file's tensors with ``edit(metadata_dict)`` applied to its safetensors metadata."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), "pt") as fh:
        meta = dict(fh.metadata())
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    save_file(tensors, str(path), metadata=edit(meta))


def test_checksum_covers_the_metadata(tmp_path):
    model, opt = _trained_pair()
    path = save_checkpoint(tmp_path / "ck.safetensors", model, opt, epoch=7,
                           meta={"history": {"train_loss": [0.5, 0.25]}})
    raw = path.read_bytes()
    for old, new in ((b'\\"epoch\\": 7', b'\\"epoch\\": 9'), (b"0.25", b"0.35")):
        assert raw.count(old) == 1, old  # the edit hits the JSON header, same length
        bad = tmp_path / "bad.safetensors"
        bad.write_bytes(raw.replace(old, new))
        with pytest.raises(CheckpointError, match="corrupted"):
            load_checkpoint(bad, TinyAE())


def test_checkpoint_without_checksum_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "ck.safetensors", TinyAE(), epoch=1)
    _rewrite_metadata(path, lambda meta: {k: v for k, v in meta.items() if "sha256" not in k})
    with pytest.raises(CheckpointError, match="no SHA-256"):
        load_checkpoint(path, TinyAE())


def test_foreign_files_have_no_checksum_and_say_so(tmp_path):
    from safetensors.torch import save_file

    from aeprobe.checkpoint import UnverifiedCheckpointWarning, read_state_dict

    model = TinyAE()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "w.safetensors"))
    other = TinyAE()
    with pytest.warns(UnverifiedCheckpointWarning, match="no checksum"):
        ck = load_checkpoint(tmp_path / "w.safetensors", other)
    assert not ck.verified and _same_state(other.state_dict(), model.state_dict())
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # reading others' weights is read_state_dict's purpose: no warning
        assert _same_state(read_state_dict(tmp_path / "w.safetensors"), model.state_dict())


def test_version_1_checkpoints_still_load_with_their_tensor_checksum(tmp_path):
    """Files written before the checksum covered the metadata: tensors verified, a warning for the rest."""
    import hashlib
    import json

    from safetensors.torch import save_file

    from aeprobe.checkpoint import UnverifiedCheckpointWarning

    model = TinyAE()
    tensors = {f"model.{k}": v.contiguous() for k, v in model.state_dict().items()}
    h = hashlib.sha256()  # the version-1 checksum: name, dtype, shape, bytes of each tensor, sorted
    for name in sorted(tensors):
        t = tensors[name]
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    header = {"format": "aeprobe-checkpoint", "version": 1, "epoch": 2, "meta": {"a": 1}, "sha256": h.hexdigest()}
    save_file(tensors, str(tmp_path / "v1.safetensors"), metadata={"aeprobe": json.dumps(header)})
    other = TinyAE()
    with pytest.warns(UnverifiedCheckpointWarning, match="version-1"):
        ck = load_checkpoint(tmp_path / "v1.safetensors", other)
    assert ck.epoch == 2 and ck.meta == {"a": 1} and _same_state(other.state_dict(), model.state_dict())
    tensors["model.decoder.2.bias"] = tensors["model.decoder.2.bias"] + 1.0
    save_file(tensors, str(tmp_path / "v1.safetensors"), metadata={"aeprobe": json.dumps(header)})
    with pytest.raises(CheckpointError, match="corrupted"):
        load_checkpoint(tmp_path / "v1.safetensors", TinyAE())


def test_read_checkpoint_gives_epoch_and_meta_without_a_model(tmp_path):
    from aeprobe.checkpoint import read_checkpoint

    model, opt = _trained_pair()
    path = save_checkpoint(tmp_path / "ck.safetensors", model, opt, epoch=5, meta={"history": {"l": [1.0]}},
                           rng_state={"perm": torch.Generator().manual_seed(1).get_state()})
    ck = read_checkpoint(path)
    assert ck.epoch == 5 and ck.meta == {"history": {"l": [1.0]}} and set(ck.rng_state) == {"perm"} and ck.verified


def test_checkpoint_files_get_normal_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = save_checkpoint(tmp_path / "ck.safetensors", TinyAE(), epoch=0)
    finally:
        os.umask(old)
    assert (path.stat().st_mode & 0o777) == 0o644
