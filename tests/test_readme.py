"""Every python block of the README runs as written, in order, in one fresh interpreter.

The blocks are concatenated (each preceded by a marker) and run by a new ``python`` process in an
empty temporary directory, as a new user would paste them. A failing block is named by its first
line and its line number in README.md.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(text: str) -> list[tuple[int, str]]:
    """``(line number, code)`` of every ```python block, in order."""
    out = []
    for m in re.finditer(r"^```python\n(.*?)^```", text, flags=re.S | re.M):
        out.append((text.count("\n", 0, m.start()) + 2, m.group(1)))
    return out


def test_readme_has_python_blocks_and_no_private_names():
    blocks = python_blocks(README.read_text())
    assert len(blocks) >= 10
    for line, code in blocks:
        assert not re.search(r"aeprobe(\.\w+)*\._", code), f"README block at line {line} uses a private name"


def test_python_blocks_are_found_with_their_line_numbers():
    text = "intro\n```python\nx = 1\n```\ntext\n```bash\nls\n```\n```python\ny = 2\n```\n"
    assert python_blocks(text) == [(3, "x = 1\n"), (10, "y = 2\n")]


def test_every_readme_python_block_runs_in_one_fresh_interpreter(tmp_path):
    blocks = python_blocks(README.read_text())
    parts = []
    for line, code in blocks:
        parts.append(f"print('### README block at line {line}', flush=True)\n{code}")
    script = tmp_path / "readme_blocks.py"
    script.write_text("\n".join(parts))
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=900)
    if proc.returncode != 0:
        started = re.findall(r"### README block at line (\d+)", proc.stdout)
        where = f"README.md block at line {started[-1]}" if started else "before the first block"
        raise AssertionError(f"{where} failed:\n{proc.stderr[-4000:]}")
