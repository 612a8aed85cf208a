"""Claims and reports, and the one writer of ``report.md``, ``report.html`` and ``results.json``.

A :class:`Claim` is a statement, the measured value, a target (or comparison) and a verdict
that is *computed* from the measured value by the target -- never written by hand::

    from aeprobe.report import AtLeast, Claim, Report, write_outputs

    c = Claim("airy", "bias-free profile vs Airy correlation", measured=0.9984, target=AtLeast(0.99))
    c.verdict.label, c.verdict.met                  # ('met', True)
    rep = Report("Disks")
    rep.claims([c])
    rep.figure("profile_vs_airy.png", "Learned profile vs Airy", "correlation 0.9984")
    write_outputs("runs/demo", rep, {"airy_correlation": 0.9984})   # report.md, report.html, results.json

:class:`Report` is a list of blocks (headings, paragraphs, bullets, tables, claims tables,
figures with a one-line reading) rendered twice: as Markdown that references the PNGs next to
it, and as one self-contained HTML file with every image embedded as a ``data:`` URI and no
link off the file, so it reads the same offline. :class:`RunRecord` notes when and how a run
ran (date, torch threads, worker processes, machine load at start and end, wall time);
:func:`machine_load` is the one place aeprobe reads the load.
"""
from __future__ import annotations

import base64
import datetime as _dt
import html
import math
import os
import platform
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from aeprobe.device import load_average
from aeprobe.reporting import atomic_write_text, to_jsonable, write_json

__all__ = [
    "Verdict", "Target", "AtLeast", "AtMost", "Above", "Below", "Rule", "Claim",
    "Report", "RunRecord", "machine_load", "write_outputs", "fmt", "wall_time_claims",
]


# ----------------------------------------------------------------------------- numbers


def fmt(v: Any, spec: str = ".4g") -> str:
    """``v`` formatted for a report: floats with ``spec``, ``None``/NaN as ``n/a``, others as ``str``."""
    if v is None:
        return "n/a"
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (float, int, np.floating, np.integer)):
        f = float(v)
        if not math.isfinite(f):
            return "n/a"
        return format(int(v), "d") if isinstance(v, (int, np.integer)) and spec == ".4g" else format(f, spec)
    return str(v)


def _finite_number(v: Any) -> float | None:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


# ----------------------------------------------------------------------------- verdicts and targets


@dataclass(frozen=True)
class Verdict:
    """The outcome of judging a measurement: ``label`` as printed, ``met`` True / False / None
    (None: reported only, or not testable)."""

    label: str
    met: bool | None

    @classmethod
    def of(cls, ok: bool) -> "Verdict":
        return cls("met", True) if ok else cls("not met", False)

    @classmethod
    def worded(cls, label: str) -> "Verdict":
        """A verdict whose ``met`` follows the first words of ``label``: *met*, *supported*, *agrees*
        -> True; *not met*, *not supported*, *contradicted*, *disagrees* -> False; anything else
        (*partly supported*, *inconclusive*, *not testable*, *measured: ...*) -> None."""
        head = label.split(" (")[0].split(",")[0].split(";")[0].strip()
        if head in _MET_WORDS:
            return cls(label, True)
        if head in _NOT_MET_WORDS:
            return cls(label, False)
        return cls(label, None)


_MET_WORDS = ("met", "supported", "agrees")
_NOT_MET_WORDS = ("not met", "not supported", "contradicted", "disagrees")


NOT_TESTABLE = Verdict("not testable", None)
REPORTED = Verdict("reported", None)


class Target:
    """What a measurement is compared with. Subclasses give :meth:`describe` and :meth:`judge`."""

    def describe(self) -> str:
        raise NotImplementedError

    def judge(self, measured: Any) -> Verdict:
        raise NotImplementedError

    def __str__(self) -> str:
        return self.describe()


