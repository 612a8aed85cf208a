"""The claims-and-report layer (aeprobe.report): verdicts computed from the numbers, one writer of
report.md / report.html / results.json (atomic, self-contained HTML), and the run record."""
from __future__ import annotations

import json
import math
import os
import struct
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aeprobe import report as R
from aeprobe.report import Above, AtLeast, AtMost, Below, Claim, Report, Rule, RunRecord, Verdict, write_outputs

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@given(m=finite, b=finite)
def test_bound_verdicts_are_the_comparisons(m, b):
    assert AtLeast(b).judge(m).met == (m >= b)
    assert AtMost(b).judge(m).met == (m <= b)
    assert Above(b).judge(m).met == (m > b)
    assert Below(b).judge(m).met == (m < b)
    v = AtLeast(b).judge(m)
    assert v.label == ("met" if m >= b else "not met")


@given(b=finite, bad=st.sampled_from([float("nan"), float("inf"), None, "0.5", True]))
def test_a_missing_or_non_numeric_measurement_is_not_testable(b, bad):
    for target in (AtLeast(b), AtMost(b), Above(b), Below(b)):
        v = target.judge(bad)
        assert v.met is None and v.label == "not testable"


@given(m=finite, b=finite)
def test_claim_verdict_and_dict_follow_the_measurement(m, b):
    c = Claim("x", "x is at least b", m, AtLeast(b))
    d = c.to_dict()
    assert d["met"] == (m >= b) and d["verdict"] == c.verdict.label
    assert d["target"] == f"≥ {R.fmt(b)}" and d["measured"] == m
    assert json.loads(json.dumps(d)) == d  # JSON-able as is


def test_failing_claim_is_reported_as_not_met_in_markdown_and_html(tmp_path):
    ok = Claim("ok", "correlation with Airy", 0.995, AtLeast(0.99))
    bad = Claim("bad", "homogeneity error", 3e-3, AtMost(1e-5), shown="3e-03")
    rep = Report("claims").claims([ok, bad])
    md = rep.markdown()
    assert "| correlation with Airy | ≥ 0.99 | 0.995 | met |" in md
    assert "| homogeneity error | ≤ 1e-05 | 3e-03 | **not met** |" in md
    html = rep.html(tmp_path)
    assert '<span class="v notmet">not met</span>' in html and '<span class="v met">met</span>' in html


def test_reported_claims_and_rules():
    assert Claim("r", "just a number", 1.5).verdict == Verdict("reported", None)
    rule = Rule("the list is increasing", lambda xs: Verdict.of(all(a < b for a, b in zip(xs, xs[1:]))))
    assert Claim("i", "increasing", [1, 2, 3], rule).verdict.met is True
    assert Claim("i", "increasing", [1, 3, 2], rule).verdict.met is False
    assert Claim("i", "increasing", [1, 3, 2], rule).to_dict()["target"] == "the list is increasing"


@pytest.mark.parametrize("label, met", [("supported", True), ("agrees (within 2 sd of the seed noise)", True),
                                        ("not supported (no pair significant)", False), ("contradicted (1/3)", False),
                                        ("disagrees", False), ("partly supported (1/3 pairs)", None),
                                        ("not testable", None), ("measured: mostly in the encoder", None)])
def test_worded_verdicts(label, met):
    assert Verdict.worded(label) == Verdict(label, met)


