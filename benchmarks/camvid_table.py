"""The scribble table on CamVid (real street photos): full vs pCE vs pCE + regularizers.

    python benchmarks/scribble_table.py  # the synthetic table; this is its CamVid sibling
    python scripts/prepare_camvid.py     # data/camvid: links to ../shared/data/camvid + a tuning split
    OMP_NUM_THREADS=1 python benchmarks/camvid_table.py --data data/camvid

Two stages, every run a `wsdeploy train` command recorded verbatim in the JSON:

1. **Tuning** (never on val): seed 0, trained on `splits/tune_train.txt` (321 train frames) and
   scored on `splits/tune.txt` (46 train frames held out); the dense-CRF loss's weight and the
   entropy loss's weight are chosen by tune mIoU.
2. **Table**: full masks, pCE, pCE+CRF, pCE+entropy and pCE+CRF+entropy at the chosen weights,
   trained on all 367 train frames and scored on the 101 val frames, each row the mean of the
   `--seeds` (both kept in `miou_per_seed`).

Resolution: training crops of 176x176 from the frames rescaled by a random factor in
[0.5, 1.0] (240x180 to 480x360); evaluation on the val frames at their full 480x360 (the trainer
pads to the model's multiple and upsamples the logits to the image), void (255) ignored,
per-class IoU kept. Each run is resumable: it checkpoints every 100 steps and a rerun resumes
from `last.pt`; a run whose `model.pt` records the same command is reused, not retrained.

Scheduling on a shared machine: at most `--max-parallel` runs at once, one thread each, and a
second run starts only while the 1-minute load average is at most `--max-load`.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scribble_table import dataset_description, results_header, split_passthrough, summarise_run, trained_with  # noqa: E402

from wsdeploy.atomic import atomic_write_text  # noqa: E402

# The model, schedule and data handling shared by every run (the table's "same everything").
COMMON = [
    "--model", "lraspp_resnet18", "--width", "16", "--crop-size", "176",
    "--scale-min", "0.5", "--scale-max", "1.0", "--optimizer", "adamw", "--lr", "3e-3",
    "--weight-decay", "1e-4", "--steps", "400", "--batch-size", "8", "--workers", "0",
    "--log-every", "20", "--checkpoint-every", "100", "--no-tensorboard",
    "--regularizers-from-step", "130", "--crf-sigma-rgb", "15", "--crf-sigma-xy", "50",
]
TUNE = {  # name -> (losses, extra flags); all scribble-supervised, seed 0
    "pce": ("pce", []),
    "crf_w0.5": ("pce,crf", ["--crf-weight", "0.5"]),
    "crf_w1.5": ("pce,crf", ["--crf-weight", "1.5"]),
    "entropy_w0.1": ("pce,entropy", ["--entropy-weight", "0.1"]),
    "entropy_w0.3": ("pce,entropy", ["--entropy-weight", "0.3"]),
}
ROWS = {  # name -> (supervision, losses); the regularizers' weights come from the tuning stage
    "full": ("full", "pce"),
    "pce": ("scribbles", "pce"),
    "pce+crf": ("scribbles", "pce,crf"),
    "pce+entropy": ("scribbles", "pce,entropy"),
    "pce+crf+entropy": ("scribbles", "pce,crf,entropy"),
}


class Job:
    """One `wsdeploy train` run: its command, output folder and (once finished) its row."""

    def __init__(self, name: str, seed: int, cmd: list[str], out: Path) -> None:
        self.name, self.seed, self.cmd, self.out = name, seed, cmd, out
        self.proc: subprocess.Popen | None = None
        self.t0 = 0.0
        self.row: dict | None = None

    def finished(self) -> bool:
        model = self.out / "model.pt"
        return trained_with(model, self.cmd) or trained_with(model, self.resume_cmd())

    def resume_cmd(self) -> list[str]:
        return [*self.cmd, "--resume", str(self.out / "last.pt")]

    def start(self, threads: int) -> None:
        resume = (self.out / "last.pt").is_file()
        cmd = self.resume_cmd() if resume else self.cmd
        self.out.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        print(f"[{self.name} seed {self.seed}] {'resuming ' if resume else ''}{shlex.join(cmd)}", flush=True)
        log = open(self.out / "train.out", "a")  # noqa: SIM115 (closed with the process)
        self.proc = subprocess.Popen([sys.executable, "-m", "wsdeploy", *cmd[1:]], env=env, stdout=log, stderr=log)
        self.t0 = time.perf_counter()

    def summary(self, threads: int | None, wall_s: float | None) -> dict:
        row = summarise_run(self.name, self.out, shlex.join(self.cmd))
        row["seed"] = self.seed
        if wall_s is not None:
            row["wall_s"], row["threads"] = round(wall_s, 1), threads
        return row


def run_all(jobs: list[Job], *, max_parallel: int, max_load: float, threads: int) -> None:
    """Train every unfinished job, at most `max_parallel` at once and a second one only while
    the 1-minute load is at most `max_load`; fills each job's `row`."""
    queue = []
    for job in jobs:
        if job.finished():
            print(f"[{job.name} seed {job.seed}] reusing {job.out}", flush=True)
            job.row = job.summary(None, None)
        else:
            queue.append(job)
    running: list[Job] = []
    while queue or running:
        for job in list(running):
            if job.proc.poll() is not None:
                running.remove(job)
                if job.proc.returncode != 0:
                    raise SystemExit(f"run {job.out} failed (exit {job.proc.returncode}); see {job.out / 'train.out'}")
                job.row = job.summary(threads, time.perf_counter() - job.t0)
                print(f"[{job.name} seed {job.seed}] mIoU {job.row['miou']:.4f} ({job.row['wall_s']:.0f} s)", flush=True)
        if queue and len(running) < max_parallel and (not running or os.getloadavg()[0] <= max_load):
            job = queue.pop(0)
            job.start(threads)
            running.append(job)
            time.sleep(20)  # let the load average see the new process before deciding again
            continue
        time.sleep(5)


