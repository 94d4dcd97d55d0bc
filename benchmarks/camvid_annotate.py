"""Scribbles -> mask, multi-class, on CamVid val frames: `wsdeploy.training.annotate` next to
pydensecrf with the same strokes as its unary.

Each frame is annotated alone from the benchmark's scribbles (one 3-px stroke per region, 11
classes, ~5.6% of the pixels at 480x360), with nothing learned from other images. Score: the
mIoU over the frames (one confusion matrix summed over all of them, void 255 ignored), and the
mean of the per-frame mIoUs. Time per frame: wall seconds and CPU seconds (`time.process_time`,
the process's own CPU, which a loaded machine does not inflate), medians over the frames.

Methods:
- annotate: `wsdeploy.training.annotate(image, scribbles, num_classes=11, config=...)` at
  `--size` (long side of its working resolution) and `--steps`, otherwise its defaults;
- pydensecrf: `unary_from_labels(gt_prob=0.9, zero_unsure=True)` from the scribbles, the
  library's default kernels (`wsdeploy.crf.CRFParams`), 10 mean-field iterations, at 480x360.

    OMP_NUM_THREADS=1 python benchmarks/camvid_annotate.py            # 20 val frames (every 5th)
    python benchmarks/camvid_annotate.py --frames 2 --steps 5 --json /tmp/a.json   # smoke run

Writes benchmarks/results/camvid_annotate.json (--method network) or
benchmarks/results/camvid_annotate_graphcut.json (--method graphcut).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scribble_table import dataset_description, results_header
from wsdeploy.training import AnnotateConfig, annotate

from wsdeploy.atomic import atomic_write_text
from wsdeploy.crf import CRFParams
from wsdeploy.data.datasets import SegmentationDataset
from wsdeploy.metrics import SegmentationMetric


def pydensecrf_from_strokes(image: np.ndarray, scribbles: np.ndarray, num_classes: int) -> np.ndarray:
    """(H, W) labels: pydensecrf with the strokes as unary (unscribbled pixels uniform)."""
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import unary_from_labels

    p = CRFParams()
    h, w = scribbles.shape
    labels = np.where(scribbles == 255, 0, scribbles.astype(np.int32) + 1)  # 0 = unsure
    crf = dcrf.DenseCRF2D(w, h, num_classes)
    crf.setUnaryEnergy(np.ascontiguousarray(unary_from_labels(labels, num_classes, gt_prob=0.9, zero_unsure=True)))
    crf.addPairwiseGaussian(sxy=p.gaussian_sigma_xy, compat=p.gaussian_weight)
    crf.addPairwiseBilateral(sxy=p.bilateral_sigma_xy, srgb=p.bilateral_sigma_rgb,
                             rgbim=np.ascontiguousarray(image), compat=p.bilateral_weight)
    return np.asarray(crf.inference(p.iterations)).reshape(num_classes, h, w).argmax(0).astype(np.uint8)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/camvid", help="CamVid folder (default: data/camvid, made by scripts/prepare_camvid.py)")
    parser.add_argument("--frames", type=int, default=20, help="val frames, evenly spaced (default: 20)")
    parser.add_argument("--steps", type=int, default=100, help="annotate's Adam steps (default: 100)")
    parser.add_argument("--size", type=int, default=160, help="annotate's working long side, px (default: 160)")
    parser.add_argument("--method", default="network", choices=("network", "graphcut"),
                        help="annotate's method (default: network, the default when the committed JSON was "
                             "measured; graphcut, today's default, ignores --steps and --size)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    parser.add_argument("--json", default=None,
                        help="results file (default: benchmarks/results/camvid_annotate.json for the network "
                             "method, benchmarks/results/camvid_annotate_graphcut.json for graphcut)")
    args = parser.parse_args()
    if args.json is None:
        args.json = f"benchmarks/results/camvid_annotate{'_graphcut' if args.method == 'graphcut' else ''}.json"
    torch.set_num_threads(args.threads)
    masks = SegmentationDataset(args.data, split="val", labels="masks")
    strokes = SegmentationDataset(args.data, split="val", labels="scribbles")
    k = len(masks.classes)
    picks = np.linspace(0, len(masks) - 1, args.frames).round().astype(int).tolist()
    config = (AnnotateConfig(method="network", steps=args.steps, size=args.size) if args.method == "network"
              else AnnotateConfig(method="graphcut"))
    methods = {
        (f"annotate (steps {args.steps}, size {args.size})" if args.method == "network" else "annotate (graphcut)"): lambda img, s: annotate(img, s, num_classes=k, config=config).labels,
        "pydensecrf, unary from the strokes (10 iterations)": lambda img, s: pydensecrf_from_strokes(img, s, k),
    }
    # warm-up: the first Adam step imports torch._dynamo (tens of seconds on a busy CPU), which
    # is not the method's time
    annotate(masks[0]["image"], strokes[0]["label"], num_classes=k, config=AnnotateConfig(method="network", steps=1, size=32))
    totals = {name: SegmentationMetric(k, class_names=masks.classes) for name in methods}
    per_frame: dict[str, list[dict]] = {name: [] for name in methods}
    labelled = []
    for i in picks:
        image, gt, scrib = masks[i]["image"], masks[i]["label"], strokes[i]["label"]
        labelled.append(float((scrib != 255).mean()))
        for name, fn in methods.items():
            t0, c0 = time.perf_counter(), time.process_time()
            pred = fn(image, scrib)
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            totals[name].update(pred, gt)
            one = SegmentationMetric(k)
            one.update(pred, gt)
            per_frame[name].append({"id": masks.ids[i], "miou": one.miou(), "time_s": round(dt, 3), "cpu_s": round(dc, 3)})
        print(f"{masks.ids[i]}: " + "  ".join(f"{n.split(',')[0].split(' (')[0]} {per_frame[n][-1]['miou']:.3f}" for n in methods), flush=True)
    rows = []
    for name in methods:
        summary = totals[name].summary()
        rows.append({
            "method": name,
            "miou": summary["miou"],
            "mean_frame_miou": statistics.mean(f["miou"] for f in per_frame[name]),
            "per_class_iou": summary["per_class_iou"],
            "median_time_s": statistics.median(f["time_s"] for f in per_frame[name]),
            "median_cpu_s": statistics.median(f["cpu_s"] for f in per_frame[name]),
            "frames": per_frame[name],
        })
    results = {
        **results_header(),
        "threads": args.threads,
        "dataset": dataset_description(args.data),
        "frames": [masks.ids[i] for i in picks],
        "scribbled_fraction_mean": statistics.mean(labelled),
        "annotate_config": asdict(config),
        "metric": "mIoU over the frames (one confusion matrix, void 255 ignored) at 480x360; "
                  "mean_frame_miou: mean of per-frame mIoUs (classes absent from a frame and its "
                  "prediction left out)",
        "methods": rows,
    }
    atomic_write_text(args.json, json.dumps(results, indent=2))
    print(f"wrote {args.json}")
    for row in rows:
        print(f"  {row['method']:>52}: mIoU {row['miou']:.4f}  mean per frame {row['mean_frame_miou']:.4f}  {row['median_time_s']:.2f} s/frame ({row['median_cpu_s']:.2f} CPU-s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
