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
