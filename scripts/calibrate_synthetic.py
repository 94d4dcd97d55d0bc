"""Calibrate the synthetic benchmark: the same model, trained at the same budget, once on full
masks and once with partial cross-entropy on the scribbles alone, evaluated on the val masks.

The benchmark is useful only if full supervision beats scribbles-only pCE by a clear margin
(target >= 5 mIoU points) and neither is near 100%. Results go to
``benchmarks/results/synthetic_calibration.json`` with machine, versions and command.

    python scripts/calibrate_synthetic.py                      # the reference calibration
    python scripts/calibrate_synthetic.py --steps 50 --num-train 64 --num-val 16   # smoke test

``fit`` and ``evaluate`` are reusable (``from calibrate_synthetic import fit, evaluate``):
``fit`` takes a ``loss_fn(logits, labels, rgb)`` so regularised losses plug into the same loop.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

import wsdeploy
from wsdeploy.data.image_io import normalize, read_image, read_label_png
from wsdeploy.data.layouts import index_dataset
from wsdeploy.data.synthetic import generate_dataset
from wsdeploy.models import build_model

REPO = Path(__file__).resolve().parents[1]
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def load_split(root: Path, split: str, labels: str) -> tuple[np.ndarray, np.ndarray]:
    """Read a split into memory.

    Returns:
        images (N, H, W, 3) uint8 RGB and labels (N, H, W) uint8 (255 = ignore) from
        ``masks/`` (labels="masks") or ``scribbles/`` (labels="scribbles").
    """
    index = index_dataset(root, split=split, layout="folder")
    paths = [s.mask if labels == "masks" else s.scribble for s in index.samples]
    if any(p is None for p in paths):
        raise ValueError(f"{root}: some {split} images have no {labels}/ file")
    images = np.stack([read_image(s.image) for s in index.samples])
    return images, np.stack([read_label_png(p) for p in paths])


def partial_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over labelled pixels only: logits (B, K, H, W), labels (B, H, W) int64 with
    255 = unlabelled; ``rgb`` is unused. With dense masks this is plain cross-entropy."""
    return F.cross_entropy(logits, labels, ignore_index=255)


def _batch(images: np.ndarray, labels: np.ndarray, rng: np.random.Generator, batch_size: int, crop: int | None):
    """Random batch with horizontal flips and random crops: (B, h, w, 3) uint8, (B, h, w) uint8."""
    pick = rng.integers(0, len(images), size=batch_size)
    h, w = images.shape[1:3]
    ch, cw = (crop, crop) if crop else (h, w)
    xs, ys = [], []
    for i in pick:
        y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        img, lab = images[i, y0 : y0 + ch, x0 : x0 + cw], labels[i, y0 : y0 + ch, x0 : x0 + cw]
        if rng.random() < 0.5:
            img, lab = img[:, ::-1], lab[:, ::-1]
        xs.append(img)
        ys.append(lab)
    return np.ascontiguousarray(np.stack(xs)), np.ascontiguousarray(np.stack(ys))


