"""Does a CPU training run repeat, and which kernel choices make it drift? (issue 20, item 1)

Short `wsdeploy train` runs with the scribble table's flags (after `--`), logged at every step,
each in a fresh process under its own environment:

- the same run twice at 1 thread (does it repeat bit for bit?);
- ATen's kernels capped below this CPU's ISA (`ATEN_CPU_CAPABILITY=default`: no AVX2), and
  oneDNN's (convolutions) capped (`ONEDNN_MAX_CPU_ISA=AVX`): what a machine with other SIMD units
  would compute, since oneDNN, MKL and ATen pick kernels (and so summation orders) per processor;
- 2 threads instead of 1 (OpenMP splits reductions differently);
- the reference once more at the end, a control that the code did not change meanwhile (each
  run also records the git commit and the hash of the uncommitted diff it ran with).

Each run is compared with the first: the first step whose loss differs (bitwise), and how far the
losses are apart as training goes on. With `--dataset-variants`, the synthetic dataset is also
regenerated with numpy's and OpenCV's SIMD dispatch capped (`NPY_DISABLE_CPU_FEATURES`,
`OPENCV_CPU_DISABLE`) and compared file by file with the one given by `--data`: does the dataset
depend on the CPU it was rendered on?

    python benchmarks/determinism.py --data data/synthetic-128-seed1 --steps 100 --dataset-variants \\
        -- <the scribble table's flags>

The runs' own `--steps`, `--log-every 1` and `--out-dir` are added after the passthrough flags (the
last value wins). Results: benchmarks/results/determinism.json (with results_header's provenance).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from scribble_table import results_header, split_passthrough

from wsdeploy.atomic import atomic_write_text
from wsdeploy.provenance import dataset_hash, file_digests, git_state

ONE = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
TWO = {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"}  # no spinning on a busy CPU
VARIANTS = {  # name -> (environment, what it stands for); the first is the reference
    "1thread": (ONE, "reference"),
    "1thread_again": (ONE, "the same command again"),
    "1thread_aten_default": ({**ONE, "ATEN_CPU_CAPABILITY": "default"},
                             "ATen's vectorised kernels without AVX2 (another CPU's dispatch)"),
    "1thread_onednn_avx": ({**ONE, "ONEDNN_MAX_CPU_ISA": "AVX"},
                           "oneDNN (convolutions) limited to AVX (another CPU's JIT kernels)"),
    "2threads": (TWO, "two OpenMP threads"),
    "2threads_again": (TWO, "two OpenMP threads, again"),
    "1thread_control": (ONE, "the reference once more, last: proves the code did not change meanwhile"),
}
DATASET_VARIANTS = {  # name -> environment of `wsdeploy make-dataset`
    "default": {},
    "numpy_no_avx2": {"NPY_DISABLE_CPU_FEATURES": "X86_V3"},
    "opencv_sse3": {"OPENCV_CPU_DISABLE": "AVX512_SKX,AVX2,FMA3,AVX,FP16,SSE4_1,POPCNT,SSSE3"},
}
SAFE_PATH = {"PYTHONSAFEPATH": "1"}  # `-m wsdeploy` must not pick up ./wsdeploy when --python is another venv
CHECKPOINTS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)  # steps at which the loss gap is reported


def main() -> int:
    argv, passthrough = split_passthrough(sys.argv[1:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="dataset folder the runs train on")
    parser.add_argument("--out-dir", default="runs/determinism", help="one sub-folder per run (replaced)")
    parser.add_argument("--json", default="benchmarks/results/determinism.json", help="results file")
    parser.add_argument("--steps", type=int, default=100, help="optimizer steps per run")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma list from {list(VARIANTS)}")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter whose wsdeploy trains (default: this one); e.g. a venv with a "
                        "frozen checkout installed, so that edits to this tree during the runs do not enter")
    parser.add_argument("--dataset-variants", action="store_true",
                        help=f"also regenerate --data under {list(DATASET_VARIANTS)} and compare the bytes")
    args = parser.parse_args(argv)
    names = [n for n in args.variants.split(",") if n]
    if unknown := [n for n in names if n not in VARIANTS]:
        parser.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    if not names and not args.dataset_variants:
        parser.error("nothing to do: give --variants or --dataset-variants")
    if args.steps < 1:
        parser.error(f"--steps must be >= 1, got {args.steps}")
    if not Path(args.data).is_dir():
        parser.error(f"--data {args.data!r} is not a folder; make it with the README's make-dataset command")

    code = subprocess.run([args.python, "-c", "import wsdeploy; print(wsdeploy.__file__)"], check=True,
                          capture_output=True, text=True, env={**os.environ, **SAFE_PATH}).stdout.strip()
    results = {**results_header(data=args.data), "trainer": {"python": args.python, "wsdeploy": code},
               "steps": args.steps, "runs": [], "datasets": None}
    reference = None
    for name in names:
        env, meaning = VARIANTS[name]
        run = train_once(name, env, args, Path(code).parent, passthrough)
        run["meaning"] = meaning
        reference = reference or run
        run["vs_reference"] = compare(reference["losses"], run["losses"])
        results["runs"].append(run)
        gap = run["vs_reference"]
        print(f"[{name}] first differing step {gap['first_differing_step']}, final |dloss| "
              f"{gap['abs_loss_gap_at'].get(str(args.steps))}, val mIoU {run['miou']}", flush=True)
    if args.dataset_variants:
        results["datasets"] = compare_datasets(args.data, Path(args.out_dir), args.python)
    atomic_write_text(args.json, json.dumps(results, indent=2))
    print(f"wrote {args.json}")
    return 0


def train_once(name: str, env: dict[str, str], args: argparse.Namespace, code: Path, passthrough: list[str]) -> dict:
    """One fresh `wsdeploy train` run in its own process (`args.python`, whose wsdeploy lives in
    `code`); its per-step losses, val mIoU and the git state of `code` when it started."""
    out = Path(args.out_dir) / name
    shutil.rmtree(out, ignore_errors=True)
    cmd = ["wsdeploy", "train", "--data", args.data, "--supervision", "scribbles", "--no-progress", *passthrough,
           "--steps", str(args.steps), "--log-every", "1", "--checkpoint-every", "0", "--out-dir", str(out)]
    text = " ".join(f"{k}={v}" for k, v in env.items()) + " " + shlex.join(cmd)
    print(f"[{name}] {text}", flush=True)
    git = git_state(code)
    t0 = time.perf_counter()
    subprocess.run([args.python, "-m", "wsdeploy", *cmd[1:]], check=True, env={**os.environ, **SAFE_PATH, **env})
    wall = time.perf_counter() - t0
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    train = [e for e in log if "loss" in e and "split" not in e]
    evals = [e for e in log if "split" in e]
    times = sorted(e["step_time_s"] for e in train)
    return {
        "name": name,
        "env": env,
        "command": text,
        "git": {k: git[k] for k in ("commit", "dirty", "diff_sha256")},
        "wall_s": round(wall, 1),
        "median_step_time_s": round(times[len(times) // 2], 4),
        "miou": round(evals[-1]["miou"], 4) if evals else None,
        "losses": [e["loss"] for e in train],  # index i = step i + 1
    }


def compare(ref: list[float], other: list[float]) -> dict:
    """First step (1-based) where the losses differ bitwise, and the gaps at CHECKPOINTS steps."""
    n = min(len(ref), len(other))
    first = next((i + 1 for i in range(n) if ref[i] != other[i]), None)
    at = {str(s): abs(ref[s - 1] - other[s - 1]) for s in CHECKPOINTS if s <= n}
    at[str(n)] = abs(ref[n - 1] - other[n - 1])
    rel = {k: v / abs(ref[int(k) - 1]) for k, v in at.items() if ref[int(k) - 1]}
    windows = {}  # mean |dloss| over windows of 10 steps: the drift without one step's noise
    for end in range(10, n + 1, max(10, n // 10)):
        gaps = [abs(ref[i] - other[i]) for i in range(end - 10, end)]
        windows[str(end)] = sum(gaps) / len(gaps)
    return {
        "identical": first is None and len(ref) == len(other),
        "first_differing_step": first,
        "abs_loss_gap_at": at,
        "rel_loss_gap_at": rel,
        "mean_abs_gap_10_steps_ending_at": windows,
        "max_abs_gap": max((abs(a - b) for a, b in zip(ref[:n], other[:n])), default=math.nan),
    }


def compare_datasets(data: str, out_dir: Path, python: str) -> dict:
    """Regenerate `data` (same command, from its dataset.json) under each DATASET_VARIANTS
    environment and count the files whose bytes differ from `data`'s, per folder."""
    manifest = json.loads((Path(data) / "dataset.json").read_text())
    command = shlex.split(manifest["command"])  # "wsdeploy make-dataset OUT --num-images ..."
    ref = file_digests(data)
    report = {"regenerated_from": manifest["command"], "reference": dataset_hash(data), "variants": {}}
    for name, env in DATASET_VARIANTS.items():
        target = out_dir / f"data_{name}"
        shutil.rmtree(target, ignore_errors=True)
        cmd = [python, "-m", "wsdeploy", "make-dataset", str(target), *command[3:], "--no-progress"]
        subprocess.run(cmd, check=True, env={**os.environ, **SAFE_PATH, **ONE, **env}, stdout=subprocess.DEVNULL)
        digests = file_digests(target)
        differ = sorted(k for k in ref.keys() | digests.keys() if ref.get(k) != digests.get(k))
        per_folder: dict[str, int] = {}
        for key in differ:
            folder = key.split("/", 1)[0] if "/" in key else key
            per_folder[folder] = per_folder.get(folder, 0) + 1
        report["variants"][name] = {
            "env": env,
            "sha256": dataset_hash(target)["sha256"],
            "files_differing": len(differ),
            "differing_per_folder": per_folder,
            "examples": differ[:5],
            "pixels": pixel_differences(Path(data), target, differ),
        }
        print(f"[dataset {name}] {len(differ)} of {len(ref)} files differ {per_folder}", flush=True)
    return report


def pixel_differences(a: Path, b: Path, keys: list[str]) -> dict:
    """How far the decoded pixels of the differing PNGs are apart: max |difference| in grey
    levels, pixels that differ in any channel, and all pixels of those files."""
    import cv2  # local: only the dataset comparison decodes images

    worst, changed, total = 0, 0, 0
    for key in keys:
        if not key.endswith(".png") or not (a / key).is_file() or not (b / key).is_file():
            continue
        x = cv2.imread(str(a / key), cv2.IMREAD_UNCHANGED).astype(np.int16)
        y = cv2.imread(str(b / key), cv2.IMREAD_UNCHANGED).astype(np.int16)
        if x.shape != y.shape:
            return {"shapes_differ": key}
        diff = np.abs(x - y).reshape(x.shape[0], x.shape[1], -1).max(2)  # (H, W)
        worst, changed, total = max(worst, int(diff.max())), changed + int((diff > 0).sum()), total + diff.size
    return {"max_abs_difference": worst, "pixels_differing": changed, "pixels_in_those_files": total}


if __name__ == "__main__":
    sys.exit(main())
