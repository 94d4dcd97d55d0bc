"""Training step time of one `wsdeploy train` command under several installs, interleaved.

Compares code versions (e.g. before and after a refactor) on the same machine at the same
time: each install's interpreter runs the same short training run in turn (A, B, A, B, ...),
so a change in the machine's load hits every variant alike. The step time of a run is the
median of its `train_log.jsonl` `step_time_s` entries after the first `--skip` (warm-up);
a variant's figure is the median over its repeats, all runs kept.

    python benchmarks/step_time.py --data data/synthetic-128-seed1 \\
        --variant before=/tmp/venv-before/bin/python --variant after=.venv/bin/python \\
        --repeats 3 --steps 60 --json benchmarks/results/house_step_time.json \\
        -- --losses pce,crf --model deeplabv3plus_resnet18 --width 16 --crop-size 128 ...

Threads: each run gets OMP_NUM_THREADS / MKL_NUM_THREADS = `--threads` (default 1).

On a shared machine wall-clock step times follow the load, not the code. `--cpu-time` adds a
figure that does not: each repeat also runs the command for `--short-steps` steps, and the
CPU seconds per step are (CPU of the long run - CPU of the short run) / (the difference in
steps), the CPU being the child's user + system time (`resource.getrusage`), so start-up,
imports and the final checkpoint cancel out.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scribble_table import results_header  # noqa: E402


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="dataset folder passed to every run")
    parser.add_argument("--variant", action="append", required=True, metavar="NAME=PYTHON",
                        help="a label and the interpreter of an install of wsdeploy (repeat)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per variant (default 3)")
    parser.add_argument("--steps", type=int, default=60, help="steps per run (default 60)")
    parser.add_argument("--log-every", type=int, default=10, help="log interval in steps (default 10)")
    parser.add_argument("--skip", type=int, default=1, help="log entries dropped as warm-up (default 1)")
    parser.add_argument("--threads", type=int, default=1, help="OpenMP/MKL threads per run (default 1)")
    parser.add_argument("--json", required=True, help="results file to write")
    parser.add_argument("--cpu-time", action="store_true",
                        help="also CPU seconds per step, from a second, shorter run per repeat (see above)")
    parser.add_argument("--short-steps", type=int, default=20, help="steps of the shorter run (default 20)")
    if argv is None:
        argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    for v in args.variant:
        if "=" not in v:
            parser.error(f"--variant expects NAME=PYTHON, got {v!r}")
    if args.repeats < 1 or args.steps <= args.log_every * (args.skip + 1):
        parser.error("need --repeats >= 1 and --steps > --log-every * (--skip + 1)")
    if args.cpu_time and not 1 <= args.short_steps < args.steps:
        parser.error("--short-steps must be >= 1 and below --steps")
    return args, argv[split + 1:]


def _train(python: str, data: str, train_flags: list[str], args: argparse.Namespace, steps: int,
           ) -> tuple[list[dict], float, list[str]]:
    """One `wsdeploy train` run: (its log entries, its CPU seconds, the command)."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [python, "-m", "wsdeploy", "train", "--data", str(Path(data).resolve()), "--out-dir", out, "--steps",
               str(steps), "--log-every", str(args.log_every), "--checkpoint-every", "0",
               "--no-progress", "--no-tensorboard", "--val-split", "", *train_flags]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        # cwd: the scratch folder, so `-m wsdeploy` imports the install, not a checkout here
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=out)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            raise SystemExit(f"run failed ({shlex.join(cmd)}):\n{done.stderr[-2000:]}")
        entries = [json.loads(line) for line in Path(out, "train_log.jsonl").read_text().splitlines()]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return entries, cpu, cmd


def one_run(python: str, data: str, train_flags: list[str], args: argparse.Namespace) -> dict:
    entries, cpu, cmd = _train(python, data, train_flags, args, args.steps)
    times = [e["step_time_s"] for e in entries if "step_time_s" in e][args.skip:]
    result = {"step_time_s": statistics.median(times), "log_step_times_s": times,
              "loadavg_1m": os.getloadavg()[0], "command": shlex.join(cmd), "cpu_s": cpu}
    if args.cpu_time:
        _, short_cpu, short_cmd = _train(python, data, train_flags, args, args.short_steps)
        result.update(cpu_s_per_step=(cpu - short_cpu) / (args.steps - args.short_steps), short_cpu_s=short_cpu,
                      short_command=shlex.join(short_cmd))
    return result


def main(argv: list[str] | None = None) -> int:
    args, train_flags = parse_args(argv)
    variants = dict(v.split("=", 1) for v in args.variant)
    runs: dict[str, list[dict]] = {name: [] for name in variants}
    for repeat in range(args.repeats):
        for name, python in variants.items():
            result = one_run(python, args.data, train_flags, args)
            runs[name].append(result)
            cpu = f", {result['cpu_s_per_step']:.4f} CPU-s/step" if args.cpu_time else ""
            print(f"{name} repeat {repeat}: {result['step_time_s']:.4f} s/step{cpu} (load {result['loadavg_1m']:.1f})",
                  flush=True)
    versions = {}
    for name, python in variants.items():
        where = subprocess.run([python, "-c", "import wsdeploy, torch; print(wsdeploy.__file__, torch.__version__)"],
                               capture_output=True, text=True, cwd=tempfile.gettempdir()).stdout.split()
        versions[name] = {"python": python, "wsdeploy_file": where[0] if where else None,
                          "torch": where[1] if len(where) > 1 else None}
    out = {
        **results_header(data=args.data),
        "threads_per_run": args.threads,
        "variants": versions,
        "median_step_time_s": {name: statistics.median(r["step_time_s"] for r in rs) for name, rs in runs.items()},
        **({"median_cpu_s_per_step": {name: statistics.median(r["cpu_s_per_step"] for r in rs)
                                      for name, rs in runs.items()}} if args.cpu_time else {}),
        "runs": runs,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(args.json).with_suffix(".json.tmp")
    tmp.write_text(json.dumps(out, indent=1) + "\n")
    tmp.replace(args.json)
    print(json.dumps({k: out[k] for k in ("median_step_time_s", "median_cpu_s_per_step") if k in out}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