@dataclass(frozen=True)
class _Bound(Target):
    bound: float
    what: str | None = None  # names the bound when it is itself a measurement ("radius R²")
    spec: str = ".4g"
    unit: str = ""

    _sign = ""

    def describe(self) -> str:
        b = fmt(self.bound, self.spec) + (f" {self.unit}" if self.unit else "")
        return f"{self._sign} {self.what} ({b})" if self.what else f"{self._sign} {b}"

    def _ok(self, m: float, b: float) -> bool:
        raise NotImplementedError

    def judge(self, measured: Any) -> Verdict:
        m, b = _finite_number(measured), _finite_number(self.bound)
        if m is None or b is None:
            return NOT_TESTABLE
        return Verdict.of(self._ok(m, b))


@dataclass(frozen=True)
class AtLeast(_Bound):
    """``measured >= bound``."""

    _sign = "≥"

    def _ok(self, m, b):
        return m >= b


@dataclass(frozen=True)
class AtMost(_Bound):
    """``measured <= bound``."""

    _sign = "≤"

    def _ok(self, m, b):
        return m <= b


@dataclass(frozen=True)
class Above(_Bound):
    """``measured > bound`` (strict); ``what`` names a bound that is another measurement."""

    _sign = ">"

    def _ok(self, m, b):
        return m > b


@dataclass(frozen=True)
class Below(_Bound):
    """``measured < bound`` (strict)."""

    _sign = "<"

    def _ok(self, m, b):
        return m < b


@dataclass(frozen=True)
class Rule(Target):
    """A verdict rule that is a function of the measurement (e.g. rank-sum tests between levels:
    supported / partly supported / contradicted). ``judge_fn(measured) -> Verdict``."""

    text: str
    judge_fn: Callable[[Any], Verdict]

    def describe(self) -> str:
        return self.text

    def judge(self, measured: Any) -> Verdict:
        return self.judge_fn(measured)


@dataclass(frozen=True)
class Claim:
    """A statement checked against a measurement.

    ``measured`` is what ``target`` judges (a number for the bounds; any structure for a
    :class:`Rule`); ``shown`` is how the measurement is written in a table (default: the number
    formatted); ``evidence`` adds context. Without a target the claim is only reported.
    """

    id: str
    statement: str
    measured: Any
    target: Target | None = None
    shown: str | None = None
    evidence: str = ""

    @property
    def verdict(self) -> Verdict:
        if self.target is None:
            return REPORTED
        return self.target.judge(self.measured)

    @property
    def measured_text(self) -> str:
        return self.shown if self.shown is not None else fmt(self.measured)

    def to_dict(self) -> dict[str, Any]:
        v = self.verdict
        return dict(id=self.id, statement=self.statement, target=None if self.target is None else self.target.describe(),
                    measured=to_jsonable(self.measured), shown=self.measured_text, verdict=v.label, met=v.met,
                    evidence=self.evidence)


def wall_time_claims(results: dict[str, Any], goal_seconds: float) -> list[Claim]:
    """The ``wall_time`` claim of a quick run (its ``run`` record's wall seconds against the goal on an
    idle 2-core machine), or none for other modes and runs without a record."""
    run = results.get("run")
    if results.get("mode") != "quick" or not run:
        return []
    return [Claim("wall_time", "quick run wall time (goal on an idle 2-core machine)", run["wall_seconds"],
                  AtMost(goal_seconds, spec=".0f", unit="s"), shown=f"{run['wall_seconds']:.0f} s")]


# ----------------------------------------------------------------------------- the run


def machine_load() -> list[float] | None:
    """1-, 5- and 15-minute load averages rounded for a report (:func:`aeprobe.device.load_average`),
    or None where the platform cannot tell."""
    load = load_average()
    return None if load is None else [round(v, 2) for v in load]


