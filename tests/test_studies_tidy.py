"""Tidiness the studies rely on, checked on the source (ast, no imports of the checked files): no module
of aeprobe/, benchmarks/ or experiments/ reaches another module's private names -- neither by
``from m import _name`` (tests/test_cli.py checks that for aeprobe modules) nor through a module
object (``module._name``), nor from a sibling script (benchmarks' ``from train import ...``)."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHECKED = ("aeprobe", "benchmarks", "experiments")


def _is_module(name: str) -> bool:
    """Whether dotted ``name`` is a module or package of this repository (found on disk, nothing imported)."""
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _module_names(tree: ast.AST) -> set[str]:
    """Names that a file binds to aeprobe modules (``import aeprobe.x as m``, ``from aeprobe import x``)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "aeprobe":
                    out.add(a.asname or "aeprobe")
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "aeprobe":
            out.update(a.asname or a.name for a in node.names if _is_module(f"{node.module}.{a.name}"))
    return out


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_no_module_reaches_another_modules_private_names():
    offenders = []
    for base in CHECKED:
        for path in sorted((ROOT / base).rglob("*.py")):
            tree = ast.parse(path.read_text())
            where = path.relative_to(ROOT)
            modules = _module_names(tree)
            siblings = {p.stem for p in path.parent.glob("*.py")} - {path.stem}
            for node in ast.walk(tree):
                if isinstance(node, ast.Attribute) and _private(node.attr):
                    root = node.value
                    while isinstance(root, ast.Attribute):
                        root = root.value
                    if isinstance(root, ast.Name) and root.id in modules:
                        offenders.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in siblings:
                    bad = [a.name for a in node.names if _private(a.name)]
                    if bad:
                        offenders.append(f"{where}:{node.lineno}: from {node.module} import {', '.join(bad)}")
    assert not offenders, offenders


def test_the_check_finds_what_it_looks_for(tmp_path):
    """The ast patterns above do match the forbidden forms (so the test above can fail)."""
    src = "import aeprobe.sweeps as sw\nfrom aeprobe import studies\nsw._call(1)\nstudies.parallel._x\n"
    tree = ast.parse(src)
    mods = _module_names(tree)
    assert mods == {"sw", "studies"}
    hits = [ast.unparse(n) for n in ast.walk(tree) if isinstance(n, ast.Attribute) and _private(n.attr)]
    assert sorted(hits) == ["studies.parallel._x", "sw._call"]
