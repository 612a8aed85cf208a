"""Load an ``experiments/<name>.py`` script as a module and run its smoke mode (shared by the
experiment tests)."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_experiment(name: str):
    """The module ``experiments/<name>.py`` (registered in ``sys.modules``: dataclasses need it)."""
    spec = importlib.util.spec_from_file_location(f"experiments_{name}", ROOT / "experiments" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def run_smoke(name: str, out: Path) -> tuple[Path, dict]:
    """Run ``experiments/<name>.py --smoke --out OUT``; return ``(out, results.json contents)``."""
    load_experiment(name).main(["--smoke", "--out", str(out), "--no-progress"])
    return out, json.loads((out / "results.json").read_text())
