"""The scribble table on CamVid (real street photos): full vs pCE vs pCE + regularizers.

    python benchmarks/scribble_table.py  # the synthetic table; this is its CamVid sibling
    python scripts/prepare_camvid.py     # data/camvid: links to ../shared/data/camvid + a tuning split
    OMP_NUM_THREADS=1 python benchmarks/camvid_table.py --data data/camvid

Every run is a `wsdeploy train` command recorded verbatim in the JSON:

- full masks, pCE, pCE+CRF, pCE+entropy, pCE+CRF+entropy and pCE+ADM (proposals, Marin et al.
  2019, on the dense-CRF loss's kernel), trained on all 367 train frames
  and scored on the 101 val frames, each row the mean of the `--seeds` (each kept in
  `miou_per_seed`; the gain over pCE per seed in `gain_over_pce_per_seed`).
- The regularizers' weights are chosen first, on the tuning split only: seed-0 runs trained on
  `splits/tune_train.txt` (321 frames) and scored on `splits/tune.txt` (46 train frames held out
  by scripts/prepare_camvid.py), one per candidate weight (`--tune-crf-weights`,
  `--tune-entropy-weights`, `--tune-adm-weights` for ADM's lambda); the table uses the best of
  each (recorded under `tuning`). Val is
  touched once per table run, never to choose anything.

Resolution: training crops of 128x128 from the frames rescaled by a random factor in
[0.5, 1.0] (240x180 to 480x360); evaluation on the val frames at their full 480x360 (the trainer
pads to the model's multiple and upsamples the logits to the image), void (255) ignored,
per-class IoU kept. 2000 steps: a regularized run took 11-12 minutes at one thread with two runs
sharing the 2-core machine (0.32 s/step), pCE and full 7-8 minutes, pCE+ADM 21-23 (0.63 s/step);
the first fifteen runs took about 85 minutes, ADM's five about an hour more.
Each run is resumable: it checkpoints every 200 steps and a rerun resumes from `last.pt`; a run
whose `model.pt` records the same command is reused, not retrained.

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
from scribble_table import (
    dataset_description,
    results_header,
    split_passthrough,
    summarise_run,
    trained_with,
)

from wsdeploy.atomic import atomic_write_text

# The model, schedule and data handling shared by every run (the table's "same everything").
COMMON = [
    "--model", "lraspp_resnet18", "--width", "16", "--crop-size", "128",
    "--scale-min", "0.5", "--scale-max", "1.0", "--optimizer", "adamw", "--lr", "3e-3",
    "--weight-decay", "1e-4", "--steps", "2000", "--batch-size", "8", "--workers", "0",
    "--log-every", "50", "--checkpoint-every", "200", "--no-tensorboard",
    "--regularizers-from-step", "600", "--crf-sigma-rgb", "15", "--crf-sigma-xy", "50",
]
# Candidate weights for the tuning stage (chosen on splits/tune.txt, never on val). The dense-CRF
# candidates bracket the synthetic sweep's best (benchmarks/results/scribble_sweep.json: 1.0),
# the entropy ones the trainer's suggested 0.1. ADM's lambda: 1 gave the best proposals on the
# tuning split without training (benchmarks/results/camvid_adm_proposals.json: 1 / 4 / 16 / 64 ->
# 50.9 / 49.8 / 48.3 / 45.9 tune mIoU, the network with its scribbles 48.9), 16 was the synthetic
# table's pick; the training runs decide.
TUNE_CRF_WEIGHTS = "0.5,1,2"
TUNE_ENTROPY_WEIGHTS = "0.1,0.3"
TUNE_ADM_WEIGHTS = "1,4,16"
ROWS = {  # name -> (supervision, losses); the regularizers' weights come from the tuning stage
    "full": ("full", "pce"),
    "pce": ("scribbles", "pce"),
    "pce+crf": ("scribbles", "pce,crf"),
    "pce+entropy": ("scribbles", "pce,entropy"),
    "pce+crf+entropy": ("scribbles", "pce,crf,entropy"),
    "pce+adm": ("scribbles", "pce,adm"),
}
# The flag that takes each tuned loss's weight. ADM's tuned weight is lambda, the dense-CRF weight
# inside its proposal step (the cross-entropy to the proposals keeps weight 1).
TUNED_FLAG = {"crf": "--crf-weight", "entropy": "--entropy-weight", "adm": "--adm-crf-weight"}
# Flags a loss's rows and tuning runs share: the ADM proposal's kernel is the dense-CRF loss's.
LOSS_FLAGS = {"adm": ["--adm-sigma-rgb", "15", "--adm-sigma-xy", "50"]}


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


def loss_flags(loss: str, weight: float) -> list[str]:
    """The flags that train with `loss` at `weight`: its tuned weight and its shared settings."""
    return [TUNED_FLAG[loss], f"{weight:g}", *LOSS_FLAGS.get(loss, [])]


def row_flags(name: str, chosen: dict[str, float]) -> list[str]:
    """A regularized row's flags: each of its tuned losses at the weight the tuning split chose
    (in the order the row names them, so that earlier tables' commands stay the same)."""
    losses = [loss for loss in ROWS[name][1].split(",") if loss in TUNED_FLAG]
    return [flag for loss in losses for flag in loss_flags(loss, chosen[loss])]


def parse_weights(text: str) -> list[float]:
    """'0.5,1,2' -> [0.5, 1.0, 2.0]; a clear error for anything else."""
    try:
        weights = [float(w) for w in text.split(",") if w.strip()]
    except ValueError:
        raise SystemExit(f"error: weights must be a comma list of numbers, got {text!r}") from None
    if not weights or any(w <= 0 for w in weights):
        raise SystemExit(f"error: weights must be positive numbers, got {text!r}")
    return weights


def code_version() -> dict:
    """The commit of the wsdeploy code that trained (the package's own git checkout, or the
    commit named by WSDEPLOY_CODE_COMMIT for a frozen copy of it) and where it was imported from."""
    import wsdeploy

    commit = os.environ.get("WSDEPLOY_CODE_COMMIT")
    if commit is None:
        git = subprocess.run(["git", "-C", str(Path(wsdeploy.__file__).parent), "rev-parse", "HEAD"],
                             capture_output=True, text=True, check=False)
        commit = git.stdout.strip() or None
    source = "WSDEPLOY_CODE_COMMIT" if "WSDEPLOY_CODE_COMMIT" in os.environ else "git rev-parse HEAD"
    return {"commit": commit, "commit_from": source, "package": str(Path(wsdeploy.__file__).parent)}


SHORT = {"sky": "sky", "building": "bldg", "pole": "pole", "road": "road", "pavement": "pave", "tree": "tree",
         "sign_symbol": "sign", "fence": "fence", "car": "car", "pedestrian": "ped", "bicyclist": "bike"}


def markdown(results: dict) -> str:
    """The README's table from a results JSON: mean val mIoU (seeds), gain over pCE, per-class IoU."""
    runs = results["runs"]
    classes = list(runs[0]["per_class_iou"])
    head = ["row", "val mIoU (seeds)", "vs pCE", "% of full"] + [SHORT.get(c, c) for c in classes]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in runs:
        seeds = ", ".join(f"{100 * v:.1f}" for v in r["miou_per_seed"].values())
        gain = r.get("gain_over_pce_per_seed")
        gain_text = "" if gain is None else f"{100 * r['gain_over_pce']:+.1f} ({', '.join(f'{100 * g:+.1f}' for g in gain)})"
        frac = f"{100 * r['fraction_of_full']:.0f}%" if "fraction_of_full" in r else ""
        cells = [r["name"], f"**{100 * r['miou']:.1f}** ({seeds})", gain_text, frac]
        cells += ["-" if r["per_class_iou"][c] is None else f"{100 * r['per_class_iou'][c]:.0f}" for c in classes]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    argv, passthrough = split_passthrough(sys.argv[1:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/camvid", help="scripts/prepare_camvid.py's folder (default: %(default)s)")
    parser.add_argument("--table-dir", default="runs/camvid_table", help="one sub-folder per table run")
    parser.add_argument("--json", default="benchmarks/results/camvid_scribble_table.json", help="results file")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma list from {list(ROWS)}")
    parser.add_argument("--seeds", default="0,1", help="training seeds of the table; a row is their mean")
    parser.add_argument("--max-parallel", type=int, default=2, help="runs trained at once (default: 2)")
    parser.add_argument("--max-load", type=float, default=3.0,
                        help="start a second run only while the 1-min load is at most this (default: 3)")
    parser.add_argument("--tune-crf-weights", default=TUNE_CRF_WEIGHTS,
                        help="dense-CRF loss weights tried on the tuning split (default: %(default)s)")
    parser.add_argument("--tune-entropy-weights", default=TUNE_ENTROPY_WEIGHTS,
                        help="entropy weights tried on the tuning split (default: %(default)s)")
    parser.add_argument("--tune-adm-weights", default=TUNE_ADM_WEIGHTS,
                        help="ADM proposal dense-CRF weights (lambda) tried on the tuning split (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of each run (default: 1)")
    parser.add_argument("--markdown", action="store_true", help="print the README table from --json and exit")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown(json.loads(Path(args.json).read_text())))
        return 0
    if not (Path(args.data) / "dataset.json").is_file():
        parser.error(f"{args.data} is not scripts/prepare_camvid.py's folder (no dataset.json); run that script first")
    seeds = [int(s) for s in args.seeds.split(",") if s]
    rows = [r for r in args.rows.split(",") if r]
    if unknown := [r for r in rows if r not in ROWS]:
        parser.error(f"unknown rows {unknown}; choose from {list(ROWS)}")
    run = {"max_parallel": args.max_parallel, "max_load": args.max_load, "threads": args.threads}

    def table_job(name: str, seed: int, extra: list[str]) -> Job:
        supervision, losses = ROWS[name]
        out = Path(args.table_dir) / f"{name.replace('+', '_')}_seed{seed}"
        return Job(name, seed, train_cmd(args.data, out, supervision, losses, extra, seed,
                                         ["--train-split", "train", "--val-split", "val"], passthrough), out)

    def tune_job(loss: str, weight: float) -> Job:
        out = Path(args.table_dir) / "tune" / f"{loss}_w{weight:g}"
        return Job(f"tune {loss} {weight:g}", 0, train_cmd(
            args.data, out, "scribbles", f"pce,{loss}", loss_flags(loss, weight), 0,
            ["--train-split", "tune_train", "--val-split", "tune"], passthrough), out)

    # stage 1: the weight candidates on the tuning split, and the rows that need no weight
    candidates = {"crf": parse_weights(args.tune_crf_weights), "entropy": parse_weights(args.tune_entropy_weights),
                  "adm": parse_weights(args.tune_adm_weights)}
    needs = {loss: any(loss in ROWS[n][1].split(",") for n in rows) for loss in candidates}
    tune_jobs = {loss: [tune_job(loss, w) for w in ws] for loss, ws in candidates.items() if needs[loss] and len(ws) > 1}
    untuned = [table_job(n, s, []) for s in seeds for n in ("full", "pce") if n in rows]
    run_all([j for js in tune_jobs.values() for j in js] + untuned, **run)
    tuning, chosen = {}, {}
    for loss, ws in candidates.items():
        chosen[loss] = ws[0]
        if not needs[loss]:
            continue  # no row of this table uses the loss: nothing to choose or record
        scores = {f"{w:g}": j.row["miou"] for w, j in zip(ws, tune_jobs[loss])} if loss in tune_jobs else {}
        if scores:
            chosen[loss] = max(ws, key=lambda w: scores[f"{w:g}"])
        tuning[f"{loss}_weight"] = {
            "candidates": [f"{w:g}" for w in ws], "tune_miou": scores, "chosen": f"{chosen[loss]:g}",
            "rule": "highest mIoU on splits/tune.txt (seed 0, trained on splits/tune_train.txt)"
                    if scores else "a single candidate: used without a tuning run",
            "commands": {f"{w:g}": shlex.join(j.cmd) for w, j in zip(ws, tune_jobs.get(loss, []))},
        }
        print(f"tuning: {loss} weight {chosen[loss]:g}" + (f" (tune mIoU {scores})" if scores else ""), flush=True)

    # stage 2: the regularized rows with the chosen weights, the longest runs first
    order = ("pce+adm", "pce+crf", "pce+crf+entropy", "pce+entropy")
    tuned = [table_job(n, s, row_flags(n, chosen)) for n in order for s in seeds if n in rows]
    run_all(tuned, **run)
    table = untuned + tuned

    by_row = {n: [j.row for j in table if j.name == n and j.row] for n in rows}
    by_row = {n: sorted(v, key=lambda r: r["seed"]) for n, v in by_row.items() if v}
    base = by_row.get("pce")
    results = {
        **results_header(data=dataset_description(args.data).get("source")),  # provenance hashes the real folder, not the links
        "code": code_version(),
        "threads_per_run": args.threads,
        "dataset": dataset_description(args.data),
        "protocol": {
            "train": "splits/train.txt (367 frames), scribbles or masks at 480x360, random rescale "
                     "[0.5, 1.0] then 128x128 crops, batch 8, 2000 steps, regularizers from step 600",
            "eval": "splits/val.txt (101 frames) at 480x360, logits upsampled to the image, void 255 ignored",
            "regularizer_weights": "chosen on splits/tune.txt (see tuning), never on val",
            "common_flags": shlex.join(COMMON + passthrough),
        },
        "tuning": tuning,
        "runs": [row_summary(n, v, base if n not in ("full", "pce") and base else None) for n, v in by_row.items()],
    }
    if "full" in by_row:
        full = statistics.mean(r["miou"] for r in by_row["full"])
        for row in results["runs"]:
            row["fraction_of_full"] = row["miou"] / full
    atomic_write_text(args.json, json.dumps(results, indent=2))
    print(f"wrote {args.json}")
    for row in results["runs"]:
        seeds_text = ", ".join(f"{v:.4f}" for v in row["miou_per_seed"].values())
        print(f"  {row['name']:>16}: {row['miou']:.4f}  (seeds {seeds_text})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
