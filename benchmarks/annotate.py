"""Scribbles -> mask on a folder of photographs (GrabCut-13, GrabCut-12, or any folder in their
layout): `wsdeploy.training.annotate`'s methods against OpenCV GrabCut and pydensecrf, all
re-run in the same process, on both scribble sets.

Layout: `images/NAME.jpg`, `masks/NAME.png` (0 background, 1 foreground, 255 ignored),
`scribbles/NAME.png` and `scribbles-dense/NAME.png` (0, 1, 255 unlabelled), and a names file
(default `names.txt` in the folder).

Score: foreground IoU per image, |pred == 1 & gt == 1| / |pred == 1 | gt == 1| over the
pixels whose ground truth is not 255, averaged over the images ("miou"). Time: wall and CPU
(process) seconds per image of each method alone, reading files excluded; the CPU seconds are
the cost at 1 thread whatever else the machine runs.

Methods (`--methods`, comma-separated group names):
- `grid`: the graph cut (`AnnotateConfig(method="graphcut")`) over the candidate grid of
  `GRID` (deterministic: one run each); benchmarks/annotate_protocol.py picks one on one
  folder and reports it on the other;
- `network`: the per-image network, the previous default (`AnnotateConfig(method="network")`),
  seeds `--seeds`; `network+cut`: the graph cut with that network's -w log p as a unary
  (w in `NETWORK_WEIGHTS`, same seeds, the network fitted once per seed and image);
- `baselines`: OpenCV GrabCut (mask init: strokes GC_BGD / GC_FGD, the rest GC_PR_BGD, 5
  iterations; its GMM start is OpenCV's k-means++, so seeds 0, 1, 2 via cv2.setRNGSeed) and pydensecrf (`unary_from_labels(gt_prob=0.9, zero_unsure=True)`, the
  library's default kernels, 10 mean-field iterations).

Rows already in `--out` with the same settings are kept (a rerun adds only what is missing;
`--retime` also re-runs the kept rows of the planned groups that were timed cold). Before any
timing, one untimed call of each planned kind on a small synthetic image pays the lazy imports
(PyMaxflow, scipy's csgraph, ...; ~1.2 CPU-s), which rows timed before this landed on the first
photo of the process's first row (`"timing": "warm"` marks the rows timed after it).

    python benchmarks/annotate.py --data ../shared/data/grabcut13 --out benchmarks/results/annotate_grabcut13.json
    python benchmarks/annotate.py --data ../shared/data/grabcut12 --out benchmarks/results/annotate_grabcut12.json
    python benchmarks/annotate.py --images 1 --methods baselines,grid --grid 50:5 --out /tmp/a.json   # smoke
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scribble_table import results_header
from wsdeploy.atomic import atomic_write_text
from wsdeploy.crf import CRFParams
from wsdeploy.data.image_io import read_image, read_label_png
from wsdeploy.environment import library_versions, machine_info
from wsdeploy.training import AnnotateConfig
from wsdeploy.training.annotate.image import annotate
from wsdeploy.training.annotate.graphcut import graph_cut

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "grabcut13"
SETS = {"scribbles": "scribbles", "scribbles_dense": "scribbles-dense"}
METRIC = ("foreground IoU per image: |pred==1 & gt==1| / |pred==1 | gt==1| over pixels with gt != 255, "
          "averaged over the images (miou); time: wall and CPU seconds per image, median over both sets")
GRABCUT = "OpenCV GrabCut (5 iterations, mask init)"
DENSECRF = "pydensecrf, unary from scribbles (10 iterations)"
# the candidates the protocol chooses among: Potts weight x geodesic prior weight, then (issue 15,
# second round) one lever of OpenCV's GrabCut at a time from the default (100, 5): a finer working
# grid (cut_size 240, 320), GrabCut's own first background model on every unlabelled pixel at its
# gamma 50 (cut_init="background"), refits and cuts at the photo's own size (cut_full_iterations)
# the third round's default, which rounds 4-6 start from
THIRD_ROUND_DEFAULT = {"cut_gamma": 100.0, "cut_geodesic_weight": 10.0, "cut_size": 240,
                       "cut_geodesic_likelihood": 100.0, "cut_geodesic_colour": 1.0}
GRID = [{"cut_gamma": g, "cut_geodesic_weight": w} for g, w in ((50.0, 0.0), (50.0, 5.0), (50.0, 10.0), (50.0, 20.0),
                                                                   (100.0, 5.0), (100.0, 20.0))] + [
    {"cut_gamma": g, "cut_geodesic_weight": 5.0, **extra} for g, extra in (
        (100.0, {"cut_size": 240}), (100.0, {"cut_size": 320}), (50.0, {"cut_init": "background"}),
        (100.0, {"cut_full_iterations": 3}))] + [
    # third round: the geodesic paths also (or only) pay for changes of the strokes' colour
    # posterior (cut_geodesic_likelihood, Bai & Sapiro's metric), from the 240-px default
    {"cut_gamma": 100.0, "cut_geodesic_weight": w, "cut_size": 240, "cut_geodesic_likelihood": lik,
     "cut_geodesic_colour": c} for w, lik, c in ((5.0, 100.0, 0.0), (5.0, 100.0, 0.25), (5.0, 100.0, 1.0),
                                                 (5.0, 300.0, 1.0), (10.0, 100.0, 1.0))] + [
    # fourth round (issue 15, the dense gap): Gaussians per class of the colour models, 3 or 8
    # against the default's 5, from the third-round default
    {**THIRD_ROUND_DEFAULT, "cut_components": m} for m in (8, 3)] + [
    # fifth round (issue 15, the dense gap is GC-12's 69020, where the colour refits drift until
    # both models are alike): the strokes' own colour posterior as a fixed unary (weight w) with
    # each class's likelihood floored at e^f, from the third-round default; f = -40 is no floor
    {**THIRD_ROUND_DEFAULT, "cut_stroke_unary": w, "cut_stroke_floor": f}
    for w, f in ((1.0, -13.0), (1.0, -15.0), (2.0, -13.0), (0.5, -13.0), (1.0, -40.0))] + [
    # sixth round: the fifth round's two best stroke terms with 8 Gaussians per class (the
    # fourth round's pick, whose 2.3-2.5 CPU-s maxima were the process's first call)
    {**THIRD_ROUND_DEFAULT, "cut_components": 8, "cut_stroke_unary": 1.0, "cut_stroke_floor": f}
    for f in (-15.0, -13.0)]
# what a candidate does not name stays at the first round's settings, whatever annotate's defaults
GRID_BASE = {"cut_size": 160, "cut_geodesic_likelihood": 0.0, "cut_components": 5}
NETWORK_WEIGHTS = (1.0, 5.0)
# the graph cut under the network's unary, as measured (the network row does not read cut_*;
# pinned so that a change of annotate's defaults does not re-run the 6-s-per-photo network rows)
NETWORK_CUT = {"cut_size": 160, "cut_gamma": 50.0, "cut_geodesic_weight": 5.0, "cut_geodesic_likelihood": 0.0,
               "cut_components": 5}
# fields added to AnnotateConfig after rows were stored: the value that runs the code those rows
# ran (a row without the field ran with it off, whatever its default is now)
ADDED_OFF = {"cut_geodesic_likelihood": 0.0, "cut_stroke_unary": 0.0}

Method = Callable[[np.ndarray, np.ndarray, int], np.ndarray]  # (image, scribbles, seed) -> labels


def foreground_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """IoU of class 1, ignoring gt == 255; 1.0 when both are empty."""
    valid = gt != 255
    p, g = (pred == 1) & valid, (gt == 1) & valid
    union = int((p | g).sum())
    return float((p & g).sum()) / union if union else 1.0


def grabcut(image: np.ndarray, scribbles: np.ndarray, seed: int = 0) -> np.ndarray:
    mask = np.full(scribbles.shape, cv2.GC_PR_BGD, np.uint8)
    mask[scribbles == 0] = cv2.GC_BGD
    mask[scribbles == 1] = cv2.GC_FGD
    bgd, fgd = np.zeros((1, 65)), np.zeros((1, 65))
    cv2.setRNGSeed(seed)
    cv2.grabCut(np.ascontiguousarray(image[:, :, ::-1]), mask, None, bgd, fgd, 5, cv2.GC_INIT_WITH_MASK)
    return ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.uint8)


def pydensecrf(image: np.ndarray, scribbles: np.ndarray, seed: int = 0) -> np.ndarray:
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
    return lambda image, scribbles, seed: annotate(image, scribbles, num_classes=2, config=config, seed=seed).labels


def grid_name(settings: dict) -> str:
    return "graphcut " + " ".join(f"{k.removeprefix('cut_')}={v:g}" if isinstance(v, (int, float))
                                  else f"{k.removeprefix('cut_')}={v}" for k, v in settings.items())


def parse_grid(text: str) -> list[dict]:
    """'GAMMA:GEODESIC[:field=value...],...' -> candidate settings (fields without 'cut_')."""
    grid = []
    for spec in text.split(","):
        gamma, weight, *extra = spec.split(":")
        settings = {"cut_gamma": float(gamma), "cut_geodesic_weight": float(weight)}
        for item in extra:
            key, _, value = item.partition("=")
            default = getattr(AnnotateConfig(), f"cut_{key}")
            settings[f"cut_{key}"] = type(default)(value)
        grid.append(settings)
    return grid


def same_config(old: dict, new: dict) -> bool:
    """Whether a stored row ran these settings: fields added to AnnotateConfig since the row was
    written must be at their defaults (which reproduce the code the row ran)."""
    defaults = AnnotateConfig().as_dict() | ADDED_OFF
    return all(old[k] == v if k in old else v == defaults[k] for k, v in new.items()) and set(old) <= set(new)


def plan(groups: list[str], seeds: list[int], grid: list[dict] = GRID) -> list[dict]:
    """Rows to run: name, kind, settings, seeds."""
    rows: list[dict] = []
    if "baselines" in groups:
        rows += [{"name": GRABCUT, "kind": "grabcut", "config": {}, "seeds": [0, 1, 2]},  # cv2.kmeans inside
                 {"name": DENSECRF, "kind": "pydensecrf", "config": {}, "seeds": [0]}]
    if "grid" in groups:
        rows += [{"name": grid_name(s), "kind": "graphcut", "config": AnnotateConfig(**(GRID_BASE | s)).as_dict(),
                  "seeds": [0]} for s in grid]
    if "network" in groups:
        rows.append({"name": "network (previous default)", "kind": "network",
                     "config": AnnotateConfig(method="network", **NETWORK_CUT).as_dict(), "seeds": seeds})
    if "network+cut" in groups:
        rows += [{"name": f"graphcut + network unary (weight {w:g})", "kind": "network+cut",
                  "config": AnnotateConfig(cut_network_weight=w, **NETWORK_CUT).as_dict(), "seeds": seeds}
                 for w in NETWORK_WEIGHTS]
    return rows


def warm_up(rows: list[dict]) -> None:
    """One untimed call of each kind in `rows` on a 32 x 48 synthetic photo (the lazy imports)."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
    scribbles = np.full((32, 48), 255, np.uint8)
    scribbles[4:28, 4], scribbles[4:28, 40] = 0, 1
    for kind in dict.fromkeys(r["kind"] for r in rows):
        if kind == "graphcut":
            annotate(image, scribbles, num_classes=2)
        elif kind == "grabcut":
            grabcut(image, scribbles)
        elif kind == "pydensecrf":
            pydensecrf(image, scribbles)