@dataclass
class RunRecord:
    """When and how a run ran: start date, torch threads, worker processes, machine load at start
    and end, wall time. ``rec = RunRecord.start(); ...; results["run"] = rec.finish()``."""

    started: str
    threads: int
    load_start: list[float] | None
    command: list[str] = field(default_factory=list)
    workers: int = 1
    cpu_count: int | None = None
    platform: str = ""
    torch: str = ""
    _t0: float = 0.0

    @classmethod
    def start(cls, *, command: Sequence[str] = (), workers: int = 1) -> "RunRecord":
        import torch

        return cls(started=_dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                   threads=torch.get_num_threads(), load_start=machine_load(), command=list(command),
                   workers=int(workers), cpu_count=os.cpu_count(),
                   platform=f"{platform.system()} {platform.machine()}, Python {platform.python_version()}",
                   torch=torch.__version__, _t0=time.perf_counter())

    def finish(self, **extra: Any) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if not k.startswith("_")}
        d.update(wall_seconds=time.perf_counter() - self._t0, load_end=machine_load(), **extra)
        return d


def run_sentence(run: dict[str, Any]) -> str:
    """One line on a run record: date, threads, workers, load, wall time."""
    load = lambda v: "n/a" if v is None else " / ".join(f"{x:.2f}" for x in v)  # noqa: E731
    workers = run.get("workers", 1)
    par = f", independent trainings in {workers} processes of 1 thread" if workers and workers > 1 else ""
    stages = run.get("stage_seconds") or {}
    st = (" (" + ", ".join(f"{k} {v:.0f} s" for k, v in stages.items()) + ")") if stages else ""
    return (f"Run started {run.get('started', 'n/a')}; {run.get('threads')} torch thread(s){par} on "
            f"{run.get('cpu_count')} CPU(s); load average (1/5/15 min) {load(run.get('load_start'))} at the start, "
            f"{load(run.get('load_end'))} at the end; wall time {fmt(run.get('wall_seconds'), '.0f')} s{st} "
            f"({run.get('platform', '')}, torch {run.get('torch', '')}).")


# ----------------------------------------------------------------------------- the document


@dataclass
class _Block:
    kind: str
    data: dict[str, Any]


