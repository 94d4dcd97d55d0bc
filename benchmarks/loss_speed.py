"""Forward + backward time of each training loss (wsdeploy.training.losses).

Inputs as the trainer feeds them: logits (B, K, H, W) at the crop's resolution, softmax for the
regularizers, an RGB crop in 0-255 (a smooth random image with blocks of colour), a valid mask
with a padded band, scribble-like targets (3 % labelled). Times are medians over `--repeats`
runs after one warm-up, of `loss(...).backward()` measured from the logits (the softmax is
included). Results go to a JSON file with machine, versions and command.

    python benchmarks/loss_speed.py                           # CPU, B=4, K=6, 256x256
    python benchmarks/loss_speed.py --device cuda --out benchmarks/results/loss_speed_cuda.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from wsdeploy.environment import library_versions, machine_info
from wsdeploy.training import losses as L


def make_inputs(b: int, k: int, size: int, device: torch.device, seed: int = 0):
    """logits (B, K, S, S) float32, image (B, 3, S, S) 0-255, valid (B, S, S), target (B, S, S)."""
    g = torch.Generator().manual_seed(seed)
    image = F.interpolate(torch.rand(b, 3, 8, 8, generator=g) * 255, size=(size, size), mode="nearest")
    image = (image + 10 * torch.randn(b, 3, size, size, generator=g)).clamp(0, 255)
    logits = F.interpolate(4 * torch.randn(b, k, 16, 16, generator=g), size=(size, size), mode="bilinear")
    logits = logits + 0.5 * torch.randn(b, k, size, size, generator=g)
    valid = torch.ones(b, size, size, dtype=torch.bool)
    valid[:, :, -size // 8 :] = False  # padding band, as random crops leave
    target = torch.randint(0, k, (b, size, size), generator=g)
    target = torch.where(torch.rand(b, size, size, generator=g) < 0.03, target, 255)
    target[~valid] = 254
    return [t.to(device) for t in (logits, image, valid, target)]


def loss_functions() -> dict[str, object]:
    """name -> f(logits, image, valid, target) -> scalar, each at its default settings."""
    def regularizer(module):
        return lambda z, img, valid, target: module(z.softmax(1), img, valid)

    return {
        "partial_cross_entropy": lambda z, img, valid, target: L.partial_cross_entropy(z, target),
        "dense_crf_bilinear": regularizer(L.DenseCRFLoss(0.25)),
        "dense_crf_quadratic": regularizer(L.DenseCRFLoss(0.25, relaxation="quadratic")),
        "normalized_cut": regularizer(L.NormalizedCutLoss(0.1)),
        "grid_potts_4_bilinear": regularizer(L.GridPottsLoss(0.25, neighbours=4)),
        "grid_potts_8_bilinear": regularizer(L.GridPottsLoss(0.25, neighbours=8)),
        "grid_potts_8_quadratic": regularizer(L.GridPottsLoss(0.25, neighbours=8, relaxation="quadratic")),
        "entropy": regularizer(L.EntropyLoss(0.1)),
    }


def time_loss(fn, inputs, repeats: int, device: torch.device) -> dict[str, float]:
    logits, image, valid, target = inputs
    times = []
    for i in range(repeats + 1):
        z = logits.detach().clone().requires_grad_(True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn(z, image, valid, target).backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i > 0:  # the first run is a warm-up
            times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "runs": repeats}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--classes", type=int, default=6)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/loss_speed_cpu.json")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    inputs = make_inputs(args.batch, args.classes, args.size, device)
    results = {}
    for name, fn in loss_functions().items():
        results[name] = time_loss(fn, inputs, args.repeats, device)
        print(f"{name:24s} {1000 * results[name]['median_s']:9.1f} ms  (forward + backward)")
    record = {
        "benchmark": "training loss forward + backward",
        "shape": {"batch": args.batch, "classes": args.classes, "height": args.size, "width": args.size},
        "device": str(device),
        "settings": "defaults: dense CRF / ncut sigma_rgb 15, sigma_xy 100, scale_factor 0.5; "
                    "grid Potts sigma_rgb 15",
        "results": results,
        "command": " ".join([Path(sys.executable).name] + sys.argv),
        "machine": machine_info(),
        "versions": library_versions(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