def train_cmd(data: str, out: Path, supervision: str, losses: str, extra: list[str], seed: int,
              splits: list[str], passthrough: list[str]) -> list[str]:
    return ["wsdeploy", "train", "--data", data, "--supervision", supervision, "--losses", losses,
            *extra, *splits, "--out-dir", str(out), "--no-progress", *COMMON, *passthrough,
            *(["--seed", str(seed)] if seed else [])]


def best(tune_rows: dict[str, dict], prefix: str) -> tuple[str, list[str]]:
    """The tuning run with the highest tune mIoU among those named `prefix...`: (name, flags)."""
    name = max((n for n in tune_rows if n.startswith(prefix)), key=lambda n: tune_rows[n]["miou"])
    return name, TUNE[name][1]


def row_summary(name: str, per_seed: list[dict], baseline: list[dict] | None) -> dict:
    """A table row: the mean over seeds, every seed's value, per-class means, gain over pCE."""
    row = dict(per_seed[0])
    values = [r["miou"] for r in per_seed]
    row.update(name=name, miou=statistics.mean(values),
               miou_per_seed={str(r["seed"]): r["miou"] for r in per_seed},
               miou_spread=max(values) - min(values))
    classes = per_seed[0]["per_class_iou"]
    row["per_class_iou"] = {c: statistics.mean(r["per_class_iou"][c] for r in per_seed) for c in classes}
    row["per_class_iou_per_seed"] = {str(r["seed"]): r["per_class_iou"] for r in per_seed}
    row["command"] = per_seed[0]["command"] + (
        f"  (also --seed {', '.join(str(r['seed']) for r in per_seed[1:])})" if len(per_seed) > 1 else "")
    if baseline is not None:
        gains = [r["miou"] - b["miou"] for r, b in zip(per_seed, baseline)]
        row["gain_over_pce"] = statistics.mean(gains)
        row["gain_over_pce_per_seed"] = gains
    return row


def code_version() -> dict:
    """The commit of the wsdeploy code that trained (the package's own git checkout, or the
    commit named by WSDEPLOY_CODE_COMMIT for a frozen copy of it) and where it was imported from."""
    import wsdeploy

    commit = os.environ.get("WSDEPLOY_CODE_COMMIT")
    if commit is None:
        git = subprocess.run(["git", "-C", str(Path(wsdeploy.__file__).parent), "rev-parse", "HEAD"],
                             capture_output=True, text=True)
        commit = git.stdout.strip() or None
    return {"commit": commit, "package": str(Path(wsdeploy.__file__).parent)}


