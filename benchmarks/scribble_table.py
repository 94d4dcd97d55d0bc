"""The scribble table: full supervision vs partial CE vs pCE + each regularizer, same everything else.

Reproduces the *pattern* of Tang et al. (ECCV 2018, Table 1) on the synthetic benchmark: every run
trains the same model with the same schedule, data and seed; only the labels (full masks or
scribbles) and the losses differ. Each run is a `wsdeploy train` command (recorded verbatim in the
JSON); the val mIoU is the one the trainer writes into the model card.

    python benchmarks/scribble_table.py --data data/synthetic --out-dir runs/scribble_table \
        --json benchmarks/results/scribble_table.json -- --model deeplabv3plus_resnet18 --width 16 ...

Everything after `--` is passed to every `wsdeploy train` run unchanged (model, steps, crop, lr).
"""
from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

from wsdeploy.atomic import atomic_write_text
from wsdeploy.checkpoint import read_checkpoint
from wsdeploy.environment import library_versions, machine_info

RUNS = {  # name -> (supervision, losses)
    "full": ("full", "pce"),
    "pce": ("scribbles", "pce"),
    "pce+crf": ("scribbles", "pce,crf"),
    "pce+entropy": ("scribbles", "pce,entropy"),
    "pce+crf+entropy": ("scribbles", "pce,crf,entropy"),
    "pce+ncut": ("scribbles", "pce,ncut"),
    "pce+potts": ("scribbles", "pce,potts"),
}


def main() -> int:
    argv = sys.argv[1:]
    passthrough: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, passthrough = argv[:i], argv[i + 1 :]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="dataset folder with masks/ and scribbles/")
    parser.add_argument("--out-dir", default="runs/scribble_table", help="one sub-folder per run")
    parser.add_argument("--json", default="benchmarks/results/scribble_table.json", help="results file")
    parser.add_argument("--runs", default=",".join(RUNS), help=f"comma list of runs from {list(RUNS)}")
    args = parser.parse_args(argv)
    names = [n for n in args.runs.split(",") if n]
    unknown = [n for n in names if n not in RUNS]
    if unknown:
        parser.error(f"unknown runs {unknown}; choose from {list(RUNS)}")

    dataset_manifest = Path(args.data) / "dataset.json"
    results = {
        "machine": machine_info(),
        "versions": library_versions(),
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
        "dataset": json.loads(dataset_manifest.read_text()) if dataset_manifest.is_file() else {"path": args.data},
        "runs": [],
    }
    for name in names:
        supervision, losses = RUNS[name]
        out = Path(args.out_dir) / name.replace("+", "_")
        cmd = ["wsdeploy", "train", "--data", args.data, "--supervision", supervision, "--losses", losses,
               "--out-dir", str(out), "--no-progress", *passthrough]
        print(f"[{name}] {' '.join(cmd)}", flush=True)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "wsdeploy", *cmd[1:]], check=True)
        wall = time.perf_counter() - t0
        card, _ = read_checkpoint(out / "model.pt")
        log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
        step_times = [e["step_time_s"] for e in log if "step_time_s" in e]
        run = {
            "name": name,
            "miou": card.evaluation.get("miou"),
            "per_class_iou": card.evaluation.get("per_class_iou"),
            "step_time_s": round(statistics.median(step_times), 4) if step_times else None,
            "steps": card.training.get("steps"),
            "wall_s": round(wall, 1),
            "loadavg_1m_after": round(__import__("os").getloadavg()[0], 2),
            "command": " ".join(shlex.quote(c) for c in cmd),
        }
        results["runs"].append(run)
        print(f"[{name}] val mIoU {run['miou']:.4f}  ({wall:.0f} s)", flush=True)
        atomic_write_text(args.json, json.dumps(results, indent=2))  # partial results survive a crash
    print(f"wrote {args.json}")
    for run in results["runs"]:
        print(f"  {run['name']:>16}: {run['miou']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
