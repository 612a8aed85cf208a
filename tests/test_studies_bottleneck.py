"""End-to-end smoke run of the bottleneck study (aeprobe.studies.bottleneck): files, keys and
internal consistency; its helpers and verdict rules on constructed cases."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from hypothesis import given, settings
from hypothesis import strategies as st

from aeprobe.probes.code import cka, svcca
from aeprobe.studies import bottleneck as B
from aeprobe.studies import bottleneck_similarity as SIM
from aeprobe.studies import bottleneck_stats as S

from _studies import run_smoke


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("bottleneck")
    return run_smoke("bottleneck", out)


def test_smoke_writes_results_report_and_figures(smoke):
    out, res = smoke
    report = (out / "report.md").read_text()
    assert "Which of the paper's claims the measurements support" in report
    for name in res["figures"].values():
        assert (out / name).stat().st_size > 1000, name  # a real PNG, referenced in the report
        assert name in report
    assert {"configurations", "runs", "stats", "claims", "threshold", "data", "config", "readings", "run"} <= set(res)
    # every figure comes with a reading computed from the numbers
    assert set(res["readings"]) == set(res["figures"].values()) and all(res["readings"].values())
    assert report.count("Reading:") == len(res["figures"])
    assert "In short:" in report and "Reference test MSEs" in report


def test_smoke_configuration_keys_and_consistency(smoke):
    _, res = smoke
    cfgs = res["configurations"]
    assert set(cfgs) == {"S 1/4", "S 1", "L 1/4", "L 1"}  # smoke: one area pair x two compressions
    for key, c in cfgs.items():
        for k in ("min_test_error", "min_test_epoch", "encoder_gap", "decoder_gap", "encoder_gap_matched",
                  "decoder_gap_matched", "auroc", "probe_acc_seen", "probe_acc_unseen", "first_epoch_below"):
            assert k in c, (key, k)
        assert c["min_test_epoch"] == 1  # one epoch
        assert 0.0 <= c["auroc"] <= 1.0
        assert ("identity" in c) == key.endswith(" 1")  # identity tests only on complete models
    ident = cfgs["S 1"]["identity"]
    assert {"uniform_noise", "shuffled_pixels", "other_dataset"} == set(ident["ood_unexplained"])
    assert ident["jacobian_distance"] >= 0.0
    for run in res["runs"]:
        assert len(run["train_loss"]) == len(run["test_loss"]) == 1


def test_smoke_statistics_follow_table_1(smoke):
    _, res = smoke
    rows = res["stats"]["area"]["min_test_error"]
    assert len(rows) == 1 and rows[0]["a"] == "S" and rows[0]["b"] == "L" and rows[0]["n_a"] == 2
    assert len(res["stats"]["compression"]["min_test_error"]) == 1
    ids = {c["id"] for c in res["claims"]}
    assert {"area_generalisation", "area_speed", "no_identity", "open_question_encoder_vs_decoder"} <= ids
    # every verdict is the one its rule gives for the saved numbers
    by_id = {c["id"]: c for c in res["claims"]}
    rows = res["stats"]["area"]["min_test_error"]
    assert by_id["area_generalisation"]["verdict"] == S.verdict(rows, "lower")[0]
    copies = sum(bool(r["identity_looks_like_copy"]) for r in res["runs"] if r["identity"] is not None)
    assert by_id["no_identity"]["met"] == (copies == 0)


def _numbers(d):
    """``d`` without what legitimately differs between two runs of the same grid (timings, the run
    record, how the grid ran, the readings that quote them)."""
    if isinstance(d, dict):
        return {k: _numbers(v) for k, v in d.items()
                if "seconds" not in k and k not in ("run", "backend", "workers", "readings", "cells_reused")}
    if isinstance(d, list):
        return [_numbers(v) for v in d]
    return d


def test_smoke_processes_backend_gives_the_local_results_and_a_rerun_trains_nothing(smoke, tmp_path):
    """The fixture ran the grid on the local backend (tests pin torch to one thread, like each worker);
    two worker processes give the same numbers bit for bit, and a second run in the same folder reads
    every cell back from OUT/cells instead of training it."""
    _, local = smoke
    assert local["backend"] == "local" and local["cells_reused"] == 0
    out = tmp_path / "p"
    par = B.run(replace(B.Config.for_mode("smoke"), backend="processes", workers=2), out)
    assert par["backend"] == "processes" and par["workers"] == 2 and par["cells_reused"] == 0
    assert _numbers(par) == _numbers(local)
    cells = sorted((out / "cells").glob("*.json"))
    assert len(cells) == len(local["runs"])
    stamps = [c.stat().st_mtime_ns for c in cells]
    again = B.run(replace(B.Config.for_mode("smoke"), backend="local"), out)
    assert again["cells_reused"] == len(cells) and [c.stat().st_mtime_ns for c in cells] == stamps
    assert _numbers(again) == _numbers(local)


def test_smoke_code_similarity_claim_and_figure(smoke):
    out, res = smoke
    sim = res["similarity"]
    k = len(res["runs"])
    assert sim["names"] == [f"{r['area']} {r['compression']} s{r['seed']}" for r in res["runs"]]
    for m in SIM.MEASURES:
        mat = np.array(sim["matrices"][m])
        assert mat.shape == (k, k) and np.allclose(mat, mat.T) and np.allclose(np.diag(mat), 1.0)
    assert sim["n_inputs"] == res["data"]["n_test"]
    assert all(1 <= kept <= min(size, sim["n_inputs"]) for kept, size in zip(sim["kept"], sim["code_sizes"]))
    by_id = {c["id"]: c for c in res["claims"]}
    assert by_id["codes_by_area"]["verdict"] == SIM.similarity_verdict(sim["test"]["svcca"])
    assert "code_similarity.png" in res["readings"] and "SVCCA: same area" in res["readings"]["code_similarity.png"]
    assert (out / "code_similarity.png").stat().st_size > 1000


@pytest.mark.filterwarnings("ignore:svcca:RuntimeWarning")  # few samples per direction: expected here
@settings(max_examples=15)
@given(n=st.integers(6, 20), p=st.integers(1, 30), q=st.integers(1, 30), seed=st.integers(0, 10_000))
def test_row_space_changes_neither_cka_nor_svcca(n, p, q, seed):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, p, generator=g, dtype=torch.float64) + 5.0  # uncentred, maybe wider than n
    b = a[:, :1] * torch.randn(1, q, generator=g, dtype=torch.float64) + torch.randn(n, q, generator=g,
                                                                                      dtype=torch.float64)
    ra, rb = SIM.row_space(a), SIM.row_space(b)
    assert ra.shape == (n, min(n, p))
    assert cka(ra, rb) == pytest.approx(cka(a, b), rel=1e-8, abs=1e-10)
    assert cka(ra, rb, debiased=True) == pytest.approx(cka(a, b, debiased=True), rel=1e-6, abs=1e-8)
    assert svcca(ra, rb, keep=1.0) == pytest.approx(svcca(a, b, keep=1.0), rel=1e-6, abs=1e-8)


def _grid(areas="SML", comps=("a", "b", "c", "d"), seeds=(0, 1)):
    runs = [dict(area=a, compression=c, seed=s) for a in areas for c in comps for s in seeds]
    return runs, [r["area"] for r in runs], [r["compression"] for r in runs]


def test_area_test_on_constructed_similarities():
    runs, areas, comps = _grid()
    groups = SIM.pair_groups(areas, comps)
    assert (np.diag(groups) == -1).all()
    # seed replicate, same area, same compression, both differ
    assert (groups[0, 1], groups[0, 2], groups[0, 8], groups[0, 10]) == (0, 1, 2, 3)
    base = np.where(groups >= 2, 0.3, 0.6)  # same-area pairs more alike
    np.fill_diagonal(base, 1.0)
    t = SIM.area_test(base, areas, comps, permutations=2000)
    assert t["means"]["same area"] == pytest.approx(0.6)
    assert t["means"]["different area and compression"] == pytest.approx(0.3)
    # 24 models: 12 seed pairs; per area C(8,2) - 4 = 24 same-area pairs; 3 x 16 same-compression pairs
    # of two areas x ... : 4 compressions x C(6,2) - 12 = 48; the rest of the 276
    assert t["counts"] == {"seed replicates": 12, "same area": 72, "same compression": 48,
                           "different area and compression": 144}
    assert t["difference"] == pytest.approx(0.3)
    # the observed labelling is the most extreme one (only the 6 renamings of the areas reach it, 6 of
    # 34650 relabellings): p is about the smallest a 2000-draw test can give
    assert t["p_greater"] <= 5 / 2001 and t["p_less"] == pytest.approx(1.0)
    assert SIM.similarity_verdict(t) == "supported"
    rev = np.where(groups >= 2, 0.6, 0.3)
    assert SIM.similarity_verdict(SIM.area_test(rev, areas, comps, permutations=2000)).startswith("contradicted")
    # no effect of the area, similarity set by the compression alone: within an area every pair has two
    # compressions, so a comparison with every different-area pair would call this "contradicted"
    comp = np.array(comps)
    flat = np.where(comp[:, None] == comp[None, :], 0.8, 0.4)
    tf = SIM.area_test(flat, areas, comps, permutations=2000)
    assert tf["difference"] == pytest.approx(0.0, abs=1e-12) and tf["means"]["same compression"] == pytest.approx(0.8)
    assert SIM.similarity_verdict(tf).startswith("not supported")
    # few configurations: every distinct relabelling is used (2 areas x 2 compressions: 6 of them; the 2 that
    # pair equal compressions leave no same-area pair of two compressions, so 4 count; 2 of them, the
    # observed one and its renaming, reach the observed difference)
    _, areas2, comps2 = _grid("SL", ("a", "b"), (0,))
    g2 = SIM.pair_groups(areas2, comps2)
    t2 = SIM.area_test(np.where(g2 >= 2, 0.1, 0.9), areas2, comps2)
    assert t2["exhaustive"] and t2["permutations"] == 4 and t2["p_greater"] == pytest.approx(2 / 4)
    one = SIM.area_test(np.eye(2), ["S", "S"], ["a", "b"])
    assert one["difference"] is None and SIM.similarity_verdict(one).startswith("not testable")


@pytest.mark.filterwarnings("ignore:svcca:RuntimeWarning")
def test_similarities_of_constructed_codes():
    """Codes built from a shared per-area signal: same-area codes are alike by construction, and the
    measures are those of aeprobe.probes.code on the original (not reduced) codes."""
    g = torch.Generator().manual_seed(0)
    runs, codes = [], {}
    signal = {a: torch.randn(200, 3, generator=g) for a in "SML"}
    for a in "SML":
        for c, m in (("1/16", 4), ("1/4", 8), ("1", 300)):  # 300 > 200 images: reduced to the row space first
            key = f"{a} {c}"
            runs.append(dict(key=key, area=a, compression=c, seed=0))
            codes[key] = signal[a] @ torch.randn(3, m, generator=g) + 0.3 * torch.randn(200, m, generator=g)
    sim = SIM.similarities(runs, codes, permutations=5000)
    i, j = sim["keys"].index("S 1/16"), sim["keys"].index("S 1")
    assert sim["matrices"]["cka"][i][j] == pytest.approx(cka(codes["S 1/16"], codes["S 1"]), rel=1e-6)
    assert sim["matrices"]["svcca"][i][j] == pytest.approx(svcca(codes["S 1/16"], codes["S 1"]), rel=1e-6)
    for key, kept in zip(sim["keys"], sim["kept"]):  # the fewest principal directions explaining 99%
        lam = np.sort(np.linalg.eigvalsh(np.cov(codes[key].double().numpy().T, bias=True)))[::-1]
        assert kept == int(np.searchsorted(np.cumsum(lam) / lam.sum(), 0.99) + 1)
    assert sim["code_sizes"][j] == 300 and sim["n_inputs"] == 200
    t = sim["test"]["cka_debiased"]
    assert t["exhaustive"] and t["difference"] > 0.3  # 9 configurations: every relabelling used
    assert SIM.similarity_verdict(t) == "supported" and SIM.similarity_verdict(sim["test"]["svcca"]) == "supported"


def test_bad_data_spec_is_rejected(tmp_path):
    smoke = B.Config.for_mode("smoke")
    with pytest.raises(ValueError, match="unknown --data"):
        B.run(replace(smoke, data="nope"), tmp_path)
    with pytest.raises(ValueError, match="folder:PATH"):  # CelebA / STL-10 go through an image folder
        B.run(replace(smoke, data="torchvision:CelebA:/nowhere"), tmp_path)
    with pytest.raises(ValueError, match="not divisible"):  # an impossible grid fails before any training
        B.run(replace(smoke, size=12), tmp_path)
    assert not (tmp_path / "results.json").exists()


# ------------------------------------------------------------------ helpers on constructed cases


class _Offset(nn.Module):
    """``f(x) = x + offset + pattern`` as an AE (identity encoder)."""

    def __init__(self, offset: float, pattern: torch.Tensor | None = None):
        super().__init__()
        self.encoder, self.decoder = nn.Identity(), nn.Identity()
        self.offset = offset
        self.pattern = pattern

    def encode(self, x):
        return x

    def decode(self, z):
        return z + self.offset + (0 if self.pattern is None else self.pattern)

    def forward(self, x):
        return self.decode(self.encode(x))


def test_brightness_share_of_constant_and_zero_mean_errors():
    x = torch.rand(6, 1, 4, 4)
    # error = constant per image: all of it is brightness error
    assert B.brightness_share(_Offset(0.3), x) == pytest.approx(1.0, abs=1e-12)
    # error = a zero-mean checkerboard: none of it is
    cb = (torch.arange(4).view(1, 4) + torch.arange(4).view(4, 1)) % 2 * 2.0 - 1.0
    assert B.brightness_share(_Offset(0.0, 0.1 * cb), x) == pytest.approx(0.0, abs=1e-12)
    # both, equal energy (offset 0.1, pattern +-0.1): mean(e)^2 = 0.01 of mean(e^2) = 0.02
    assert B.brightness_share(_Offset(0.1, 0.1 * cb), x) == pytest.approx(0.5, abs=1e-6)


def test_blend_deviation_is_zero_for_a_linear_decoder_and_positive_otherwise():
    x = torch.rand(8, 1, 4, 4)
    assert B.blend_deviation(_Offset(0.2), x, pairs=4) == pytest.approx(0.0, abs=1e-10)

    class Squash(_Offset):  # nonlinear decoder: the decoded path bends away from the blend
        def decode(self, z):
            return z ** 2

    assert B.blend_deviation(Squash(0.0), x, pairs=4) > 1e-3


def _rows(medians, p):
    runs = [dict(area=a, v=m + 1e-3 * k) for a, m in zip("SML", medians) for k in range(4)]
    rows = S.ranksum_table(runs, "area", ["S", "M", "L"], "v")
    for r in rows:
        r["p_value"] = p
    return rows


def test_verdict_rules():
    rows = _rows([3.0, 2.0, 1.0], 0.01)
    assert S.verdict(rows, "lower")[0] == "supported"
    assert S.verdict(rows, "higher")[0].startswith("contradicted (3/3")
    rows = _rows([3.0, 2.0, 1.0], 0.2)
    assert S.verdict(rows, "lower")[0].startswith("not supported (no pair significant; direction as claimed in 3/3")
    rows[0]["p_value"] = 0.01  # only S vs M significant
    assert S.verdict(rows, "lower")[0].startswith("partly supported (1/3")


def test_claim_verdicts_follow_the_rules_on_constructed_results():
    """The claims layer re-judges constructed numbers: an ordered, significant metric is
    'supported' (met), the reverse order 'contradicted' (not met)."""
    rows_ok = _rows([3.0, 2.0, 1.0], 0.01)
    runs = [dict(min_test_epoch=1, test_loss=[0.1, 0.1], identity=None, probe_gap=None, encoder_gap_matched=None,
                 gap=0.0) for _ in range(4)]
    stats = {f: {m: rows_ok for m in S.TEST_METRICS} for f in ("area", "compression")}
    claims = {c.id: c for c in S.claims(dict(runs=runs, stats=stats))}
    assert claims["area_generalisation"].verdict.label == "supported" and claims["area_generalisation"].verdict.met
    assert claims["iteration_dissolves"].verdict.label.startswith("contradicted")  # claimed higher, measured lower
    assert claims["iteration_dissolves"].verdict.met is False
    assert claims["probe_seen_unseen"].verdict.label == "not testable" and claims["probe_seen_unseen"].verdict.met is None
