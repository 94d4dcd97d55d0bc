"""Dense-CRF post-processing on real street photos: gain or loss on CamVid val.

The CRF's settings are chosen on the tuning split (46 train frames held out), with a model that
never trained on them (the chosen tuning run of `benchmarks/camvid_table.py`, trained on
`tune_train`); the chosen setting is then applied to the bundled model on the 101 val frames,
next to the same model without CRF. Everything at 480x360; void (255) ignored.

    OMP_NUM_THREADS=1 python benchmarks/camvid_crf.py \
        --tune-model runs/camvid_tune/crf_w1.5/model.pt --model wsdeploy/assets/default_model.pt

Writes benchmarks/results/camvid_crf.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scribble_table import dataset_description, results_header

import wsdeploy
from wsdeploy.atomic import atomic_write_text
from wsdeploy.checkpoint import read_checkpoint
from wsdeploy.crf import CRFParams, dense_crf
from wsdeploy.data.datasets import SegmentationDataset
from wsdeploy.metrics import SegmentationMetric

# the library default (Kraehenbuehl's example) and two weaker, shorter-range kernels (3 s per
# candidate and frame at 480x360 on a busy CPU: the grid is small)
CANDIDATES = {
    "default (w 10, sxy 80, srgb 13)": CRFParams(),
    "w 5, sxy 40, srgb 13": CRFParams(bilateral_weight=5.0, bilateral_sigma_xy=40.0),
    "w 3, sxy 40, srgb 20": CRFParams(bilateral_weight=3.0, bilateral_sigma_xy=40.0, bilateral_sigma_rgb=20.0),
}


def score(model_path: str, data: SegmentationDataset, params: dict[str, CRFParams | None]) -> dict[str, dict]:
    """mIoU (and per-class IoU) of `model_path` on `data` with each CRF setting (None = off)."""
    model = wsdeploy.load(model_path, device="cpu")
    k = len(data.classes)
    metrics = {name: SegmentationMetric(k, class_names=data.classes) for name in params}
    seconds = {name: 0.0 for name in params}
    for i in range(len(data)):
        item = data[i]
        probs = torch.from_numpy(model.segment(item["image"], return_probs=True).probs)  # (K, H, W)
        for name, p in params.items():
            t0 = time.perf_counter()
            refined = probs if p is None else dense_crf(torch.from_numpy(item["image"]), probs, **asdict(p))
            seconds[name] += time.perf_counter() - t0
            metrics[name].update(refined.argmax(0).numpy(), item["label"])
    out = {}
    for name, metric in metrics.items():
        summary = metric.summary()
        out[name] = {"miou": summary["miou"], "per_class_iou": summary["per_class_iou"],
                     "crf_s_per_image": round(seconds[name] / len(data), 3),
                     "params": None if params[name] is None else asdict(params[name])}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/camvid", help="scripts/prepare_camvid.py's folder")
    parser.add_argument("--tune-model", required=True, help="a model trained on tune_train only (chooses the CRF)")
    parser.add_argument("--model", default="wsdeploy/assets/default_model.pt", help="the model scored on val")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    parser.add_argument("--json", default="benchmarks/results/camvid_crf.json", help="results file")
    parser.add_argument("--tune-only", action="store_true",
                        help="only the tuning stage; a later run reuses it from --json (same --tune-model, same grid)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tune = SegmentationDataset(args.data, split="tune", labels="masks")
    val = SegmentationDataset(args.data, split="val", labels="masks")
    previous = json.loads(Path(args.json).read_text()) if Path(args.json).is_file() else {}
    grid = {n: asdict(p) for n, p in CANDIDATES.items()}
    old = previous.get("tuning", {})
    if previous.get("tune_model") == args.tune_model and {n: r["params"] for n, r in old.get("rows", {}).items() if r["params"]} == grid:
        tuning = old["rows"]
        print(f"reusing the tuning stage from {args.json}")
    else:
        tuning = score(args.tune_model, tune, {"no CRF": None, **CANDIDATES})
    chosen = max(CANDIDATES, key=lambda n: tuning[n]["miou"])
    print(f"tune ({len(tune)} frames): " + ", ".join(f"{n}: {r['miou']:.4f}" for n, r in tuning.items()), flush=True)
    if args.tune_only:
        val_rows, gain = None, None
    else:
        val_rows = score(args.model, val, {"no CRF": None, chosen: CANDIDATES[chosen]})
        gain = val_rows[chosen]["miou"] - val_rows["no CRF"]["miou"]
    results = {
        **results_header(data=dataset_description(args.data).get("source")),  # provenance hashes the real folder, not the links
        "threads": args.threads,
        "dataset": dataset_description(args.data),
        "tune_model": args.tune_model,
        "tune_model_command": read_checkpoint(args.tune_model)[0].training.get("command"),
        "model": args.model,
        "tuning": {"split": "tune", "frames": len(tune), "rows": tuning, "chosen": chosen},
        "val": {"split": "val", "frames": len(val), "rows": val_rows, "gain": gain},
    }
    atomic_write_text(args.json, json.dumps(results, indent=2))
    if val_rows is None:
        print(f"wrote {args.json} (tuning stage only)")
        return 0
    print(f"val ({len(val)} frames): no CRF {val_rows['no CRF']['miou']:.4f}, "
          f"CRF [{chosen}] {val_rows[chosen]['miou']:.4f} ({gain:+.4f})")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
