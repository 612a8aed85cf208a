"""End-to-end smoke run of the zoo study (aeprobe.studies.zoo): files, every kind present, internal consistency."""
from __future__ import annotations

import csv

import pytest

from aeprobe.models.zoo import KINDS, SAMPLERS

from _studies import run_smoke


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("zoo")
    return run_smoke("zoo", out)


def test_smoke_writes_results_table_report_and_figures(smoke):
    out, res = smoke
    report = (out / "report.md").read_text()
    assert set(res["kinds"]) == set(KINDS)
    for kind in KINDS:
        assert f"| {kind} |" in report  # a row of the results table
    for name in ("reconstructions", "samples", "interpolation", "latent_pca", "classification", "anomaly_roc",
                 "test_bce_curves", "upsampling_alias", "upsampling_outputs"):
        assert name in res["figures"], name
    for name in res["figures"].values():
        assert (out / name).stat().st_size > 1000, name  # a real PNG, referenced in the report with a reading
        assert f"]({name})" in report
    assert report.count("Reading:") >= len(res["figures"])
    assert set(res["readings"]) == set(res["figures"].values())
    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0][0] == "kind" and [r[0] for r in rows[1:]] == list(res["kinds"])


def test_smoke_every_kind_has_every_measurement(smoke):
    _, res = smoke
    for kind, rec in res["kinds"].items():
        for key in ("seconds_train", "test_bce", "test_mse", "probe_acc", "auroc", "pca_silhouette",
                    "interp_nn_mse", "identity", "overfitting", "homogeneity", "test_bce_curve"):
            assert rec.get(key) is not None, (kind, key)
        assert (rec.get("sample_nn_mse") is not None) == (kind in SAMPLERS)
        assert 0.0 <= rec["auroc"] <= 1.0 and 0.0 <= rec["probe_acc"] <= 1.0
        assert len(rec["test_bce_curve"]) == res["config"]["epochs"]
        of = rec["overfitting"]
        # exact bookkeeping of the split (float64 sums)
        assert of["encoder_gap"] + of["decoder_gap"] == pytest.approx(of["gap"], abs=1e-9)
        assert rec["homogeneity"]["no_biases"] >= 0
    assert {c["id"] for c in res["claims"]} >= {"shallow_worst_recon", "denoising_best_probe", "shallow_best_anomaly"}
    assert all(c["verdict"].split()[0] in ("agrees", "disagrees", "not") for c in res["claims"])
    # the verdict follows the saved numbers: shallow reconstructs worst iff its test BCE is the highest
    by_id = {c["id"]: c for c in res["claims"]}
    worst = max(res["kinds"], key=lambda k: res["kinds"][k]["test_bce"])
    assert by_id["shallow_worst_recon"]["met"] == (worst == "shallow")


def test_smoke_upsampling_structure_holds_even_after_one_epoch(smoke):
    """Resize + conv maps a constant code to a constant interior for any weights (float rounding
    only); a k=3, s=2 transposed conv gives a periodic one. Structural, so it holds in smoke mode."""
    _, res = smoke
    ups = res["upsampling"]["kinds"]
    assert set(ups) == {"transposed k3", "transposed k4", "nearest", "bilinear", "pixel_shuffle"}
    for k in ("nearest", "bilinear"):
        assert ups[k]["probe"]["constant"]["alias_rms"] < 1e-6
    assert ups["transposed k3"]["probe"]["constant"]["alias_rms"] > 1e-4
    prog = res["progressive"]
    assert prog["sizes"][1] == res["data"]["conv_size"] and prog["progressive"]["test_mse"] > 0
