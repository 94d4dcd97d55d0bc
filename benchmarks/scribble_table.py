"""The scribble table: full supervision vs partial CE vs pCE + each regularizer, same everything else.

Reproduces the *pattern* of Tang et al. (ECCV 2018, Table 1) on the synthetic benchmark: every run
trains the same model with the same schedule, data and seed; only the labels (full masks or
scribbles) and the losses differ. Each run is a `wsdeploy train` command (recorded verbatim in the
JSON); the val mIoU is the one the trainer writes into the model card.

    python benchmarks/scribble_table.py --data data/synthetic --out-dir runs/scribble_table \
        --json benchmarks/results/scribble_table.json --seeds 0,1,2 -- --model deeplabv3plus_resnet18 ...

Everything after `--` is passed to every `wsdeploy train` run unchanged (model, steps, crop, lr).
`make scribble-table` runs the README's table (dataset included) from a fresh clone.

A row keeps each seed's run (`runs_per_seed`, `miou_per_seed`), their mean (`miou`) and sample
standard deviation (`miou_std`); `gains` says whether a regularizer *helps*: its gain over pce
must exceed twice the larger of the two rows' standard deviations. The header records what a
rerun needs (`results_header`), and each run's folder keeps the git commit it trained at
(`provenance.json`, copied into the row as `trained_at`).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from wsdeploy.atomic import atomic_write_text
from wsdeploy.checkpoint import read_checkpoint
from wsdeploy.environment import library_versions, machine_info
from wsdeploy.provenance import KERNEL_ENV, cpu_features, git_state, provenance

REPO = Path(__file__).resolve().parents[1]
RUN_RECORD = "provenance.json"  # written beside each run's model.pt: where and at which commit it trained

RUNS = {  # name -> (supervision, losses)
    "full": ("full", "pce"),
    "pce": ("scribbles", "pce"),
    "pce+crf": ("scribbles", "pce,crf"),
    "pce+entropy": ("scribbles", "pce,entropy"),
    "pce+crf+entropy": ("scribbles", "pce,crf,entropy"),
    "pce+ncut": ("scribbles", "pce,ncut"),
    "pce+potts": ("scribbles", "pce,potts"),
    "pce+adm": ("scribbles", "pce,adm"),
}
# A row's own flags, after the passthrough ones. ADM's proposal step (issue 20, "proposals instead
# of plain gradients") uses the dense-CRF loss's kernel (sigma_rgb 30, sigma_xy 25) and lambda 16:
# the smallest lambda within one point of the best proposal mIoU on the first 64 *train* images
# (benchmarks/results/adm_proposals.json: 80.2 / 81.8 / 82.0 / 82.0 at 8 / 16 / 32 / 64); val
# chose nothing.
RUN_FLAGS = {
    "pce+adm": ["--adm-crf-weight", "16", "--adm-sigma-rgb", "30", "--adm-sigma-xy", "25"],
}


def main() -> int:
    argv, passthrough = split_passthrough(sys.argv[1:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="dataset folder with masks/ and scribbles/ (required unless --markdown)")
    parser.add_argument("--out-dir", default="runs/scribble_table", help="one sub-folder per run")
    parser.add_argument("--json", default="benchmarks/results/scribble_table.json", help="results file")
    parser.add_argument("--runs", default=",".join(RUNS), help=f"comma list of runs from {list(RUNS)}")
    parser.add_argument("--seeds", default="0,1,2",
                        help="comma list of training seeds; a row's miou is their mean, miou_std their spread")
    parser.add_argument("--parallel", type=int, default=1, help="runs trained at the same time")
    parser.add_argument("--threads", type=int, default=None,
                        help="OMP_NUM_THREADS of each run (default: 1 when --parallel > 1, else torch's)")
    parser.add_argument("--dataset-sha256", default=None,
                        help="expected content hash of --data (wsdeploy.provenance.dataset_hash); a mismatch "
                        "is recorded and warned about: the rows then come from other data")
    parser.add_argument("--fresh", action="store_true",
                        help="retrain runs whose model.pt exists with the same command (default: reuse)")
    parser.add_argument("--markdown", action="store_true", help="print the README table from --json and exit")
    parser.add_argument("--collect-only", action="store_true",
                        help="train nothing: write --json from the runs already finished with the same command "
                        "(a row keeps the seeds it has and lists the missing ones in seeds_missing)")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown(json.loads(Path(args.json).read_text())))
        return 0
    if not args.data:
        parser.error("--data is required")
    seeds = [int(s) for s in args.seeds.split(",") if s]
    names = [n for n in args.runs.split(",") if n]
    unknown = [n for n in names if n not in RUNS]
    if unknown:
        parser.error(f"unknown runs {unknown}; choose from {list(RUNS)}")

    results = {
        **results_header(data=args.data),
        "threads_per_run": args.threads or (1 if args.parallel > 1 else None),  # None: torch's default
        "dataset": dataset_description(args.data),
        "seeds": seeds,
        "runs": [],
    }
    if args.dataset_sha256:
        found = results["provenance"]["dataset_hash"]["sha256"]
        results["dataset_matches_expected"] = found == args.dataset_sha256
        if found != args.dataset_sha256:
            print(f"WARNING: {args.data} hashes to {found}, not the expected {args.dataset_sha256}: "
                  "the dataset's bytes differ from the committed table's", file=sys.stderr, flush=True)
    jobs = []  # (name, seed, cmd, out)
    for seed in seeds:  # seed-major: the first seed's table is complete before the next starts
        for name in names:
            jobs.append((name, seed, *run_command(name, seed, args.data, Path(args.out_dir), passthrough)))
    if args.collect_only:
        done = {(name, seed): summarise_run(name, out, " ".join(shlex.quote(c) for c in cmd))
                for name, seed, cmd, out in jobs if trained_with(out / "model.pt", cmd)}
    else:
        done = run_jobs(jobs, parallel=args.parallel, threads=args.threads, reuse=not args.fresh)
    for name in names:
        have = [seed for seed in seeds if (name, seed) in done]
        if not have:
            print(f"  {name}: no finished run, left out", flush=True)
            continue
        row = seed_row(name, [done[(name, seed)] for seed in have], have)
        if len(have) < len(seeds):
            row["seeds_missing"] = [seed for seed in seeds if seed not in have]
        results["runs"].append(row)
    results["gains"] = gains(results["runs"])
    atomic_write_text(args.json, json.dumps(results, indent=2))
    print(f"wrote {args.json}")
    for run in results["runs"]:
        gain = results["gains"].get(run["name"])
        verdict = "" if gain is None else (
            f"  {gain['gain']:+.4f} vs pce: {({True: 'helps', False: 'not shown', None: 'no spread'})[gain['helps']]}")
        print(f"  {run['name']:>16}: {run['miou']:.4f} +- {run['miou_std'] or 0:.4f} "
              f"(n={len(run['miou_per_seed'])}){verdict}")
    return 0


def run_command(name: str, seed: int, data: str, out_dir: Path, passthrough: list[str]) -> tuple[list[str], Path]:
    """The `wsdeploy train` command of one (row, seed) run and its folder: the row's supervision
    and losses, the shared flags, the row's own (`RUN_FLAGS`), and `--seed` unless it is 0."""
    supervision, losses = RUNS[name]
    out = out_dir / (name.replace("+", "_") + ("" if seed == 0 else f"_seed{seed}"))
    cmd = ["wsdeploy", "train", "--data", data, "--supervision", supervision, "--losses", losses,
           "--out-dir", str(out), "--no-progress", *passthrough, *RUN_FLAGS.get(name, []),
           *(["--seed", str(seed)] if seed else [])]
    return cmd, out


