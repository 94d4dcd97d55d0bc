"""Are ADM proposals better training targets than the network's own output? (issue 20, item 3)

ADM (Marin et al., CVPR 2019) trains the network on proposals: the labelling that minimises the
network's fidelity + the dense-CRF loss with the scribbles kept (`wsdeploy.training.losses.
proposals.crf_proposals`). Before paying for a training table, this measures the premise
cheaply, without training: for a trained model and the scribbled images of a split, the mIoU
against the dense masks of (a) the network's argmax, (b) its argmax with the scribbles pasted in,
and (c) the proposals, for a few dense-CRF weights, plus the energy before / after and the
proposal step's time per batch. A proposal that beats (b) gives the network something to learn.

    python benchmarks/adm_proposals.py --model wsdeploy/assets/default_model.pt \\
        --data data/synthetic-128-seed1 --split train --images 64 --threads 1

Results: benchmarks/results/adm_proposals.json (results_header's provenance included).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from scribble_table import results_header

import wsdeploy
from wsdeploy.atomic import atomic_write_text
from wsdeploy.data.image_io import read_image, read_label_png
from wsdeploy.metrics import SegmentationMetric
from wsdeploy.training.losses import loss_kernel
from wsdeploy.training.losses.checks import downsample
from wsdeploy.training.losses.proposals import crf_proposals


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True,
                   help="a segmenter trained on --data's classes (.pt); the committed figures used the synthetic "
                        "model bundled before the CamVid one: git show 9bc3bf9:wsdeploy/assets/default_model.pt")
    p.add_argument("--data", required=True, help="dataset folder with images/, scribbles/, masks/, splits/")
    p.add_argument("--split", default="train", help="split whose scribbled images are proposed on")
    p.add_argument("--images", type=int, default=64, help="first N images of the split")
    p.add_argument("--batch", type=int, default=8, help="images per proposal step")
    p.add_argument("--crf-weights", default="0.5,1,2,4,8", help="comma list of the proposal's lambda")
    p.add_argument("--sigma-rgb", type=float, default=30.0, help="kernel colour bandwidth (the table's)")
    p.add_argument("--sigma-xy", type=float, default=25.0, help="kernel spatial bandwidth in full-res pixels")
    p.add_argument("--scale", type=float, default=0.5, help="resolution of the proposal step")
    p.add_argument("--iterations", type=int, default=10, help="mean-field iterations")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--json", default="benchmarks/results/adm_proposals.json", help="results file")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    root = Path(args.data)
    ids = [s for s in (root / "splits" / f"{args.split}.txt").read_text().split() if s][: args.images]
    if not ids:
        p.error(f"{root}/splits/{args.split}.txt lists no images")
    weights = [float(w) for w in args.crf_weights.split(",") if w]
    model = wsdeploy.load(args.model, device="cpu")
    k = len(model.card["classes"])

    metrics = {"network": SegmentationMetric(k), "network+scribbles": SegmentationMetric(k)}
    metrics.update({f"proposal_w{w:g}": SegmentationMetric(k) for w in weights})
    energies: dict[str, list[tuple[float, float]]] = {f"proposal_w{w:g}": [] for w in weights}
    times: dict[str, list[float]] = {f"proposal_w{w:g}": [] for w in weights}
    for start in range(0, len(ids), args.batch):
        chunk = ids[start : start + args.batch]
        images = [read_image(root / "images" / f"{i}.png") for i in chunk]  # (H, W, 3) uint8
        segs = model.segment(images, return_probs=True)
        probs = torch.from_numpy(np.stack([s.probs for s in segs])).float()  # (B, K, H, W)
        scribbles = torch.from_numpy(np.stack([read_label_png(root / "scribbles" / f"{i}.png") for i in chunk])).long()
        masks = np.stack([read_label_png(root / "masks" / f"{i}.png") for i in chunk])
        image = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)  # (B, 3, H, W) uint8
        argmax = probs.argmax(1)
        metrics["network"].update(argmax.numpy(), masks)
        seeded = scribbles != 255
        metrics["network+scribbles"].update(torch.where(seeded, scribbles, argmax).numpy(), masks)
        kernel = loss_kernel(image, sigma_rgb=args.sigma_rgb, sigma_xy=args.sigma_xy, scale_factor=args.scale)
        valid = torch.ones(scribbles.shape, dtype=torch.bool)
        small, _, small_valid = downsample(probs, None, valid, args.scale)
        small_scr = F.interpolate(scribbles[:, None].float(), size=small.shape[2:], mode="nearest")[:, 0].long()
        for w in weights:
            name = f"proposal_w{w:g}"
            t0 = time.perf_counter()
            prop = crf_proposals(small, small_scr, kernel, weight=w, iterations=args.iterations, valid=small_valid)
            times[name].append(time.perf_counter() - t0)
            labels = F.interpolate(prop.labels[:, None].float(), size=scribbles.shape[1:], mode="nearest")[:, 0].long()
            labels = torch.where(seeded, scribbles, labels)
            metrics[name].update(labels.numpy(), masks)
            energies[name].append((prop.energy_start, prop.energy_end))
        print(f"{start + len(chunk)}/{len(ids)} images", flush=True)

    rows = []
    for name, metric in metrics.items():
        row = {"name": name, "miou": float(metric.miou()), "pixel_accuracy": float(metric.pixel_accuracy())}
        if name in energies:
            row["energy_start_mean"] = statistics.mean(e[0] for e in energies[name])
            row["energy_end_mean"] = statistics.mean(e[1] for e in energies[name])
            row["batches_lowered"] = sum(e[1] < e[0] for e in energies[name])
            row["batches"] = len(energies[name])
            row["seconds_per_batch"] = statistics.median(times[name])
        rows.append(row)
    results = {
        **results_header(data=args.data),
        "model": {"path": args.model, "sha256": hashlib.sha256(Path(args.model).read_bytes()).hexdigest(),
                  "training_command": model.card["training"].get("command"),
                  "val_miou": model.card["evaluation"].get("miou")},
        "split": args.split, "images": len(ids), "batch": args.batch,
        "settings": {"sigma_rgb": args.sigma_rgb, "sigma_xy": args.sigma_xy, "scale": args.scale,
                     "iterations": args.iterations, "threads": args.threads},
        "rows": rows,
    }
    atomic_write_text(args.json, json.dumps(results, indent=2))
    for row in rows:
        extra = (f"  E {row['energy_start_mean']:.4f} -> {row['energy_end_mean']:.4f}, "
                 f"{row['seconds_per_batch']:.2f} s/batch") if "energy_end_mean" in row else ""
        print(f"  {row['name']:>18}: mIoU {row['miou']:.4f}{extra}")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
