"""Statistics of an autoencoder's code over a dataset, split across processes with torch.distributed.

    torchrun --standalone --nproc_per_node 2 examples/code_stats.py --out runs/code_stats.json
    python examples/code_stats.py --out runs/code_stats_1.json    # one process: the same numbers

Every rank takes its shard of the batches (``aeprobe.shard``), streams them through the model
with ``aeprobe.stream`` -- which keeps only a running float64 mean and variance (and min/max) of
each code unit, never the activations -- then ``all_reduce`` merges the ranks' states, so that
every rank holds the statistics of the whole dataset: equal to a single process's to float64
rounding. gloo on CPU; under torchrun on GPUs pass ``--backend nccl`` (one GPU per rank).
Rank 0 writes the JSON.

The model is Manakov et al.'s CAE (``aeprobe.models.ManakovCAE``), seeded and untrained unless
``--checkpoint`` gives weights saved by ``aeprobe.save_checkpoint`` (e.g. by ``aeprobe.train``);
the data are grey natural-image patches cut from the photographs scikit-image bundles.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


import torch
import torch.distributed as dist

import aeprobe
from aeprobe.data import image_patches
from aeprobe.models.manakov import ManakovCAE


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="JSON file written by rank 0")
    p.add_argument("--images", type=int, default=512, help="number of patches")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--checkpoint", default=None, help="weights for the CAE (aeprobe.save_checkpoint file)")
    p.add_argument("--backend", default="gloo", help="torch.distributed backend under torchrun (gloo | nccl)")
    args = p.parse_args(argv)

    distributed = "WORLD_SIZE" in os.environ  # set by torchrun
    if distributed:
        dist.init_process_group(args.backend)
    rank = dist.get_rank() if distributed else 0
    device = torch.device("cuda", int(os.environ["LOCAL_RANK"])) if args.backend == "nccl" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.set_num_threads(1)

    torch.manual_seed(0)
    model = ManakovCAE(in_channels=1, size=32, area="M", compression=1 / 16).to(device).eval()
    if args.checkpoint:
        aeprobe.load_checkpoint(args.checkpoint, model)
    x, _ = image_patches(args.images, size=32, seed=0, gray=True)  # the same patches on every rank
    batches = list(x.split(args.batch_size))
    mine = aeprobe.shard(batches) if distributed else batches  # this rank's batches, in order

    with torch.no_grad(), aeprobe.stream(model, ["encoder"], "variance") as var, \
            aeprobe.stream(model, ["encoder"], "minmax") as mm:
        for xb in mine:
            model(xb.to(device))
    if distributed:
        var["encoder"].all_reduce()
        mm["encoder"].all_reduce()

    v, lo_hi = var["encoder"], mm["encoder"].result()
    report = {"world_size": dist.get_world_size() if distributed else 1, "count": v.count,
              "code_shape": list(v.mean.shape), "mean": v.mean.flatten().tolist(),
              "variance": v.result().flatten().tolist(), "min": lo_hi[0].flatten().tolist(),
              "max": lo_hi[1].flatten().tolist()}
    if rank == 0:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")
        print(f"{report['count']} codes over {report['world_size']} process(es): mean variance per code unit "
              f"{sum(report['variance']) / len(report['variance']):.4g} -> {args.out}")
    if distributed:
        dist.destroy_process_group()
    return report


if __name__ == "__main__":
    main()