def main() -> int:
    argv, passthrough = split_passthrough(sys.argv[1:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/camvid", help="scripts/prepare_camvid.py's folder (default: %(default)s)")
    parser.add_argument("--tune-dir", default="runs/camvid_tune", help="one sub-folder per tuning run")
    parser.add_argument("--table-dir", default="runs/camvid_table", help="one sub-folder per table run")
    parser.add_argument("--json", default="benchmarks/results/camvid_scribble_table.json", help="results file")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma list from {list(ROWS)}")
    parser.add_argument("--seeds", default="0,1", help="training seeds of the table; a row is their mean")
    parser.add_argument("--max-parallel", type=int, default=2, help="runs trained at once (default: 2)")
    parser.add_argument("--max-load", type=float, default=3.0,
                        help="start a second run only while the 1-min load is at most this (default: 3)")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of each run (default: 1)")
    parser.add_argument("--tune-only", action="store_true", help="stop after the tuning stage")
    args = parser.parse_args(argv)
    if not (Path(args.data) / "splits" / "tune.txt").is_file():
        parser.error(f"{args.data} has no splits/tune.txt; make it with scripts/prepare_camvid.py")
    seeds = [int(s) for s in args.seeds.split(",") if s]
    rows = [r for r in args.rows.split(",") if r]
    if unknown := [r for r in rows if r not in ROWS]:
        parser.error(f"unknown rows {unknown}; choose from {list(ROWS)}")
    run = dict(max_parallel=args.max_parallel, max_load=args.max_load, threads=args.threads)

    def table_job(name: str, seed: int, extra: list[str]) -> Job:
        supervision, losses = ROWS[name]
        out = Path(args.table_dir) / f"{name.replace('+', '_')}_seed{seed}"
        return Job(name, seed, train_cmd(args.data, out, supervision, losses, extra, seed,
                                         ["--train-split", "train", "--val-split", "val"], passthrough), out)

    tune_jobs = [Job(n, 0, train_cmd(args.data, Path(args.tune_dir) / n, "scribbles", losses, extra, 0,
                                     ["--train-split", "tune_train", "--val-split", "tune"], passthrough),
                     Path(args.tune_dir) / n) for n, (losses, extra) in TUNE.items()]
    # rows that need no tuned weight train alongside the tuning runs
    early = [table_job(n, s, []) for s in seeds for n in rows if n in ("full", "pce")]
    if not args.tune_only:
        # the tuning runs first (the late rows wait for them), then the rows without a weight
        run_all(tune_jobs + early, **run)
    else:
        run_all(tune_jobs, **run)
    tune_rows = {j.name: j.row for j in tune_jobs}
    crf_name, crf_flags = best(tune_rows, "crf_")
    ent_name, ent_flags = best(tune_rows, "entropy_")
    extra = {"pce+crf": crf_flags, "pce+entropy": ent_flags, "pce+crf+entropy": crf_flags + ent_flags}
    late = [] if args.tune_only else [table_job(n, s, extra[n]) for s in seeds for n in rows if n in extra]
    run_all(late, **run)

    by_row = {n: [j.row for j in early + late if j.name == n and j.row] for n in rows}
    by_row = {n: sorted(v, key=lambda r: r["seed"]) for n, v in by_row.items() if v}
    base = by_row.get("pce")
    results = {
        **results_header(),
        "code": code_version(),
        "threads_per_run": args.threads,
        "dataset": dataset_description(args.data),
        "protocol": {
            "train": "splits/train.txt (367 frames), scribbles or masks at 480x360, random rescale "
                     "[0.5, 1.0] then 176x176 crops",
            "eval": "splits/val.txt (101 frames) at 480x360, logits upsampled to the image, void 255 ignored",
            "tuning": "seed 0, train on splits/tune_train.txt (321), score on splits/tune.txt (46 train frames)",
            "common_flags": shlex.join(COMMON + passthrough),
        },
        "tuning": {"runs": list(tune_rows.values()), "chosen": {"crf": crf_name, "entropy": ent_name}},
        "runs": [row_summary(n, v, base if n not in ("full", "pce") and base else None) for n, v in by_row.items()],
    }
    if "full" in by_row:
        full = statistics.mean(r["miou"] for r in by_row["full"])
        for row in results["runs"]:
            row["fraction_of_full"] = row["miou"] / full
    atomic_write_text(args.json, json.dumps(results, indent=2))
    print(f"wrote {args.json}  (chosen on tune: {crf_name}, {ent_name})")
    for name, r in tune_rows.items():
        print(f"  tune {name:>14}: {r['miou']:.4f}")
    for row in results["runs"]:
        seeds_text = ", ".join(f"{v:.4f}" for v in row["miou_per_seed"].values())
        print(f"  {row['name']:>16}: {row['miou']:.4f}  (seeds {seeds_text})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
