"""End-to-end smoke run of the bottleneck study (aeprobe.studies.bottleneck): files, keys and
internal consistency; its helpers and verdict rules on constructed cases."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn

from aeprobe.studies import bottleneck as B
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
        of = run["overfitting"]
        # the split is exact bookkeeping: encoder + decoder = gap (float64 sums)
        assert of["encoder_gap"] + of["decoder_gap"] == pytest.approx(of["gap"], abs=1e-9)
        assert len(run["train_loss"]) == len(run["test_loss"]) == 1
        assert run["first_epoch_below"] == 1  # 'auto' threshold: every run crosses it by construction


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