class Report:
    """A report as a list of blocks, rendered to Markdown (:meth:`markdown`) and to one
    self-contained HTML page (:meth:`html`)."""

    def __init__(self, title: str):
        self.title = title
        self.blocks: list[_Block] = []

    def _add(self, kind: str, **data) -> "Report":
        self.blocks.append(_Block(kind, data))
        return self

    def heading(self, text: str, level: int = 2) -> "Report":
        return self._add("heading", text=text, level=level)

    def paragraph(self, text: str) -> "Report":
        return self._add("paragraph", text=text)

    def bullets(self, items: Sequence[str]) -> "Report":
        return self._add("bullets", items=list(items))

    def table(self, header: Sequence[str], rows: Sequence[Sequence[Any]], floatfmt: str = ".4g") -> "Report":
        return self._add("table", header=list(header), rows=[list(r) for r in rows], floatfmt=floatfmt)

    def claims(self, claims: Sequence[Claim], *, evidence: bool = False) -> "Report":
        """A table claim | target | measured | verdict (+ evidence); verdicts come from the claims."""
        return self._add("claims", claims=list(claims), evidence=evidence)

    def figure(self, path: str, caption: str, reading: str | None = None) -> "Report":
        """A figure (path relative to the report) with its caption and one-line reading."""
        return self._add("figure", path=str(path), caption=caption, reading=reading)

    def readings(self) -> dict[str, str | None]:
        """Figure path -> its reading, for every figure of the report."""
        return {b.data["path"]: b.data["reading"] for b in self.blocks if b.kind == "figure"}

    # ---- Markdown

    @staticmethod
    def _claim_rows(claims: Sequence[Claim], evidence: bool) -> tuple[list[str], list[list[str]]]:
        header = ["claim", "target", "measured", "verdict"] + (["evidence"] if evidence else [])
        rows = []
        for c in claims:
            v = c.verdict
            label = v.label if v.met is not False else f"**{v.label}**"
            rows.append([c.statement, "n/a" if c.target is None else c.target.describe(), c.measured_text, label]
                        + ([c.evidence] if evidence else []))
        return header, rows

    def markdown(self) -> str:
        lines = [f"# {self.title}", ""]
        for b in self.blocks:
            d = b.data
            if b.kind == "heading":
                lines += ["#" * d["level"] + " " + d["text"], ""]
            elif b.kind == "paragraph":
                lines += [d["text"], ""]
            elif b.kind == "bullets":
                lines += [f"- {it}" for it in d["items"]] + [""]
            elif b.kind in ("table", "claims"):
                header, rows, spec = ((d["header"], d["rows"], d["floatfmt"]) if b.kind == "table"
                                      else (*self._claim_rows(d["claims"], d["evidence"]), ".4g"))
                lines.append("| " + " | ".join(str(h).replace("|", "\\|") for h in header) + " |")
                lines.append("|" + "|".join("---" for _ in header) + "|")
                for r in rows:
                    lines.append("| " + " | ".join(_cell(v, spec).replace("|", "\\|").replace("\n", " ")
                                                   for v in r) + " |")
                lines.append("")
            elif b.kind == "figure":
                lines += [f"![{d['caption']}]({d['path']})", "",
                          f"*{d['caption']}.*" + (f" Reading: {d['reading']}" if d["reading"] else ""), ""]
        return "\n".join(lines).rstrip() + "\n"

    # ---- HTML

    def html(self, base: str | os.PathLike = ".") -> str:
        """One HTML page; figures are read from ``base`` and embedded as ``data:`` URIs."""
        base = Path(base)
        body: list[str] = []
        toc: list[tuple[str, str]] = []
        used: set[str] = set()
        for b in self.blocks:
            d = b.data
            if b.kind == "heading":
                anchor = _anchor(d["text"], used)
                if d["level"] == 2:
                    toc.append((anchor, d["text"]))
                lvl = min(max(int(d["level"]), 2), 6)
                body.append(f'<h{lvl} id="{anchor}">{_inline(d["text"])}</h{lvl}>')
            elif b.kind == "paragraph":
                body.append(f"<p>{_inline(d['text'])}</p>")
            elif b.kind == "bullets":
                body.append("<ul>" + "".join(f"<li>{_inline(it)}</li>" for it in d["items"]) + "</ul>")
            elif b.kind == "table":
                body.append(_html_table(d["header"], d["rows"], d["floatfmt"]))
            elif b.kind == "claims":
                header, _ = self._claim_rows(d["claims"], d["evidence"])
                rows = []
                for c in d["claims"]:
                    v = c.verdict
                    cls = {True: "met", False: "notmet", None: "neutral"}[v.met]
                    cells = [_inline(c.statement), html.escape("n/a" if c.target is None else c.target.describe()),
                             _inline(c.measured_text), f'<span class="v {cls}">{html.escape(v.label)}</span>']
                    if d["evidence"]:
                        cells.append(_inline(c.evidence))
                    rows.append("<tr>" + "".join(f"<td>{x}</td>" for x in cells) + "</tr>")
                body.append('<div class="tw"><table><thead><tr>' + "".join(f"<th>{html.escape(h)}</th>" for h in header)
                            + "</tr></thead><tbody>" + "".join(rows) + "</tbody></table></div>")
            elif b.kind == "figure":
                uri = _data_uri(base / d["path"])
                cap = f"<strong>{_inline(d['caption'])}.</strong>" + (
                    f" <em>Reading:</em> {_inline(d['reading'])}" if d["reading"] else "")
                img = (f'<img src="{uri}" alt="{html.escape(d["caption"], quote=True)}">' if uri else
                       f'<p class="missing">figure file {html.escape(d["path"])} is missing</p>')
                body.append(f"<figure>{img}<figcaption>{cap}</figcaption></figure>")
        nav = ""
        if len(toc) > 1:
            nav = '<nav><ul>' + "".join(f'<li><a href="#{a}">{_inline(t)}</a></li>' for a, t in toc) + "</ul></nav>"
        return (_HTML_HEAD.format(title=html.escape(self.title)) + f"<h1>{_inline(self.title)}</h1>" + nav
                + "\n".join(body) + "</main></body></html>\n")


