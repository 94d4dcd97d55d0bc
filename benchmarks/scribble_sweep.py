"""Why does a regularizer help little? Sweep the dense-CRF loss's weight, bandwidth, switch-on and scale.

The scribble issue asks, before a regularizer is reported as not helping, to find out why:
weight, sigma, scale, when it is switched on. This sweep covers the dense-CRF loss's weight and
sigma_rgb, and at weight 1.0 its switch-on step (0 instead of 1000) and scale (1.0 instead of
0.5). Each variant is one `wsdeploy train` run with the
scribble table's flags (passed after `--`) plus the variant's own flags (which win: argparse keeps
the last value). Runs already trained with the same command are reused.

    python benchmarks/scribble_sweep.py --data data/synthetic-128-seed1 --parallel 2 -- <table flags>
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from scribble_table import results_header, run_jobs, split_passthrough

from wsdeploy.atomic import atomic_write_text

# name -> flags added to the table's. Colour statistics of the synthetic scenes (measured on 40
# train images): per-channel std inside a region median 11.8 (p90 23.4), so two pixels of one
# region differ by ~29 in RGB distance, which sigma_rgb=15 weights exp(-29^2/(2*15^2)) = 0.15;
# neighbours across a region boundary differ by ~121. sigma_rgb=30 keeps within-region affinity
# (0.63) and still cuts boundaries (exp(-121^2/1800) = 3e-4).
VARIANTS = {
    "crf_rgb30_w0.25": "--losses pce,crf --crf-sigma-rgb 30 --crf-weight 0.25",
    "crf_rgb30_w1": "--losses pce,crf --crf-sigma-rgb 30 --crf-weight 1.0",
    "crf_rgb15_w1": "--losses pce,crf --crf-sigma-rgb 15 --crf-weight 1.0",
    "crf_rgb15_w0.25": "--losses pce,crf --crf-sigma-rgb 15 --crf-weight 0.25",
    "crf_rgb30_w1_from0": "--losses pce,crf --crf-sigma-rgb 30 --crf-weight 1.0 --regularizers-from-step 0",
    "crf_rgb30_w1_scale1": "--losses pce,crf --crf-sigma-rgb 30 --crf-weight 1.0 --crf-scale 1.0",
}


def main() -> int:
    argv, passthrough = split_passthrough(sys.argv[1:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="dataset folder with scribbles/ and masks/")
    parser.add_argument("--out-dir", default="runs/sweep", help="one sub-folder per variant")
    parser.add_argument("--json", default="benchmarks/results/scribble_sweep.json", help="results file")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma list from {list(VARIANTS)}")
    parser.add_argument("--parallel", type=int, default=1, help="runs trained at the same time")
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS per run")
    args = parser.parse_args(argv)
    names = [n for n in args.variants.split(",") if n]
    if unknown := [n for n in names if n not in VARIANTS]:
        parser.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    jobs = [
        (name, 0, ["wsdeploy", "train", "--data", args.data, "--supervision", "scribbles", "--no-progress",
                   *passthrough, *shlex.split(VARIANTS[name]), "--out-dir", str(Path(args.out_dir) / name)],
         Path(args.out_dir) / name)
        for name in names
    ]
    done = run_jobs(jobs, parallel=args.parallel, threads=args.threads, reuse=True)
    results = {
        **results_header(data=args.data),
        "threads_per_run": args.threads or (1 if args.parallel > 1 else None),  # None: torch's default
        "runs": [dict(done[(name, 0)], flags=VARIANTS[name]) for name in names],
    }
    atomic_write_text(args.json, json.dumps(results, indent=2))
    print(f"wrote {args.json}")
    for run in results["runs"]:
        print(f"  {run['name']:>22}: {run['miou']:.4f}  ({run['flags']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