def fit(
    model: torch.nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    steps: int,
    batch_size: int = 8,
    lr: float = 3e-3,
    weight_decay: float = 1e-4,
    crop: int | None = None,
    seed: int = 0,
    loss_fn: LossFn = partial_cross_entropy,
    log_every: int = 50,
    callback: Callable[[int], None] | None = None,
) -> dict:
    """Train ``model`` in place: AdamW, poly learning-rate decay (power 0.9), random flips/crops.

    Args:
        model: segmentation model, ``forward(x (B, 3, h, w)) -> (B, K, h/s, w/s)``.
        images: (N, H, W, 3) uint8 RGB. labels: (N, H, W) uint8, 255 = unlabelled.
        steps: optimiser steps (the budget). crop: square crop side or None (whole images).
        loss_fn: ``loss_fn(logits (B, K, h, w) upsampled to the labels, labels (B, h, w) int64,
            rgb (B, 3, h, w) float32 in [0, 255]) -> scalar``.
        callback: called as ``callback(step)`` after every step (e.g. periodic evaluation;
            it must put the model back in train mode if it changes it).

    Returns:
        ``{"steps", "step_time_s" (median), "wall_s", "final_loss"}``.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda s: (1 - s / steps) ** 0.9)
    model.train()
    times, losses, start = [], [], time.perf_counter()
    for step in range(1, steps + 1):
        t0 = time.perf_counter()
        x, y = _batch(images, labels, rng, batch_size, crop)
        rgb = torch.from_numpy(x).permute(0, 3, 1, 2).float()  # (B, 3, h, w) 0..255
        target = torch.from_numpy(y).long()  # (B, h, w)
        logits = model(normalize(x))  # (B, K, h/s, w/s)
        logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
        loss = loss_fn(logits, target, rgb)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        times.append(time.perf_counter() - t0)
        losses.append(loss.item())
        if callback is not None:
            callback(step)
        if log_every and (step % log_every == 0 or step == steps):
            print(f"  step {step}/{steps} loss {np.mean(losses[-log_every:]):.4f} "
                  f"{np.median(times[-log_every:]):.3f}s/step", flush=True)
    return {
        "steps": steps,
        "step_time_s": round(float(np.median(times)), 4),
        "wall_s": round(time.perf_counter() - start, 1),
        "final_loss": round(float(np.mean(losses[-max(1, log_every):])), 4),
    }


@torch.no_grad()
def evaluate(model: torch.nn.Module, images: np.ndarray, masks: np.ndarray, *, num_classes: int, batch_size: int = 16) -> dict:
    """Mean IoU over classes on dense masks.

    Args:
        images: (N, H, W, 3) uint8 RGB, H and W multiples of ``model.input_multiple``.
        masks: (N, H, W) uint8 class indices, 255 = ignore.

    Returns:
        ``{"miou", "per_class_iou" (None for a class absent from both labels and predictions),
        "pixel_accuracy"}``, IoUs in percent.
    """
    model.eval()
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    for i in range(0, len(images), batch_size):
        x = normalize(images[i : i + batch_size])
        y = torch.from_numpy(masks[i : i + batch_size]).long()
        logits = F.interpolate(model(x), size=y.shape[-2:], mode="bilinear", align_corners=False)
        pred = logits.argmax(1)
        valid = y != 255
        confusion += torch.bincount(y[valid] * num_classes + pred[valid], minlength=num_classes**2).view(num_classes, num_classes)
    tp = confusion.diag().double()
    union = confusion.sum(0).double() + confusion.sum(1).double() - tp
    iou = [float(100 * t / u) if u > 0 else None for t, u in zip(tp, union, strict=True)]
    present = [v for v in iou if v is not None]
    return {
        "miou": round(float(np.mean(present)), 2),
        "per_class_iou": [None if v is None else round(v, 2) for v in iou],
        "pixel_accuracy": round(float(100 * tp.sum() / confusion.sum()), 2),
    }


def _machine() -> dict:
    cpu = platform.processor()
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"platform": platform.platform(), "cpu": cpu, "cores": len(os.sched_getaffinity(0)),
            "torch_threads": torch.get_num_threads(), "load_avg_start": list(os.getloadavg())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=Path("/tmp/wsdeploy_calibration"), help="dataset folder (generated if it has no dataset.json)")
    p.add_argument("--size", type=int, default=128, help="image side in pixels")
    p.add_argument("--num-train", type=int, default=640, help="training images")
    p.add_argument("--num-val", type=int, default=160, help="validation images")
    p.add_argument("--seed", type=int, default=0, help="dataset seed (training uses seed 0)")
    p.add_argument("--model", default="deeplabv3plus_resnet18", help="wsdeploy.models name")
    p.add_argument("--width", type=int, default=16, help="backbone base width")
    p.add_argument("--steps", type=int, default=3000, help="optimiser steps per run (the reference budget)")
    p.add_argument("--batch-size", type=int, default=8, help="images per step")
    p.add_argument("--lr", type=float, default=3e-3, help="AdamW peak learning rate")
    p.add_argument("--crop", type=int, default=None, help="random square crop side (default: whole images)")
    p.add_argument("--runs", default="full,pce", help="comma list of runs: full (masks), pce (scribbles)")
    p.add_argument("--eval-every", type=int, default=1000, help="also evaluate every N steps (0 = only at the end)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (1: on a shared 2-core CPU, 2 spinning OpenMP threads were 10x slower)")
    p.add_argument("--out", default=str(REPO / "benchmarks/results/synthetic_calibration.json"), help="result JSON ('' = none)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(1)

    total = args.num_train + args.num_val
    if not (args.data / "dataset.json").is_file():
        print(f"generating {total} images at {args.size}px into {args.data}", flush=True)
        t0 = time.perf_counter()
        generate_dataset(args.data, num_images=total, seed=args.seed, val_fraction=args.num_val / total,
                         size=args.size, overwrite=True, command="scripts/calibrate_synthetic.py")
        print(f"  {time.perf_counter() - t0:.1f}s", flush=True)
    manifest = json.loads((args.data / "dataset.json").read_text())
    classes = manifest["classes"]
    val_images, val_masks = load_split(args.data, "val", "masks")
    machine = _machine()

    runs = []
    for name in args.runs.split(","):
        images, labels = load_split(args.data, "train", {"full": "masks", "pce": "scribbles"}[name])
        model = build_model(args.model, num_classes=len(classes), output_stride=16, width=args.width)
        print(f"run {name}: {len(images)} images, {float((labels != 255).mean()):.4f} labelled", flush=True)
        curve = []

        def checkpoint(step: int, model=model, curve=curve, name=name) -> None:  # mIoU along the way
            if args.eval_every and step % args.eval_every == 0 and step < args.steps:
                curve.append([step, evaluate(model, val_images, val_masks, num_classes=len(classes))["miou"]])
                model.train()
                print(f"  {name} step {step}: val mIoU {curve[-1][1]:.2f}", flush=True)

        stats = fit(model, images, labels, steps=args.steps, batch_size=args.batch_size, lr=args.lr, crop=args.crop,
                    callback=checkpoint)
        result = evaluate(model, val_images, val_masks, num_classes=len(classes))
        curve.append([args.steps, result["miou"]])
        print(f"  {name}: mIoU {result['miou']:.2f}  per class {result['per_class_iou']}", flush=True)
        result["per_class_iou"] = dict(zip(classes, result["per_class_iou"], strict=True))
        runs.append({"name": name, **result, **stats, "miou_curve": curve})
    machine["load_avg_end"] = list(os.getloadavg())

    report = {
        "machine": machine,
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
                     "opencv": cv2.__version__, "wsdeploy": wsdeploy.__version__},
        "command": "python " + " ".join([os.path.relpath(sys.argv[0], REPO)] + (argv if argv is not None else sys.argv[1:])),
        "dataset": {"generator_version": manifest["generator_version"], "seed": manifest["seed"],
                    "size": manifest["config"]["size"], "num_train": manifest["num_train"],
                    "num_val": manifest["num_val"], "classes": classes,
                    "scribble_coverage": manifest["stats"]["scribble_coverage"], "config": manifest["config"]},
        "training": {"model": args.model, "width": args.width, "output_stride": 16, "batch_size": args.batch_size,
                     "lr": args.lr, "optimiser": "AdamW wd 1e-4, poly 0.9", "crop": args.crop,
                     "augmentation": "random horizontal flip" + (", random crop" if args.crop else "")},
        "runs": runs,
        "notes": "CPU shared with other jobs: wall_s and step_time_s depend on the load (load_avg_*); "
                 "the budget is the step count. miou_curve: [step, val mIoU] during the run.",
    }
    if {"full", "pce"} <= {r["name"] for r in runs}:
        miou = {r["name"]: r["miou"] for r in runs}
        report["gap_miou"] = round(miou["full"] - miou["pce"], 2)
        print(f"full - pCE = {report['gap_miou']:.2f} mIoU points", flush=True)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