def markdown(results: dict) -> str:
    """The README's table from a results JSON: each row's seed mean +- sample std, every seed's
    value, its share of full supervision's mean and, for a regularizer, its gain over pCE with
    the issue-20 verdict (helps only if the gain exceeds twice the larger seed spread); when runs
    recorded their cost, a last column gives the slowest seed's wall-clock / CPU minutes."""
    rows = {r["name"]: r for r in results["runs"]}
    full = rows.get("full", {}).get("miou")
    timed = any(r.get("cpu_s_max") is not None for r in rows.values())  # runs that recorded their cost
    lines = ["| run | val mIoU, mean +- std | seeds | % of full | vs pCE (points) | helps? |"
             + (" minutes per run, slowest seed (wall / CPU) |" if timed else ""),
             "|---|---|---|---|---|---|" + ("---|" if timed else "")]
    for name, r in rows.items():
        std = "" if r.get("miou_std") is None else f" +- {100 * r['miou_std']:.1f}"
        seeds = ", ".join(f"{100 * v:.1f}" for v in r.get("miou_per_seed", {"0": r["miou"]}).values())
        if r.get("seeds_missing"):
            seeds += f" (seed {', '.join(map(str, r['seeds_missing']))} not run)"
        share = f"{100 * r['miou'] / full:.1f}%" if full else ""
        gain = results.get("gains", {}).get(name)
        if gain is None:
            gain_text, verdict = "", ""
        else:
            gain_text = f"{100 * gain['gain']:+.1f}"
            threshold = "" if gain["threshold"] is None else f" (needs > {100 * gain['threshold']:.1f})"
            verdict = {True: "yes", False: "not shown", None: "no spread (one seed)"}[gain["helps"]] + threshold
        cost = ""
        if timed and r.get("cpu_s_max") is not None:
            cost = f" {r['wall_s_max'] / 60:.1f} / {r['cpu_s_max'] / 60:.1f} |"
        elif timed:
            cost = "  |"
        lines.append(f"| {name} | **{100 * r['miou']:.1f}**{std} | {seeds} | {share} | {gain_text} | {verdict} |{cost}")
    return "\n".join(lines)