def _cell(v: Any, spec: str) -> str:
    return fmt(v, spec) if isinstance(v, (float, np.floating)) or v is None else str(v)


def _anchor(text: str, used: set[str]) -> str:
    a = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"
    base, k = a, 2
    while a in used:
        a, k = f"{base}-{k}", k + 1
    used.add(a)
    return a


_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_ITAL = re.compile(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])")


def _inline(text: str) -> str:
    """Escape ``text`` for HTML, then render Markdown's inline code, bold and italics."""
    parts = _CODE.split(str(text))
    out = []
    for i, p in enumerate(parts):
        if i % 2:
            out.append(f"<code>{html.escape(p)}</code>")
        else:
            s = html.escape(p, quote=False)
            s = _BOLD.sub(r"<strong>\1</strong>", s)
            s = _ITAL.sub(r"<em>\1</em>", s)
            out.append(s)
    return "".join(out)


def _html_table(header: Sequence[str], rows: Sequence[Sequence[Any]], spec: str) -> str:
    head = "".join(f"<th>{_inline(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_inline(_cell(v, spec))}</td>" for v in r) + "</tr>" for r in rows)
    return f'<div class="tw"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
         ".svg": "image/svg+xml", ".webp": "image/webp"}


def _data_uri(path: Path) -> str | None:
    if not path.is_file():
        return None
    mime = _MIME.get(path.suffix.lower(), "application/octet-stream")
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


_HTML_HEAD = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ margin: 0; background: #fafafa; color: #222; font: 15px/1.55 system-ui, -apple-system, "Segoe UI", sans-serif; }}
main {{ max-width: 1000px; margin: 0 auto; padding: 1.5em 2em 4em; background: #fff; }}
h1 {{ font-size: 1.6em; margin-top: 0.2em; }} h2 {{ border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.8em; }}
nav ul {{ columns: 2; padding-left: 1.2em; font-size: 0.95em; }}
code {{ background: #f2f2f2; padding: 0 0.25em; border-radius: 3px; font-size: 0.92em; }}
.tw {{ overflow-x: auto; margin: 1em 0; }}
table {{ border-collapse: collapse; font-size: 0.9em; }}
th, td {{ border: 1px solid #ddd; padding: 0.3em 0.55em; text-align: left; vertical-align: top; }}
th {{ background: #f4f4f4; }} tbody tr:nth-child(even) {{ background: #fbfbfb; }}
figure {{ margin: 1.5em 0; }} figure img {{ max-width: 100%; height: auto; border: 1px solid #eee; }}
figcaption {{ font-size: 0.92em; color: #333; margin-top: 0.4em; }}
.v {{ font-weight: 600; white-space: nowrap; }} .met {{ color: #1a7f37; }} .notmet {{ color: #c62828; }}
.neutral {{ color: #666; }} .missing {{ color: #c62828; }}
</style></head><body><main>
"""


# ----------------------------------------------------------------------------- the writer


def write_outputs(out: str | os.PathLike, report: Report, results: Any) -> dict[str, Path]:
    """Write ``results.json``, ``report.md`` and ``report.html`` to ``out``, each atomically.

    Figures referenced by the report are read from ``out`` and embedded in the HTML.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"results": write_json(out / "results.json", results),
             "markdown": atomic_write_text(out / "report.md", report.markdown()),
             "html": atomic_write_text(out / "report.html", report.html(out))}
    return paths