def _png(path: Path, w: int = 3, h: int = 2) -> Path:
    """A tiny valid grey PNG (no plotting library needed)."""
    raw = b"".join(b"\x00" + bytes([40 * (i + j) % 256 for i in range(w)]) for j in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return path


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.refs, self.tags = [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        for k in ("href", "src", "data", "action", "poster"):
            if k in a and tag != "img":
                self.refs.append(a[k])


def _sample_report(out: Path) -> Report:
    _png(out / "fig_a.png")
    _png(out / "fig_b.png", 4, 4)
    rep = Report("A *study* with `code`")
    rep.heading("Targets").claims([Claim("c", "x ≥ 1", 2.0, AtLeast(1.0))])
    rep.heading("Figures").figure("fig_a.png", "First <figure>", "reading with **bold** & <b>raw</b> html")
    rep.figure("fig_b.png", "Second figure", None)
    rep.heading("Numbers").table(["a", "b"], [[1.23456, None], [float("nan"), "x|y"]]).bullets(["one", "two"])
    return rep


def test_html_is_self_contained(tmp_path):
    rep = _sample_report(tmp_path)
    write_outputs(tmp_path, rep, {"x": 1})
    text = (tmp_path / "report.html").read_text()
    p = _Links()
    p.feed(text)
    assert len(p.imgs) == 2 and all(s.startswith("data:image/png;base64,") for s in p.imgs)
    assert all(r.startswith("#") for r in p.refs), p.refs  # only in-page anchors
    assert "script" not in p.tags and "link" not in p.tags and "iframe" not in p.tags
    assert "http://" not in text and "https://" not in text
    assert "<b>raw</b>" not in text and "&lt;b&gt;raw&lt;/b&gt;" in text  # text is escaped ...
    assert "<strong>bold</strong>" in text and "<code>code</code>" in text  # ... markdown inline kept
    # every heading the table of contents points to exists
    for ref in p.refs:
        assert f'id="{ref[1:]}"' in text


def test_missing_figure_is_said_not_linked(tmp_path):
    rep = Report("r").figure("nowhere.png", "Lost", "gone")
    html = rep.html(tmp_path)
    assert "<img" not in html and "nowhere.png is missing" in html


def test_markdown_references_figures_and_escapes_table_cells(tmp_path):
    md = _sample_report(tmp_path).markdown()
    assert "![First <figure>](fig_a.png)" in md and "Reading: reading with **bold**" in md
    assert "| 1.235 | n/a |" in md and "| n/a | x\\|y |" in md


def test_writer_writes_the_three_files_and_json_round_trips(tmp_path):
    rep = _sample_report(tmp_path)
    paths = write_outputs(tmp_path / "out", rep, {"a": float("nan"), "b": (1, 2), "c": Path("p")})
    assert set(paths) == {"results", "markdown", "html"}
    assert json.loads((tmp_path / "out" / "results.json").read_text()) == {"a": None, "b": [1, 2], "c": "p"}
    assert (tmp_path / "out" / "report.md").read_text() == rep.markdown()


def test_writer_is_atomic_old_files_survive_a_failed_write(tmp_path, monkeypatch):
    rep = _sample_report(tmp_path)
    write_outputs(tmp_path, rep, {"v": 1})
    before = {n: (tmp_path / n).read_bytes() for n in ("results.json", "report.md", "report.html")}

    def broken(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        write_outputs(tmp_path, Report("new"), {"v": 2})
    monkeypatch.undo()
    assert {n: (tmp_path / n).read_bytes() for n in before} == before  # nothing half-written
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no temp file left


def test_run_record_notes_threads_load_and_wall_time():
    import torch

    rec = RunRecord.start(command=["aeprobe", "run", "x"], workers=2)
    d = rec.finish(mode="smoke")
    assert d["threads"] == torch.get_num_threads() and d["workers"] == 2 and d["mode"] == "smoke"
    assert d["wall_seconds"] >= 0 and d["command"] == ["aeprobe", "run", "x"]
    load = R.machine_load()
    assert load is None or (len(load) == 3 and all(v >= 0 for v in load))
    assert "torch thread" in R.run_sentence(d) and "load average" in R.run_sentence(d)


def test_machine_load_is_none_without_getloadavg(monkeypatch):
    monkeypatch.delattr(os, "getloadavg", raising=False)
    assert R.machine_load() is None
    assert "n/a" in R.run_sentence(RunRecord.start().finish())


@given(v=st.one_of(finite, st.none(), st.integers(-10**6, 10**6)))
def test_fmt_never_fails_and_marks_missing(v):
    s = R.fmt(v)
    assert isinstance(s, str) and s
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        assert s == "n/a"