def seed_row(name: str, per_seed: list[dict], seeds: list[int]) -> dict:
    """One table row from its runs (one per seed, in `seeds` order): the first run's fields plus
    `miou` (mean over seeds), `miou_std` (sample standard deviation, None for one seed),
    `miou_range` (max - min), `miou_per_seed`, `runs_per_seed` (each run's own record), and
    `wall_s_max` / `cpu_s_max`, the slowest seed's wall-clock and CPU seconds (None unless every
    run recorded them)."""
    values = [r["miou"] for r in per_seed]
    row = dict(per_seed[0], name=name)
    row["miou"] = statistics.mean(values)
    row["miou_std"] = statistics.stdev(values) if len(values) > 1 else None
    row["miou_range"] = max(values) - min(values)
    row["miou_per_seed"] = {str(seed): v for seed, v in zip(seeds, values)}
    row["runs_per_seed"] = {str(seed): r for seed, r in zip(seeds, per_seed)}
    costs = {key: [r.get(key) for r in per_seed] for key in ("wall_s", "cpu_s")}
    for key, per in costs.items():  # the slowest seed's cost; None unless every run recorded it
        row[key + "_max"] = None if None in per else max(per)
    also = f"  (also --seed {', '.join(map(str, seeds[1:]))})" if len(seeds) > 1 else ""
    row["command"] = per_seed[0]["command"] + also
    return row


def gains(rows: list[dict], baseline: str = "pce") -> dict[str, dict]:
    """Each regularizer row's gain over `baseline` and whether it *helps*: the rule of issue 20
    is that the gain (difference of seed means) must exceed twice the larger of the two rows'
    seed spreads (sample standard deviations). With one seed there is no spread, so nothing is
    called helpful (`helps` is None)."""
    by_name = {r["name"]: r for r in rows}
    base = by_name.get(baseline)
    if base is None:
        return {}
    out = {}
    for row in rows:
        if row["name"] in (baseline, "full") or not row["name"].startswith(baseline + "+"):
            continue
        gain = row["miou"] - base["miou"]
        spreads = [s for s in (row["miou_std"], base["miou_std"]) if s is not None]
        spread = max(spreads) if len(spreads) == 2 else None
        out[row["name"]] = {
            "gain": gain,
            "larger_spread": spread,
            "threshold": None if spread is None else 2 * spread,
            "helps": None if spread is None else gain > 2 * spread,
        }
    return out


