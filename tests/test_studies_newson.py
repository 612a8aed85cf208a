"""Smoke runs of the disk and position studies (aeprobe.studies.disks / .position), and one short real training.

The quick-mode targets (Airy correlation >= 0.99 etc.) need minutes of training and are checked
by the quick runs themselves (their report's claims table); here the smoke runs check that every
output file and key exists and is finite, and one short training checks that a real bias-free
DiskAE moves to the rank-1 optimum the Airy profile describes.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from _studies import run_smoke

DISK_KEYS = ["airy_correlation", "profile_rel_l2", "rank1_energy", "homogeneity_max_rel_error_biasfree",
             "homogeneity_max_rel_error_biased", "code_area_r2", "code_radius_r2", "train_seconds"]


@pytest.fixture(scope="module")
def disks_smoke(tmp_path_factory):
    return run_smoke("disks", tmp_path_factory.mktemp("disks"))


def test_disks_smoke_files_and_keys(disks_smoke):
    out, res = disks_smoke
    for k in DISK_KEYS:
        assert k in res, k
        assert res[k] is not None and math.isfinite(res[k]), (k, res[k])
    report = (out / "report.md").read_text()
    assert "| claim | target | measured | verdict |" in report
    assert (out / "report.html").stat().st_size > 10_000
    for name in res["figures"].values():
        assert (out / name).stat().st_size > 1000, name  # a real PNG ...
        assert f"]({name})" in report  # ... shown in the report with a reading
        assert res["readings"][name]
    prof = np.load(out / "profile.npz")
    assert prof["t"].shape == prof["f"].shape and prof["t"].ndim == 1 and np.all(np.isfinite(prof["f"]))
    assert np.all(np.diff(prof["t"]) > 0) and prof["t"][0] >= 0
    assert set(res["hole"]["regularizers"]) == {"none", "psi1", "psi2", "psi3"}
    for k, v in res["hole"]["regularizers"].items():
        assert math.isfinite(v["mse_hole_mean"]) and math.isfinite(v["mse_observed_mean"])
        s = v["seeds"][0]
        assert (s["final_reg_loss"] > 0) == (k != "none")  # the regulariser is really applied
        assert 0.0 <= s["reg_share"] < 1.0 and 0.0 <= s["code_monotone_fraction_hole"] <= 1.0
    assert [s["lam"] for s in res["hole"]["psi3_sweep"]] == list(res["config"]["psi3_sweep"])
    assert math.isfinite(res["limited_radius"]["bias_free"]["profile_energy_beyond_R"])
    assert len(res["airy_correlation_per_epoch"]) == res["config"]["epochs_free"]
    assert res["rank1_floor_mse"] > 0 and math.isfinite(res["biasfree_loss_excess"])
    assert [s["seed"] for s in res["code_per_seed"]] == [0] + list(res["config"]["code_seeds"])
    run = res["run"]
    assert run["threads"] == torch.get_num_threads() and run["wall_seconds"] > 0 and "load_start" in run


def test_disks_smoke_claims_are_judged_from_the_numbers(disks_smoke):
    _, res = disks_smoke
    by_id = {c["id"]: c for c in res["claims"]}
    assert {"airy_correlation", "homogeneity_biasfree", "homogeneity_biased", "area_code"} <= set(by_id)
    assert by_id["airy_correlation"]["met"] == (res["airy_correlation"] >= 0.99)
    assert by_id["homogeneity_biasfree"]["met"] == (res["homogeneity_max_rel_error_biasfree"] <= 1e-5)
    assert by_id["area_code"]["met"] == (res["code_area_r2"] > res["code_radius_r2"])
    assert "wall_time" not in by_id  # a smoke run has no wall-time goal


def test_disks_smoke_homogeneity_contrast(disks_smoke):
    """Prop. 1 holds for any bias-free decoder, even untrained: float32 rounding only (~1e-7)."""
    _, res = disks_smoke
    assert res["homogeneity_max_rel_error_biasfree"] < 1e-5
    assert res["homogeneity_max_rel_error_biased"] > 1e-3


def test_disks_smoke_code_ablation_is_first_order_exact_without_biases(disks_smoke):
    """Zeroing the one-number code (aeprobe.probes.code.unit_ablation): a bias-free decoder is positively
    homogeneous, so D(0) = 0 and J_D(z) z = D(z) (Euler) and the first-order prediction is exact for any
    weights, trained or not (float32 rounding: ~1e-7 relative); the biased decoder has D(0) != 0."""
    out, res = disks_smoke
    f, b = res["code_ablation"]["biasfree"], res["code_ablation"]["biased"]
    assert f["n"] == res["config"]["n_eval"] and f["measured"] > 0
    assert abs(f["ratio"] - 1.0) < 1e-4 and f["measured"] == pytest.approx(f["predicted"], rel=1e-4)
    assert f["loss_change"] > 0  # the code carries the disk: zeroing it costs reconstruction error
    assert math.isfinite(b["ratio"]) and b["predicted"] > 0
    by_id = {c["id"]: c for c in res["claims"]}
    assert by_id["ablation_first_order"]["met"] is True
    assert "Zeroing the code" in (out / "report.md").read_text()


def test_position_smoke_files_and_keys(tmp_path):
    out, saved = run_smoke("position", tmp_path)
    assert len(saved["filter_cosine"]) == 6 and len(saved["filter_cosine_linear"]) == 6
    assert all(0.0 <= c <= 1.0 + 1e-9 for c in saved["filter_cosine"] + saved["filter_cosine_linear"])
    for k in ("onehot_encoding_r2", "onehot_encoding_spearman", "decoding_centroid_error",
              "decoding_peak_energy_fraction", "constant_output_mse", "train_seconds"):
        assert saved[k] is not None and math.isfinite(saved[k]), k
    report = (out / "report.md").read_text()
    for name in saved["figures"].values():
        assert (out / name).stat().st_size > 1000 and f"]({name})" in report
    by_id = {c["id"]: c for c in saved["claims"]}
    assert by_id["onehot_code"]["met"] == (saved["onehot_encoding_r2"] > 0.999)
    assert by_id["decoded_peak"]["met"] == (saved["decoding_argmax_error"] < 1)



def test_position_autoencoder_stops_once_stuck_at_the_constant_output_and_says_so():
    """The end-to-end position AE stops when its loss stayed within 1% of the best constant output's
    for ``ae_stuck_patience`` epochs; nets that are not the end-to-end AE always run every epoch."""
    from aeprobe.studies.position import Config, PositionJob, train_position_job, training_data

    cfg = Config("smoke", n_train=256, epochs_ae=40, ae_stuck_patience=3, batch_size=32)
    info = train_position_job(PositionJob("autoencoder", "ae", "autoencoder", 40, 0, cfg))["info"]
    x = training_data(cfg)["x"]
    constant = float(((x - x.mean(0, keepdim=True)) ** 2).mean())
    assert info["stopped_stuck"] and 3 <= info["epochs_run"] < 40
    assert min(info["loss_curve"][-3:]) >= 0.99 * constant  # the rule that stopped it held
    enc = train_position_job(PositionJob("encoder", "e", "encoder", 4, 0, Config("smoke", n_train=256,
                                                                                  ae_stuck_patience=1)))["info"]
    assert not enc["stopped_stuck"] and enc["epochs_run"] == 4


def test_disk_job_stops_once_stuck_at_the_constant_output_and_says_so(tmp_path):
    """A disk net whose encoder a huge psi3 weight shuts off (the decoder can then only output the
    mean image) stops after ``stuck_patience`` epochs at >= 99% of the constant output's MSE, and
    its info says so; the rule itself is checked on constructed loss curves."""
    import numpy as np

    from aeprobe.data import disks
    from aeprobe.studies.disk_training import DiskJob, train_disk_job
    from aeprobe.studies.evaluate import constant_output_mse, is_stuck, stuck_at

    x = disks(64, size=32, r_min=0.5, r_max=16.0, seed=3).images
    np.save(tmp_path / "x.npy", x.numpy())
    job = DiskJob("hole-psi3-10-s0", "collapsing", str(tmp_path / "x.npy"), 64, True, 12, 0, 32, 1e-2, size=32,
                  reg="psi3", lam=10.0, stuck_patience=2)
    info = train_disk_job(job)["info"]
    assert info["stopped_stuck"] and 2 <= info["epochs_run"] < 12 == info["epochs"]
    assert len(info["loss_curve"]) == info["epochs_run"]
    assert min(info["loss_curve"][-2:]) >= stuck_at(x) == 0.99 * constant_output_mse(x)

    assert is_stuck([0.5, 0.99, 1.2], 0.99, 2) and not is_stuck([0.5, 0.98, 1.2], 0.99, 2)
    assert not is_stuck([1.0], 0.99, 2)  # fewer epochs than the patience
    assert not is_stuck([1.0, 1.0, 1.0], 0.99, None) and not is_stuck([1.0, 1.0], 0.99, 0)


def test_short_training_reaches_the_rank1_optimum_and_the_airy_profile():
    """A bias-free DiskAE trained briefly decodes with (nearly) the Airy profile (Prop. 2).

    480 Adam steps (600 disks, batches of 25, 20 epochs, one thread: ~4 s). Measured: training MSE
    3.2% above the rank-1 floor of the data, corr(f, Airy) 0.9928, rank-1 energy 1 - 1e-8. The
    correlation alone is not enough: after the first epoch it is already 0.99 while the MSE is 4x
    the floor (the decoder's output is still tiny), so the loss is bounded too. Bounds: MSE within
    6% of the floor and correlation >= 0.985 (the mean training image has correlation 0.93 and a
    linear ramp 0.94 with the Airy profile, so 0.985 still separates them).
    """
    from aeprobe.data import disks
    from aeprobe.models import DiskAE
    from aeprobe.probes.profile import compare_to_airy, rank1_floor_mse
    from aeprobe.probes.separable import separable_profile
    from aeprobe.train import train

    b = disks(600, size=64, r_min=0.5, r_max=32.0, seed=11)
    R = float(b.params["radius"].max())
    torch.manual_seed(0)
    model = DiskAE(bias=False, code_size=1, size=64)
    res = train(model, b.images, epochs=20, batch_size=25, lr=1e-3, seed=0, progress=False, channels_last=True)
    model = model.to(memory_format=torch.contiguous_format).eval()
    radii = np.linspace(0.5, 32.0, 32)
    sep = separable_profile(model, disks(radii=radii, size=64).images, radii)
    cmp = compare_to_airy(sep.t, sep.f_radial, R)
    excess = res.history["train_loss"][-1] / rank1_floor_mse(b.images) - 1
    assert sep.rank1_energy > 1 - 1e-6  # one code sign + homogeneity: rank 1 up to float32
    assert 0 <= excess < 0.06
    assert cmp.correlation >= 0.985


def test_readme_tables_regenerate_marked_blocks_from_the_named_runs(disks_smoke, tmp_path):
    from aeprobe.studies import readme_tables

    out, res = disks_smoke
    readme = tmp_path / "README.md"
    marker = f"<!-- generated by: python -m aeprobe.studies.readme_tables {out} -->"
    readme.write_text(f"intro\n{marker}\nstale table\n<!-- end of generated tables -->\nrest\n")
    assert readme_tables.main(["--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "stale table" not in text and text.startswith(f"intro\n{marker}\n") and text.endswith("-->\nrest\n")
    assert readme_tables.tables([out]) in text  # the same Markdown the printing form gives
    assert f"{res['airy_correlation']:.4f}" in text  # the numbers of that run
    readme.write_text("no markers\n")
    with pytest.raises(SystemExit):
        readme_tables.main(["--readme", str(readme)])
