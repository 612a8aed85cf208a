"""End-to-end smoke run of the zoo study (aeprobe.studies.zoo): files, every kind present, internal consistency."""
from __future__ import annotations

import csv

import numpy as np
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


def test_smoke_code_statistics_of_every_kind(smoke):
    """code_stats columns of the results table: consistent with each other and with the code size."""
    out, res = smoke
    header = next(csv.reader(open(out / "results.csv", newline="")))
    assert {"dead units", "L0", "FVE", "eff. dim"} <= set(header)
    for kind, rec in res["kinds"].items():
        c = rec["code"]
        m = res["config"]["latent"]
        assert c["code_size"] == m and c["threshold"] == res["config"]["code_threshold"]
        assert 0 <= c["dead_units"] <= m and c["dead_fraction"] == pytest.approx(c["dead_units"] / m)
        assert c["l0"] <= m - c["dead_units"] + 1e-9  # dead units are never active
        assert 1.0 - 1e-9 <= c["effective_dim"] <= m + 1e-9 and c["fve"] <= 1.0
        lam = np.array(c["spectrum"])  # participation ratio of the reported spectrum
        assert c["effective_dim"] == pytest.approx(lam.sum() ** 2 / (lam ** 2).sum(), rel=1e-9)
    assert "Codes (" in (out / "report.md").read_text()


def _numbers(d):
    if isinstance(d, dict):
        return {k: _numbers(v) for k, v in d.items()
                if "seconds" not in k and k not in ("run", "backend", "workers", "readings", "jobs_reused")}
    if isinstance(d, list):
        return [_numbers(v) for v in d]
    return d


def test_jobs_give_the_same_numbers_on_the_local_and_processes_backends_and_are_read_back(tmp_path):
    """A reduced smoke run (one kind, one extra seed, the two practices) on the local backend and in two
    worker processes: the same numbers; a second run in the same folder runs no job again."""
    from dataclasses import replace

    from aeprobe.studies import zoo as Z

    cfg = replace(Z.Config.for_mode("smoke"), kinds=("vae",), spread_seeds=2, probe_repeats=1)
    local = Z.run(replace(cfg, backend="local"), tmp_path / "l")
    par = Z.run(replace(cfg, backend="processes", workers=2), tmp_path / "p")
    assert local["backend"] == "local" and par["backend"] == "processes" and par["jobs_reused"] == 0
    assert _numbers(par) == _numbers(local)
    again = Z.run(replace(cfg, backend="local"), tmp_path / "p")
    assert again["jobs_reused"] == 4 and _numbers(again) == _numbers(local)