def load(data: Path, names: list[str]) -> dict[str, dict[str, np.ndarray]]:
    out = {}
    for name in names:
        sample = {"image": read_image(data / "images" / f"{name}.jpg"), "gt": read_label_png(data / "masks" / f"{name}.png")}
        for key, folder in SETS.items():
            sample[key] = read_label_png(data / folder / f"{name}.png")
        out[name] = sample
    return out


def _timed(fn: Callable[[], np.ndarray], wall: list[float], cpu: list[float]) -> np.ndarray:
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    wall.append(time.perf_counter() - t0)
    cpu.append(time.process_time() - c0)
    return out


def run_row(row: dict, samples: dict) -> dict:
    """Every image of both sets, every seed of the row: per-seed mIoU, per-image IoU, times."""
    wall: list[float] = []
    cpu: list[float] = []
    out = {"name": row["name"], "kind": row["kind"], "config": row["config"], "seeds": row["seeds"]}
    for key in SETS:
        per_seed = {}
        for seed in row["seeds"]:
            per_image = {}
            for image_id, s in samples.items():
                labels = _run_one(row, s["image"], s[key], seed, wall, cpu)
                per_image[image_id] = round(foreground_iou(labels, s["gt"]), 4)
            per_seed[str(seed)] = {"miou": round(float(np.mean(list(per_image.values()))), 4), "per_image": per_image}
        mious = [v["miou"] for v in per_seed.values()]
        out[key] = {"miou": round(float(np.mean(mious)), 4),
                    "seed_std": round(float(np.std(mious)), 4), "per_seed": per_seed}
    out["median_s_per_image"] = round(statistics.median(wall), 3)
    out["median_cpu_s_per_image"] = round(statistics.median(cpu), 3)
    out["max_cpu_s_per_image"] = round(max(cpu), 3)
    out["loadavg_1m_after"] = round(os.getloadavg()[0], 2)
    out["timing"] = "warm"  # after `warm_up`
    return out