def run_jobs(
    jobs: list[tuple[str, int, list[str], Path]], *, parallel: int, threads: int | None, reuse: bool
) -> dict[tuple[str, int], dict]:
    """Train each (name, seed, cmd, out) job, `parallel` at a time; a job whose `out/model.pt`
    records the same command is summarised, not retrained (unless `reuse` is False)."""
    if threads is None and parallel > 1:
        threads = 1  # two OpenMP teams on 2 cores stall each other (see the README's CRF notes)
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {}))

    def one(job: tuple[str, int, list[str], Path]) -> dict:
        name, seed, cmd, out = job
        text = " ".join(shlex.quote(c) for c in cmd)
        if reuse and trained_with(out / "model.pt", cmd):
            print(f"[{name} seed {seed}] reusing {out}", flush=True)
            return summarise_run(name, out, text)
        print(f"[{name} seed {seed}] {text}", flush=True)
        record = {  # the code and machine this run trains with, kept beside its model.pt
            "git": git_state(REPO), "cpu": cpu_features(), "threads": threads,
            "env": {k: v for k, v in env.items() if k in KERNEL_ENV},
            "started_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        record.update(train_timed([sys.executable, "-m", "wsdeploy", *cmd[1:]], env=env))
        atomic_write_text(out / RUN_RECORD, json.dumps(record, indent=2))
        run = summarise_run(name, out, text)
        run["threads"] = threads
        print(f"[{name} seed {seed}] val mIoU {run['miou']:.4f}  ({record['wall_s']:.0f} s wall, "
              f"{record['cpu_s']:.0f} CPU-s)", flush=True)
        return run

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        rows = list(pool.map(one, jobs))
    return {(job[0], job[1]): row for job, row in zip(jobs, rows)}


def train_timed(argv: list[str], *, env: dict[str, str]) -> dict[str, float]:
    """Run one training process to its end and return its cost: `wall_s` (seconds from start to
    exit) and `cpu_s` (the process's own user + system CPU seconds, from `os.wait4`, so runs
    trained side by side each count only their own). Raises `CalledProcessError` if it fails."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env)
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4: tell Popen, which never saw it
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, argv)
    return {"wall_s": round(time.perf_counter() - t0, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 1)}


def split_passthrough(argv: list[str]) -> tuple[list[str], list[str]]:
    """(the script's own arguments, the `wsdeploy train` flags after `--`)."""
    if "--" not in argv:
        return argv, []
    i = argv.index("--")
    return argv[:i], argv[i + 1 :]


def results_header(*, data: str | None = None) -> dict:
    """The head of every results JSON: machine, versions, this script's command line, and what a
    rerun needs (`wsdeploy.provenance`: git commit and dirty flag, every installed package, CPU
    model and ISA flags, torch's kernel dispatch and oneDNN/MKL build, thread counts, and the
    content hash of `data` when given)."""
    return {
        "machine": machine_info(),
        "versions": library_versions(("albumentations",)),
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
        "provenance": provenance(repo=REPO, data=data),
    }


def dataset_description(data: str) -> dict:
    """The dataset's `dataset.json` (generator, seed, sizes), or just its path."""
    manifest = Path(data) / "dataset.json"
    return json.loads(manifest.read_text()) if manifest.is_file() else {"path": data}


def trained_with(model_path: Path, cmd: list[str]) -> bool:
    """Whether `model_path` exists and its model card records `cmd` (`wsdeploy train ...`),
    compared in the trainer's canonical form (flag order and number spelling do not matter)."""
    if not model_path.is_file():
        return False
    recorded = read_checkpoint(model_path)[0].training.get("command")
    return recorded is not None and shlex.split(recorded) == _normalised(cmd)


def _normalised(cmd: list[str]) -> list[str]:
    """`cmd` as the trainer records it (`wsdeploy.cli.train` canonical order and values)."""
    from wsdeploy.cli.main import build_parser
    from wsdeploy.cli.train import command_line

    return shlex.split(command_line(build_parser("train").parse_args(cmd[1:])))


def summarise_run(name: str, out: Path, command: str) -> dict:
    """The row of a finished run in `out` (model.pt + train_log.jsonl)."""
    card, _ = read_checkpoint(out / "model.pt")
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    step_times = [e["step_time_s"] for e in log if "step_time_s" in e]
    record = out / RUN_RECORD
    trained_at = json.loads(record.read_text()) if record.is_file() else None
    return {
        "name": name,
        "miou": card.evaluation.get("miou"),
        "per_class_iou": card.evaluation.get("per_class_iou"),
        "step_time_s": round(statistics.median(step_times), 4) if step_times else None,
        "steps": card.training.get("steps"),
        "loadavg_1m_after": round(os.getloadavg()[0], 2),
        "command": command,
        "trained_at": trained_at,
        # the run's own cost, recorded when it trained (None for runs from before the record kept it)
        "wall_s": (trained_at or {}).get("wall_s"),
        "cpu_s": (trained_at or {}).get("cpu_s"),
    }


if __name__ == "__main__":
    sys.exit(main())
