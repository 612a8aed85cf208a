"""``aeprobe inspect``: the command line on a user's own models (factories in ``tests/inspect_models.py``).

The must-show runs as a user would (a fresh interpreter, default ``--quick``); the other runs call
:func:`aeprobe.cli.main` in-process with ``--smoke``. Every error a user can make here (a corrupt
weights file, a wrong factory, weights of another shape, a pickle payload, bad JSON...) is one
``aeprobe: error: ...`` line with exit code 2, never a traceback, and a pickle payload never runs.
"""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import inspect_models as im
from aeprobe import cli

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


def _smooth(n: int, size: int, seed: int) -> np.ndarray:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 1, size // 2, size // 2, generator=g)
    return torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False).numpy()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("user")
    save_file(im.conv_ae().state_dict(), str(d / "conv.safetensors"))
    save_file(im.wide_conv_ae().state_dict(), str(d / "wide.safetensors"))
    save_file(im.tuple_vae().state_dict(), str(d / "vae.safetensors"))
    torch.save(im.seq_ae().state_dict(), d / "seq.pt")  # a torch.save state_dict: read with weights_only=True
    x16, x8 = _smooth(112, 16, 0), _smooth(112, 8, 1)
    np.save(d / "train16.npy", x16[:64])
    np.save(d / "test16.npy", x16[64:])
    np.save(d / "train8.npy", x8[:64])
    np.save(d / "test8.npy", x8[64:])
    np.save(d / "labels8.npy", (x8[:64].mean((1, 2, 3)) > x8.mean()).astype(np.int64))
    np.save(d / "labels7.npy", np.zeros(7, dtype=np.int64))
    np.save(d / "rgb16.npy", np.repeat(x16[:8], 3, axis=1))
    np.save(d / "objects.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    return d


def _main(argv, capsys):
    code = cli.main([str(a) for a in argv])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_must_show_conv_ae_from_the_command_line(files, tmp_path):
    """--model, --weights (safetensors), --data npy:, --heldout npy:, --out; the default mode (quick)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(ROOT), env.get("PYTHONPATH", "")])
    env.pop("AEPROBE_THREADS", None)
    out = tmp_path / "conv"
    r = subprocess.run([sys.executable, "-m", "aeprobe", "inspect", "--model", "inspect_models:conv_ae",
                        "--weights", files / "conv.safetensors", "--data", f"npy:{files / 'train16.npy'}",
                        "--heldout", f"npy:{files / 'test16.npy'}", "--out", out, "--threads", "1", "--no-progress"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (out / "report.md").is_file() and (out / "report.html").is_file()
    res = json.loads((out / "results.json").read_text())
    for key in ("architecture", "code", "identity", "overfitting", "ablation", "homogeneity", "checkerboard",
                "attribution", "interpolation"):
        assert res[key]["status"] == "done", (key, res[key])
    assert res["probe"]["status"] == "not applicable" and "--labels" in res["probe"]["why"]
    assert res["mode"] == "quick" and res["run"]["threads"] == 1
    assert res["checkerboard"]["conv_layers"] == ["decoder.0", "decoder.2"]
    assert res["data"]["weights"].endswith("(8 tensors)")
    assert f"wrote {out}/report.md" in r.stdout
    stages = [ln for ln in r.stderr.splitlines() if ln.startswith("[inspect] stage")]  # one display, ten stages
    assert len(stages) == 10 and stages[-1].startswith("[inspect] stage 10/10 probe")
    md = (out / "report.md").read_text()
    assert "Does not apply: the linear probe needs labels: pass --labels SPEC" in md


def test_a_sequential_ae_read_with_view(files, tmp_path, capsys):
    base = ["inspect", "--model", "inspect_models:seq_ae", "--weights", files / "seq.pt",
            "--data", f"npy:{files / 'train8.npy'}", "--heldout", f"npy:{files / 'test8.npy'}", "--smoke",
            "--no-progress"]
    code, out, err = _main(base + ["--out", tmp_path / "view", "--view",
                                   '{"encoder": ["0", "1", "2"], "decoder": ["3", "4"]}'], capsys)
    assert code == 0, err
    res = json.loads((tmp_path / "view" / "results.json").read_text())
    assert all(res[k]["status"] == "done" for k in ("code", "overfitting", "homogeneity", "ablation", "interpolation"))
    assert res["homogeneity"]["conditions_met"] is True and res["claims"][0]["met"] is True
    assert res["model"]["view"][1].split() == ["encode", "encoder=0", "->", "1", "->", "2", "->", "tensor"]
    # without --view the sections that need encode say how to give it
    code, out, err = _main(base + ["--out", tmp_path / "plain"], capsys)
    assert code == 0, err
    res = json.loads((tmp_path / "plain" / "results.json").read_text())
    assert res["code"]["status"] == "not applicable"
    assert "pass --view '{\"encoder\": [NAMES]}'" in res["code"]["why"]


def test_a_tuple_vae_with_labels(files, tmp_path, capsys):
    code, out, err = _main(["inspect", "--model", "inspect_models:tuple_vae", "--weights", files / "vae.safetensors",
                            "--data", f"npy:{files / 'train8.npy'}", "--labels", f"npy:{files / 'labels8.npy'}",
                            "--out", tmp_path, "--smoke", "--no-progress"], capsys)
    assert code == 0, err
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["probe"]["status"] == "done" and res["probe"]["n"] == 64
    assert res["overfitting"]["status"] == "not applicable" and "--heldout" in res["overfitting"]["why"]
    assert "probe         done" in out


def _errors(files):
    bad = files / "bad"
    bad.mkdir(exist_ok=True)
    (bad / "random.safetensors").write_bytes(os.urandom(300))
    raw = (files / "conv.safetensors").read_bytes()
    (bad / "truncated.safetensors").write_bytes(raw[: len(raw) // 2])
    data = ["--data", f"npy:{files / 'train16.npy'}"]
    conv = ["--model", "inspect_models:conv_ae"]
    return {
        "random bytes": (conv + ["--weights", bad / "random.safetensors"] + data,
                         "neither a safetensors file"),
        "truncated": (conv + ["--weights", bad / "truncated.safetensors"] + data, "truncated or corrupted"),
        "missing file": (conv + ["--weights", bad / "nope.safetensors"] + data, "does not exist"),
        "wrong factory": (["--model", "inspect_models:conv_aee", "--weights", files / "conv.safetensors"] + data,
                          "module 'inspect_models' has no factory 'conv_aee' (did you mean 'conv_ae'? it defines: "),
        "wrong module": (["--model", "inspect_modelz:conv_ae"] + data, "no module named 'inspect_modelz'"),
        "not MODULE:FACTORY": (["--model", "inspect_models"] + data, "--model must be MODULE:FACTORY"),
        "not a module": (["--model", "inspect_models:not_a_model"] + data, "returned str, not a torch.nn.Module"),
        "mismatched shapes": (conv + ["--weights", files / "wide.safetensors"] + data,
                              "does not fit the model: shapes differ: encoder.0.weight (12, 1, 3, 3) in the file, "
                              "(8, 1, 3, 3) in the model"),
        "other model's weights": (conv + ["--weights", files / "vae.safetensors"] + data,
                                  "8 missing (encoder.0.weight, encoder.0.bias"),
        "data the model cannot read": (conv + ["--data", f"npy:{files / 'rgb16.npy'}"],
                                       "ConvAE cannot read the images of shape (3, 16, 16) (RuntimeError:"),
        "object array": (conv + ["--data", f"npy:{files / 'objects.npy'}"], "pickles are never loaded"),
        "unknown source": (conv + ["--data", "mnist"], "unknown --data 'mnist'"),
        "bad JSON": (conv + data + ["--view", "{encoder: 1}"], "--view is not valid JSON"),
        "unknown view key": (conv + data + ["--view", '{"encoders": "x"}'], "unknown key(s) ['encoders']"),
        "view of a missing module": (conv + data + ["--view", '{"encoder": "enc"}'], "--view:"),
        "labels of a source without labels": (conv + data + ["--labels", "data"], "the data source has no labels"),
        "labels of another length": (conv + data + ["--labels", f"npy:{files / 'labels7.npy'}"],
                                     "one integer label per image (64), got (7,)"),
    }


ERROR_CASES = ["random bytes", "truncated", "missing file", "wrong factory", "wrong module", "not MODULE:FACTORY",
               "not a module", "mismatched shapes", "other model's weights", "data the model cannot read",
               "object array", "unknown source", "bad JSON", "unknown view key", "view of a missing module",
               "labels of a source without labels", "labels of another length"]


@pytest.mark.parametrize("case", ERROR_CASES)
def test_user_errors_are_one_line(files, tmp_path, capsys, monkeypatch, case):
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    argv, expected = _errors(files)[case]
    code, out, err = _main(["inspect", *argv, "--out", tmp_path, "--smoke", "--no-progress"], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("aeprobe: error: ") and expected in lines[0], lines[0]
    assert "Traceback" not in err and not (tmp_path / "results.json").exists()


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickle_payload_given_as_weights_is_refused_and_never_runs(files, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    marker = tmp_path / "pwned"
    torch.save({"encoder.0.weight": _Payload(marker)}, tmp_path / "evil.pt")          # zip (torch.save) payload
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"w": _Payload(marker)}))       # a bare pickle
    for name in ("evil.pt", "evil.pkl"):
        code, out, err = _main(["inspect", "--model", "inspect_models:conv_ae", "--weights", tmp_path / name,
                                "--data", f"npy:{files / 'train16.npy'}", "--out", tmp_path / "o", "--smoke"], capsys)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("aeprobe: error: --weights"), err
        assert "refusing to load" in lines[0] and "weights_only=True" in lines[0], lines[0]
    assert not marker.exists()