def _run_one(row: dict, image: np.ndarray, scribbles: np.ndarray, seed: int, wall: list, cpu: list) -> np.ndarray:
    kind = row["kind"]
    if kind == "grabcut":
        return _timed(lambda: grabcut(image, scribbles, seed), wall, cpu)
    if kind == "pydensecrf":
        return _timed(lambda: pydensecrf(image, scribbles, seed), wall, cpu)
    config = AnnotateConfig.from_dict(row["config"])
    if kind == "graphcut":
        return _timed(lambda: ours(config)(image, scribbles, seed), wall, cpu)
    labels, probs, net_wall, net_cpu = _network(image, scribbles, seed, config)
    if kind == "network":
        wall.append(net_wall)
        cpu.append(net_cpu)
        return labels
    # network+cut is annotate(..., AnnotateConfig(cut_network_weight=w)): the network's fit is
    # shared with the network row (same settings, image and seed), its time counted in full
    unary = -config.cut_network_weight * np.log(np.clip(probs, 1e-6, 1.0)).astype(np.float64)
    labels = _timed(lambda: graph_cut(image, scribbles, 2, config, extra_unary=unary)[0], wall, cpu)
    wall[-1] += net_wall
    cpu[-1] += net_cpu
    return labels


_NETWORK: dict = {}


