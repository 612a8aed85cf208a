"""The ``aeprobe`` command (aeprobe.cli, ``python -m aeprobe``) and the thin experiment scripts."""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aeprobe import cli
from aeprobe.studies import STUDIES

ROOT = Path(__file__).resolve().parents[1]


def _run_module(*args: str, cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")  # this checkout's aeprobe
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_help_lists_the_four_studies(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for name in ("disks", "position", "bottleneck", "zoo"):
        assert f"  {name} " in text
    assert "run" in text and "aeprobe run disks --quick --out runs/disks" in text


def test_each_study_takes_the_shared_flags_and_its_own(capsys):
    for name in STUDIES:
        with pytest.raises(SystemExit):
            cli.main(["run", name, "--help"])
        text = capsys.readouterr().out
        for flag in ("--quick", "--full", "--smoke", "--out", "--device", "--threads", "--no-progress", "--seed"):
            assert flag in text, (name, flag)
    with pytest.raises(SystemExit):
        cli.main(["run", "bottleneck", "--help"])
    assert "--data" in capsys.readouterr().out


def test_unknown_study_and_conflicting_modes_are_usage_errors(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["run", "nope"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        cli.main(["run", "disks", "--quick", "--smoke"])
    assert e.value.code == 2


def test_bad_data_spec_is_one_error_line_not_a_traceback(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    assert cli.main(["run", "bottleneck", "--smoke", "--out", str(tmp_path), "--data", "nope", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err)
    assert err[-1].startswith("aeprobe: error: unknown --data 'nope'")  # after the failed stage's line
    assert [e for e in err if not e.startswith("[bottleneck]")] == err[-1:]


def test_thread_policy(monkeypatch):
    monkeypatch.delenv(cli.THREADS_ENV, raising=False)
    assert cli.resolve_threads(None) is None  # torch's own default
    assert cli.resolve_threads(3) == 3
    monkeypatch.setenv(cli.THREADS_ENV, "2")
    assert cli.resolve_threads(None) == 2 and cli.resolve_threads(1) == 1  # the flag wins
    for bad in ("zero", "0"):
        monkeypatch.setenv(cli.THREADS_ENV, bad)
        with pytest.raises(cli.UsageError, match=cli.THREADS_ENV):
            cli.resolve_threads(None)
    with pytest.raises(cli.UsageError, match="--threads"):
        cli.resolve_threads(0)


def test_thread_count_restores_torch_threads_also_on_error():
    import torch

    before = torch.get_num_threads()
    with pytest.raises(RuntimeError):
        with cli.thread_count(before + 1) as n:
            assert n == before + 1 == torch.get_num_threads()
            raise RuntimeError
    assert torch.get_num_threads() == before
    with cli.thread_count(None) as n:
        assert n == before


def test_python_m_aeprobe_run_disks_smoke(tmp_path):
    """The documented command, in a fresh interpreter; ``--threads 2`` makes the eleven trainings
    run in two single-thread processes, which must give the same trainings as one process."""
    out = tmp_path / "disks"
    r = _run_module("-m", "aeprobe", "run", "disks", "--smoke", "--out", str(out), "--threads", "2")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Airy correlation" in r.stdout and "homogeneity error" in r.stdout  # the headline figures
    assert "stage 2/2 probes and figures: done" in r.stderr  # not a TTY: one line per stage
    res = json.loads((out / "results.json").read_text())
    assert res["run"]["threads"] == 2 and res["workers"] == 2 and res["run"]["workers"] == 2
    assert res["run"]["command"][:3] == ["aeprobe", "run", "disks"]
    for f in ("report.md", "report.html"):
        assert (out / f).stat().st_size > 1000
    # same trainings as in one process (tests run torch with one thread, like each worker)
    from aeprobe.studies import disks

    one = disks.run(disks.Config.for_mode("smoke"), tmp_path / "one")
    assert one["workers"] == 1
    assert _without_seconds(res["training"]) == _without_seconds(one["training"])  # loss curves: bit for bit
    assert [s["final_data_loss"] for v in res["hole"]["regularizers"].values() for s in v["seeds"]] == \
        [s["final_data_loss"] for v in one["hole"]["regularizers"].values() for s in v["seeds"]]


def _without_seconds(d):
    if isinstance(d, dict):
        return {k: _without_seconds(v) for k, v in d.items() if "seconds" not in k and k != "images_per_second"}
    if isinstance(d, list):
        return [_without_seconds(v) for v in d]
    return d


def test_experiment_scripts_are_thin_entry_points():
    for path in sorted((ROOT / "experiments").glob("*.py")):
        text = path.read_text()
        assert len(text.splitlines()) <= 200, path.name
        assert "sys.path" not in text, path.name


def test_experiment_script_runs_the_cli(tmp_path):
    r = _run_module(str(ROOT / "experiments" / "position.py"), "--smoke", "--out", str(tmp_path), "--threads", "1")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "filter cosine per layer" in r.stdout and (tmp_path / "results.json").exists()


MINE = ["aeprobe/studies", "aeprobe/report.py", "aeprobe/progress.py", "aeprobe/cli.py", "aeprobe/flags.py",
        "aeprobe/__main__.py",
        "aeprobe/plots/disks.py", "aeprobe/plots/position.py", "aeprobe/plots/bottleneck.py", "aeprobe/plots/zoo.py",
        "aeprobe/models/zoo.py", "aeprobe/schedules.py", "experiments", "benchmarks/train.py", "benchmarks/demo.py"]


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("aeprobe"):
            yield node


def test_no_module_imports_another_modules_private_names():
    """Nowhere ``from aeprobe... import _name``; and the studies, report, progress, CLI, their plots and
    scripts import no private module either (``aeprobe.probes._batch``, ``aeprobe._modules``...)."""
    offenders = []
    for base in ("aeprobe", "experiments", "benchmarks"):
        for path in (ROOT / base).rglob("*.py"):
            for node in _imports(path):
                if any(a.name.startswith("_") and a.name != "__version__" for a in node.names):
                    offenders.append(f"{path.relative_to(ROOT)}: from {node.module} import ...")
    for item in MINE:
        for path in ([ROOT / item] if item.endswith(".py") else (ROOT / item).rglob("*.py")):
            for node in _imports(path):
                if any(part.startswith("_") for part in node.module.split(".")[1:]) and node.module != "aeprobe.models._base":
                    offenders.append(f"{path.relative_to(ROOT)}: from {node.module} import ...")
    assert not offenders, offenders
