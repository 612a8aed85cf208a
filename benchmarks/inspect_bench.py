"""Wall time of ``aeprobe inspect --quick`` on a small conv AE and 2,000 images of 32x32, in bare epochs.

(The file is not called ``inspect.py``: run as a script, its folder comes first on ``sys.path`` and
would shadow the standard library's ``inspect``.)

The script builds a small convolutional autoencoder (three stride-2 convolutions to an 8 x 4 x 4
code, three transposed convolutions back; about 20k parameters), trains it for a few epochs on
2,000 patches of 32 x 32 cut from the photographs bundled with scikit-image / scikit-learn (no
download), saves its weights as ``.safetensors`` and the images as ``.npy`` (500 more patches as the
held-out set, with their source-image labels), then times

    python -m aeprobe inspect --model benchmarks/inspect_bench.py:conv_ae --weights ae.safetensors \\
        --data npy:train.npy --heldout npy:test.npy --labels npy:labels.npy --out OUT --quick

in a fresh interpreter (imports included, default threads), between two measurements of a bare
epoch (:func:`train.bare_epoch_seconds`; see ``benchmarks/demo.py``). Goal: <= 71 bare epochs
(120 s on the idle 2-core reference machine, where a bare epoch takes ~1.7 s). It also prints the
one-thread bare epoch (less inflated by a busy machine) and the seconds of each section.

    python benchmarks/inspect_bench.py [--out runs/bench_inspect] [--no-labels] [--threads 1] [--skip-prepare]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
#: goal in bare epochs (120 s on the idle 2-core reference machine)
GOAL = 71.0
REFERENCE_EPOCH = 180.0 / 105.0


class ConvAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 16, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, 8, 3, stride=2, padding=1))
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(8, 32, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(32, 16, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(16, 1, 4, stride=2, padding=1), nn.Sigmoid())

    def forward(self, x):
        return self.decoder(self.encoder(x))


def conv_ae() -> nn.Module:
    """The factory ``--model`` names."""
    torch.manual_seed(0)
    return ConvAE()


def prepare(folder: Path, epochs: int = 5) -> dict:
    """Train the AE briefly and write ae.safetensors, train.npy, test.npy, labels.npy."""
    import numpy as np
    from safetensors.torch import save_file

    from aeprobe.data import image_patches
    from aeprobe.train import train

    folder.mkdir(parents=True, exist_ok=True)
    x, y = image_patches(2500, size=32, seed=0)
    xtr, xte = x[:2000], x[2000:]
    model = conv_ae()
    t0 = time.perf_counter()
    train(model, xtr, epochs=epochs, batch_size=64, lr=2e-3, progress=False, seed=0)
    save_file(model.state_dict(), str(folder / "ae.safetensors"))
    np.save(folder / "train.npy", xtr.numpy())
    np.save(folder / "test.npy", xte.numpy())
    np.save(folder / "labels.npy", y[:2000].numpy())
    return dict(train_seconds=time.perf_counter() - t0, params=sum(p.numel() for p in model.parameters()))


def run_inspect(folder: Path, out: Path, labels: bool, threads: int | None = None) -> float:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("AEPROBE_THREADS", None)
    cmd = [sys.executable, "-m", "aeprobe", "inspect", "--model", f"{Path(__file__).resolve()}:conv_ae",
           "--weights", str(folder / "ae.safetensors"), "--data", f"npy:{folder / 'train.npy'}",
           "--heldout", f"npy:{folder / 'test.npy'}", "--out", str(out), "--quick", "--no-progress"]
    if labels:
        cmd += ["--labels", f"npy:{folder / 'labels.npy'}"]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"aeprobe inspect failed:\n{r.stderr[-3000:]}")
    return wall


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("runs/bench_inspect"))
    ap.add_argument("--no-labels", action="store_true", help="without --labels (no linear probe)")
    ap.add_argument("--reps", type=int, default=2, help="bare-epoch timings each time (best is kept)")
    ap.add_argument("--threads", type=int, default=None,
                    help="--threads of the command (default: torch's own; the bare epoch always uses the default)")
    ap.add_argument("--skip-prepare", action="store_true", help="reuse the model and data of an earlier run")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from train import bare_epoch_seconds, disk_data

    from aeprobe.report import machine_load

    if args.skip_prepare and (args.out / "inputs" / "ae.safetensors").is_file():
        prep = dict(train_seconds=0.0, params=sum(p.numel() for p in conv_ae().parameters()))
    else:
        prep = prepare(args.out / "inputs")
    x, _ = disk_data(3000, seed=1)
    threads = torch.get_num_threads()


    print(f"torch {torch.__version__}, {threads} threads (default; the command: {args.threads or 'default'}), "
          f"{os.cpu_count()} CPUs; conv AE with "
          f"{prep['params']:,} parameters trained for {prep['train_seconds']:.0f} s (not counted)")
    load0 = machine_load()
    e0, o0 = bare_epoch_seconds(x, reps=args.reps), bare_epoch_seconds(x, reps=args.reps, threads=1)
    wall = run_inspect(args.out / "inputs", args.out / "report", labels=not args.no_labels, threads=args.threads)
    e1, o1 = bare_epoch_seconds(x, reps=args.reps), bare_epoch_seconds(x, reps=args.reps, threads=1)
    load1 = machine_load()
    epoch, one = (e0 + e1) / 2, (o0 + o1) / 2
    units = wall / epoch
    res = json.loads((args.out / "report" / "results.json").read_text())
    sections = {k: v for k, v in res["run"]["stage_seconds"].items()}
    print(f"bare epoch ({threads} threads) {e0:.2f} s before, {e1:.2f} s after; one-thread epoch {o0:.2f} s before, "
          f"{o1:.2f} s after; load {load0} -> {load1}")
    print("section seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in sections.items())
          + f" (sum {sum(sections.values()):.1f}; the rest is imports, data, figures' fonts, the writer)")
    print(f"inspect --quick wall {wall:.0f} s = {wall / one:.0f} one-thread epochs")
    print(f"inspect --quick wall {wall:.0f} s = {units:.1f} bare epochs (goal <= {GOAL:.0f}: "
          f"{'met' if units <= GOAL else 'NOT met'}), i.e. ~{units * REFERENCE_EPOCH:.0f} s on the idle reference machine")
    return dict(wall=wall, bare_epochs=units, one_thread_epochs=wall / one, bare_epoch_before=e0, bare_epoch_after=e1,
                load_before=load0, load_after=load1, sections=sections)


if __name__ == "__main__":
    main()
