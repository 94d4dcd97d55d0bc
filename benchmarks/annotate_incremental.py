"""The graph cut's incremental update: the user adds one stroke, `annotate(..., previous=result)`
warm-starts from the previous colour models, pairwise weights and graphs (re-solved by dynamic
max-flow). Timed against a fresh run from the same strokes, on every photograph of the given
folders (`scribbles` set).

Per photograph: the strokes are the 8-connected components of each class's scribbles; the
first call gets all but the last stroke (largest class index, then raster order of the
component's first pixel; a class keeps at least one stroke), the update adds it back. Reported:
wall and CPU seconds of the update and of a fresh run on the full strokes (each alone, 1
thread, reading files excluded), and whether the two masks agree (fraction of equal pixels,
the foreground IoU between them, and the foreground IoU of each against the ground truth).

    OMP_NUM_THREADS=1 python benchmarks/annotate_incremental.py   # writes benchmarks/results/annotate_incremental.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scribble_table import results_header
from wsdeploy.atomic import atomic_write_text
from wsdeploy.data.image_io import read_image, read_label_png
from wsdeploy.environment import library_versions
from wsdeploy.training import AnnotateConfig
from wsdeploy.training.annotate.image import annotate

ROOT = Path(__file__).resolve().parents[1]
DATA = [ROOT.parent / "shared" / "data" / "grabcut13", ROOT.parent / "shared" / "data" / "grabcut12"]


def last_stroke(scribbles: np.ndarray) -> np.ndarray:
    """(H, W) bool: the pixels of the stroke the update adds (see the module docstring)."""
    for c in sorted(set(np.unique(scribbles).tolist()) - {255}, reverse=True):
        n, comp = cv2.connectedComponents((scribbles == c).astype(np.uint8), connectivity=8)
        if n > 2:  # background label 0 plus at least two strokes of class c
            return comp == n - 1
    raise ValueError("no class has two strokes")


def _iou(pred: np.ndarray, gt: np.ndarray) -> float:
    valid = gt != 255
    p, g = (pred == 1) & valid, (gt == 1) & valid
    return float((p & g).sum() / max((p | g).sum(), 1))


def _mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Foreground (label 1) IoU between two masks; 1.0 when both are empty."""
    union = ((a == 1) | (b == 1)).sum()
    return float(((a == 1) & (b == 1)).sum() / union) if union else 1.0


def _timed(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, nargs="+", default=DATA, help="folders in the GrabCut-13 layout")
    parser.add_argument("--images", type=int, default=None, help="first N images of each folder (smoke test)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "annotate_incremental.json")
    args = parser.parse_args(argv)
    command = " ".join(["python benchmarks/annotate_incremental.py", *(sys.argv[1:] if argv is None else argv)])
    cv2.setNumThreads(1)
    torch.set_num_threads(1)  # the graph cut is numpy / PyMaxflow; run with OMP_NUM_THREADS=1 too
    config = AnnotateConfig()
    rows = []
    for folder in args.data:
        for name in (folder / "names.txt").read_text().split()[: args.images]:
            image = read_image(folder / "images" / f"{name}.jpg")
            gt = read_label_png(folder / "masks" / f"{name}.png")
            full = read_label_png(folder / "scribbles" / f"{name}.png")
            added = last_stroke(full)
            first = np.where(added, 255, full).astype(np.uint8)
            before = annotate(image, first, num_classes=2, config=config)
            update, uw, uc = _timed(lambda i=image, s=full, b=before: annotate(i, s, num_classes=2, config=config,
                                                                                previous=b))
            fresh, fw, fc = _timed(lambda i=image, s=full: annotate(i, s, num_classes=2, config=config))
            rows.append({"folder": folder.name, "image": name, "size": list(image.shape[:2]),
                         "stroke_pixels": int(added.sum()),
                         "update_s": round(uw, 3), "update_cpu_s": round(uc, 3), "update_cuts": update.losses["cuts"],
                         "fresh_s": round(fw, 3), "fresh_cpu_s": round(fc, 3), "fresh_cuts": fresh.losses["cuts"],
                         "same_pixels": round(float((update.labels == fresh.labels).mean()), 5),
                         "iou_update_vs_fresh": round(_mask_iou(update.labels, fresh.labels), 5),
                         "iou_update": round(_iou(update.labels, gt), 4), "iou_fresh": round(_iou(fresh.labels, gt), 4)})
            print(json.dumps(rows[-1]), flush=True)
    summary = {key: {"median": round(statistics.median(r[key] for r in rows), 3),
                     "max": round(max(r[key] for r in rows), 3)}
               for key in ("update_s", "update_cpu_s", "fresh_s", "fresh_cpu_s", "same_pixels")}
    summary["same_pixels"]["min"] = min(r["same_pixels"] for r in rows)
    summary["iou_update_vs_fresh"] = {"mean": round(float(np.mean([r["iou_update_vs_fresh"] for r in rows])), 4),
                                      "min": min(r["iou_update_vs_fresh"] for r in rows)}
    summary["identical_masks"] = sum(r["same_pixels"] == 1.0 for r in rows)
    summary["update_cpu_s_at_most_0.5"] = sum(r["update_cpu_s"] <= 0.5 for r in rows)
    summary["photos"] = len(rows)
    summary["mean_iou_update"] = round(float(np.mean([r["iou_update"] for r in rows])), 4)
    summary["mean_iou_fresh"] = round(float(np.mean([r["iou_fresh"] for r in rows])), 4)
    header = results_header()
    result = {"benchmark": "annotate_incremental", "command": command, "config": config.as_dict(), "threads": 1,
              "machine": header["machine"], "versions": library_versions(("PyMaxflow", "scipy")),
              "provenance": header["provenance"], "summary": summary, "photos": rows}
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
