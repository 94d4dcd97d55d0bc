"""Scribbles -> mask on the GrabCut-13 photographs: `wsdeploy.training.annotate` against OpenCV
GrabCut and pydensecrf, side by side in one run, on both scribble sets.

Score: foreground IoU per image, |pred == 1 & gt == 1| / |pred == 1 | gt == 1| over the
pixels whose ground truth is not 255 (the dataset's unknown band), averaged over the images
("miou" in the JSON). Time: wall time per image of each method alone (reading files
excluded), median over the images of both sets.

Methods, all seeded by the same scribbles (0 background, 1 foreground, 255 unlabelled):
- ours: `annotate` with its defaults (`AnnotateConfig()`), and an ablation at the same steps:
  pCE alone (the previous default), ours without the colour loss, without the scribbled-region
  filter, ours + each regularizer, and ours without the final dense CRF;
- GrabCut: `cv2.grabCut`, mask initialisation (scribbles GC_BGD / GC_FGD, the rest
  GC_PR_BGD), 5 iterations;
- pydensecrf: `unary_from_labels(gt_prob=0.9, zero_unsure=True)` from the scribbles, the
  library's default kernels (`CRFParams`), 10 mean-field iterations.

    python benchmarks/annotate.py                       # full run, writes the JSON and figure
    python benchmarks/annotate.py --images 2 --steps 10 --size 64 --no-ablation --out /tmp/a.json --figure ''

Writes benchmarks/results/annotate_grabcut13.json and docs/annotate_grabcut13.png.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import torch

from wsdeploy.atomic import atomic_write_text
from wsdeploy.crf import CRFParams
from wsdeploy.data.image_io import read_image, read_label_png, write_image
from wsdeploy.environment import library_versions, machine_info
from wsdeploy.training import AnnotateConfig
from wsdeploy.training.annotate.image import annotate

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "grabcut13"
SETS = {"scribbles": "scribbles", "scribbles_dense": "scribbles-dense"}
FIGURE_IMAGES = ("llama", "flower", "teddy", "bush")
METRIC = ("foreground IoU per image: |pred==1 & gt==1| / |pred==1 | gt==1| over pixels with gt != 255, "
          "averaged over the images (miou); time: wall seconds per image, median over both scribble sets")

Method = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (image, scribbles) -> (H, W) labels


def foreground_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """IoU of class 1, ignoring gt == 255; 1.0 when both are empty."""
    valid = gt != 255
    p, g = (pred == 1) & valid, (gt == 1) & valid
    union = int((p | g).sum())
    return float((p & g).sum()) / union if union else 1.0


def grabcut(image: np.ndarray, scribbles: np.ndarray) -> np.ndarray:
    mask = np.full(scribbles.shape, cv2.GC_PR_BGD, np.uint8)
    mask[scribbles == 0] = cv2.GC_BGD
    mask[scribbles == 1] = cv2.GC_FGD
    bgd, fgd = np.zeros((1, 65)), np.zeros((1, 65))
    cv2.grabCut(np.ascontiguousarray(image[:, :, ::-1]), mask, None, bgd, fgd, 5, cv2.GC_INIT_WITH_MASK)
    return ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.uint8)


def pydensecrf(image: np.ndarray, scribbles: np.ndarray) -> np.ndarray:
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import unary_from_labels

    p = CRFParams()
    h, w = scribbles.shape
    labels = np.where(scribbles == 255, 0, scribbles.astype(np.int32) + 1)  # 0 = unsure
    crf = dcrf.DenseCRF2D(w, h, 2)
    crf.setUnaryEnergy(np.ascontiguousarray(unary_from_labels(labels, 2, gt_prob=0.9, zero_unsure=True)))
    crf.addPairwiseGaussian(sxy=p.gaussian_sigma_xy, compat=p.gaussian_weight)
    crf.addPairwiseBilateral(sxy=p.bilateral_sigma_xy, srgb=p.bilateral_sigma_rgb,
                             rgbim=np.ascontiguousarray(image), compat=p.bilateral_weight)
    return np.asarray(crf.inference(p.iterations)).reshape(2, h, w).argmax(0).astype(np.uint8)


def ours(config: AnnotateConfig) -> Method:
    return lambda image, scribbles: annotate(image, scribbles, num_classes=2, config=config).labels


def methods(config: AnnotateConfig, *, ablation: bool) -> dict[str, Method]:
    """Name -> method. The ablation keeps the steps: pCE alone (no colour loss, no region
    filter: the previous default), ours without each of those two, ours plus each regularizer at
    the library's suggested weight (crf 0.25, potts 0.25, ncut 0.1, entropy 0.1), and ours
    without the final dense CRF."""
    table: dict[str, Method] = {"ours": ours(config)}
    if ablation:
        table["ours: pCE only (no colour loss, no region filter)"] = ours(
            replace(config, colour_loss=0.0, keep_scribbled_regions=False))
        table["ours: no colour loss"] = ours(replace(config, colour_loss=0.0))
        table["ours: no scribbled-region filter"] = ours(replace(config, keep_scribbled_regions=False))
        table["ours: + dense CRF loss"] = ours(replace(config, crf_weight=0.25))
        table["ours: + grid Potts"] = ours(replace(config, potts_weight=0.25))
        table["ours: + normalized cut"] = ours(replace(config, ncut_weight=0.1))
        table["ours: + entropy"] = ours(replace(config, entropy_weight=0.1))
        table["ours: no final dense CRF"] = ours(replace(config, crf_iterations=0))
    table["OpenCV GrabCut (5 iterations, mask init)"] = grabcut
    table["pydensecrf, unary from scribbles (10 iterations)"] = pydensecrf
    return table


def load(data: Path, names: list[str]) -> dict[str, dict[str, np.ndarray]]:
    out = {}
    for name in names:
        sample = {"image": read_image(data / "images" / f"{name}.jpg"), "gt": read_label_png(data / "masks" / f"{name}.png")}
        for key, folder in SETS.items():
            sample[key] = read_label_png(data / folder / f"{name}.png")
        out[name] = sample
    return out


def evaluate(table: dict[str, Method], samples: dict[str, dict[str, np.ndarray]]) -> tuple[list[dict], dict]:
    """Run every method on every image of both sets; returns the JSON rows and the labels of
    ours and GrabCut on the `scribbles` set (for the figure)."""
    rows, kept = [], {}
    for name, method in table.items():
        row: dict = {"name": name}
        times = []
        for key in SETS:
            per_image = {}
            for image_id, s in samples.items():
                t0 = time.perf_counter()
                labels = method(s["image"], s[key])
                times.append(time.perf_counter() - t0)
                per_image[image_id] = round(foreground_iou(labels, s["gt"]), 4)
                if key == "scribbles" and name in ("ours", "OpenCV GrabCut (5 iterations, mask init)"):
                    kept[(name, image_id)] = labels
            row[key] = {"miou": round(float(np.mean(list(per_image.values()))), 4), "per_image": per_image}
        row["median_s_per_image"] = round(statistics.median(times), 3)
        row["loadavg_1m_after"] = round(os.getloadavg()[0], 2)
        print(f"{name:52s} {row['scribbles']['miou']:.3f} {row['scribbles_dense']['miou']:.3f} "
              f"{row['median_s_per_image']:.2f} s/img  load {row['loadavg_1m_after']}", flush=True)
        rows.append(row)
    return rows, kept


def figure(samples: dict, kept: dict, path: Path, names: list[str]) -> None:
    """Rows: images; columns: photo, scribbles, ours, GrabCut, ground truth (220x200 boxes)."""
    colours = {0: (40, 40, 160), 1: (250, 200, 40), 255: (128, 128, 128)}

    def paint(labels: np.ndarray) -> np.ndarray:
        out = np.zeros((*labels.shape, 3), np.uint8)
        for value, colour in colours.items():
            out[labels == value] = colour
        return out

    def scribbled(image: np.ndarray, scribbles: np.ndarray) -> np.ndarray:
        out = (image * 0.6).astype(np.uint8)
        kernel = np.ones((5, 5), np.uint8)
        for value, colour in ((0, (60, 120, 255)), (1, (255, 60, 60))):
            out[cv2.dilate((scribbles == value).astype(np.uint8), kernel) > 0] = colour
        return out

    box_w, box_h = 220, 200

    def boxed(tile: np.ndarray) -> np.ndarray:
        """Fit into box_w x box_h keeping the aspect ratio, pad white, 2 px margin."""
        h, w = tile.shape[:2]
        scale = min(box_w / w, box_h / h)
        tile = cv2.resize(tile, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_NEAREST)
        out = np.full((box_h + 4, box_w + 4, 3), 255, np.uint8)
        y, x = (box_h + 4 - tile.shape[0]) // 2, (box_w + 4 - tile.shape[1]) // 2
        out[y : y + tile.shape[0], x : x + tile.shape[1]] = tile
        return out

    gc_name = "OpenCV GrabCut (5 iterations, mask init)"
    rows = []
    for name in names:
        s = samples[name]
        ours_tile, gc_tile = paint(kept[("ours", name)]), paint(kept[(gc_name, name)])
        for tile, method in ((ours_tile, "ours"), (gc_tile, gc_name)):
            text = f"IoU {foreground_iou(kept[(method, name)], s['gt']):.3f}"
            size = tile.shape[0] / 400  # about 0.6 after boxing
            cv2.putText(tile, text, (8, round(40 * size)), cv2.FONT_HERSHEY_SIMPLEX, 1.2 * size,
                        (255, 255, 255), max(1, round(3 * size)))
        tiles = [boxed(t) for t in (s["image"], scribbled(s["image"], s["scribbles"]), ours_tile, gc_tile,
                                    paint(s["gt"]))]
        rows.append(np.concatenate(tiles, 1))
    header = np.full((28, rows[0].shape[1], 3), 255, np.uint8)
    for i, title in enumerate(("photo", "scribbles (set 1)", "ours", "GrabCut", "ground truth")):
        cv2.putText(header, title, (i * (box_w + 4) + 8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1)
    write_image(path, np.concatenate([header, *rows], 0))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help="the GrabCut-13 folder")
    parser.add_argument("--images", type=int, default=None, help="use only the first N images (smoke test)")
    parser.add_argument("--steps", type=int, default=None, help="override AnnotateConfig.steps (smoke test)")
    parser.add_argument("--size", type=int, default=None, help="override AnnotateConfig.size (smoke test)")
    parser.add_argument("--no-ablation", action="store_true", help="run only ours and the two baselines")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on the shared 2-core machine, 2 threads stalled "
                             "each other under load; pydensecrf and GrabCut are single-threaded too)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "annotate_grabcut13.json")
    parser.add_argument("--figure", default=str(ROOT / "docs" / "annotate_grabcut13.png"),
                        help="figure PNG path ('' for none)")
    args = parser.parse_args(argv)
    args.command = " ".join(["python benchmarks/annotate.py", *(sys.argv[1:] if argv is None else argv)])
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _run(args)
    finally:
        torch.set_num_threads(threads)


def _run(args: argparse.Namespace) -> int:
    names = (args.data / "names.txt").read_text().split()[: args.images]
    samples = load(args.data, names)
    overrides = {"steps": args.steps, "size": args.size}
    config = AnnotateConfig(**{k: v for k, v in overrides.items() if v is not None})
    load_before = os.getloadavg()
    rows, kept = evaluate(methods(config, ablation=not args.no_ablation), samples)
    result = {
        "benchmark": "annotate_grabcut13",
        "command": args.command,
        "metric": METRIC,
        "images": names,
        "config": config.as_dict(),
        "machine": machine_info() | {"loadavg_before": [round(v, 2) for v in load_before],
                                      "loadavg_after": [round(v, 2) for v in os.getloadavg()]},
        "versions": library_versions(("pydensecrf2",)),
        "methods": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    if args.figure:
        figure(samples, kept, Path(args.figure), [n for n in FIGURE_IMAGES if n in samples] or names[:4])
    print(f"wrote {args.out}" + (f" and {args.figure}" if args.figure else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