def _network(image: np.ndarray, scribbles: np.ndarray, seed: int, config: AnnotateConfig) -> tuple:
    """The network method's (labels, probs, wall s, cpu s), once per image, scribbles and seed."""
    key = (id(image), id(scribbles), seed)
    if key not in _NETWORK:
        network = replace(config, method="network", cut_network_weight=0.0)
        assert network == AnnotateConfig(method="network", **NETWORK_CUT), "network+cut must reuse the network row's fit"
        t0, c0 = time.perf_counter(), time.process_time()
        result = annotate(image, scribbles, num_classes=2, config=network, seed=seed)
        _NETWORK[key] = (result.labels, result.probs, time.perf_counter() - t0, time.process_time() - c0)
    return _NETWORK[key]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help="a folder in the GrabCut-13 layout")
    parser.add_argument("--names", type=Path, default=None, help="image names, one a line (default DATA/names.txt)")
    parser.add_argument("--images", type=int, default=None, help="use only the first N images (smoke test)")
    parser.add_argument("--methods", default="baselines,grid,network,network+cut",
                        help="comma-separated groups: baselines, grid, network, network+cut")
    parser.add_argument("--seeds", default="0,1,2", help="seeds of the stochastic methods (the network)")
    parser.add_argument("--grid", default=None,
                        help="graph-cut candidates as GAMMA:GEODESIC_WEIGHT[:FIELD=VALUE...],... e.g. 100:5:size=240 "
                             "(default: the GRID above)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--retime", action="store_true",
                        help="re-run the planned rows stored without a warm-up (their masks are deterministic "
                             "for the graph cut; this re-measures their time)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "annotate_grabcut13.json")
    args = parser.parse_args(argv)
    command = " ".join(["python benchmarks/annotate.py", *(sys.argv[1:] if argv is None else argv)])
    groups = [g.strip() for g in args.methods.split(",") if g.strip()]
    unknown = sorted(set(groups) - {"grid", "network", "network+cut", "baselines"})
    if unknown:
        parser.error(f"unknown method group(s) {unknown}; choose from grid, network, network+cut, baselines")
    seeds = [int(s) for s in args.seeds.split(",")]
    grid = GRID if args.grid is None else parse_grid(args.grid)
    names_file = args.names or args.data / "names.txt"
    if not names_file.is_file():
        parser.error(f"no names file {names_file}")
    names = names_file.read_text().split()[: args.images]
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(1)
    try:
        return _run(args, command, names, plan(groups, seeds, grid))
    finally:
        torch.set_num_threads(threads)


def _run(args: argparse.Namespace, command: str, names: list[str], rows: list[dict]) -> int:
    samples = load(args.data, names)
    warm_up(rows)
    previous = json.loads(args.out.read_text()) if args.out.is_file() else {}
    done = {r["name"]: r for r in previous.get("methods", [])
            if previous.get("images") == names and "kind" in r}  # rows of this script's format
    result = {
        "benchmark": "annotate",
        "data": str(args.data.resolve().relative_to(ROOT.parent)) if args.data.resolve().is_relative_to(ROOT.parent)
        else str(args.data),
        "commands": sorted(set(previous.get("commands", [])) | {command}) if done else [command],
        "metric": METRIC,
        "images": names,
        "threads": args.threads,
        "machine": machine_info(),
        "versions": library_versions(("pydensecrf2", "PyMaxflow", "scipy")),
        "provenance": results_header()["provenance"],  # git commit, packages, CPU, threads
        "methods": [],
    }
    for row in rows:
        old = done.get(row["name"])
        if (old is not None and same_config(old["config"], row["config"]) and old["seeds"] == row["seeds"]
                and not (args.retime and old.get("timing") != "warm")):
            out = old
        else:
            out = run_row(row, samples)
            if old is not None and old["kind"] == "graphcut" and any(
                    old[s]["per_seed"] != out[s]["per_seed"] for s in SETS):  # deterministic: the same masks
                print(f"note: {row['name']} scores differ from the stored row", flush=True)
                out["stored_before_retime"] = {s: old[s]["miou"] for s in SETS}
            print(f"{row['name']:52s} {out['scribbles']['miou']:.3f} {out['scribbles_dense']['miou']:.3f} "
                  f"{out['median_s_per_image']:.2f} s, {out['median_cpu_s_per_image']:.2f} cpu-s/img  "
                  f"load {out['loadavg_1m_after']}", flush=True)
        result["methods"] = [r for r in result["methods"] if r["name"] != row["name"]] + [out]
        kept = [r for n, r in done.items() if n not in {x["name"] for x in result["methods"]}]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, json.dumps(result | {"methods": result["methods"] + kept}, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
