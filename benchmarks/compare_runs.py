"""Do two training runs agree to the last digit? Compare their logs and final evaluations.

For a change that must not change behaviour (a refactor), train the same command with the
code before and after it, on the same machine and dataset, then:

    python benchmarks/compare_runs.py --run before=/tmp/before/runs/pce_crf \\
        --run after=/tmp/after/runs/pce_crf --json benchmarks/results/house_reproduction.json

Each run folder holds the trainer's `train_log.jsonl` and `model.pt`. Every logged loss term
(every `--log-every` steps) and the final val mIoU and per-class IoU are compared for exact
equality; the first step where a term differs, if any, is reported with both values.
Wall-clock fields (`step_time_s`) are not compared.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scribble_table import results_header  # noqa: E402

from wsdeploy.checkpoint import read_checkpoint

_NOT_COMPARED = ("step_time_s",)


def read_run(folder: Path) -> dict:
    entries = [json.loads(line) for line in (folder / "train_log.jsonl").read_text().splitlines() if line.strip()]
    card = read_checkpoint(folder / "model.pt")[0]
    return {
        "train": [e for e in entries if "split" not in e],
        "evaluation": card.evaluation,
        "command": card.training.get("command"),
        "steps": card.training.get("steps"),
    }


def first_difference(a: list[dict], b: list[dict]) -> dict | None:
    for x, y in zip(a, b):
        for key in sorted(set(x) | set(y)):
            if key in _NOT_COMPARED:
                continue
            if x.get(key) != y.get(key):
                return {"step": x.get("step"), "key": key, "values": [x.get(key), y.get(key)]}
    if len(a) != len(b):
        return {"step": None, "key": "log length", "values": [len(a), len(b)]}
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", action="append", required=True, metavar="NAME=FOLDER",
                        help="a label and a run folder (exactly two)")
    parser.add_argument("--json", required=True, help="results file to write")
    args = parser.parse_args(argv)
    if len(args.run) != 2 or not all("=" in r for r in args.run):
        parser.error("give exactly two --run NAME=FOLDER")
    (name_a, dir_a), (name_b, dir_b) = (r.split("=", 1) for r in args.run)
    a, b = read_run(Path(dir_a)), read_run(Path(dir_b))
    diff = first_difference(a["train"], b["train"])
    same_eval = a["evaluation"] == b["evaluation"]
    out = {
        **results_header(),
        "runs": {name_a: {"folder": dir_a, "command": a["command"], "steps": a["steps"],
                          "miou": a["evaluation"].get("miou")},
                 name_b: {"folder": dir_b, "command": b["command"], "steps": b["steps"],
                          "miou": b["evaluation"].get("miou")}},
        "same_command": a["command"] == b["command"],
        "log_entries_compared": min(len(a["train"]), len(b["train"])),
        "first_log_difference": diff,
        "identical_logs": diff is None,
        "identical_evaluation": same_eval,
    }
    tmp = Path(args.json).with_suffix(".json.tmp")
    tmp.write_text(json.dumps(out, indent=1) + "\n")
    tmp.replace(args.json)
    print(json.dumps({k: out[k] for k in ("identical_logs", "identical_evaluation", "first_log_difference")}))
    print(json.dumps({n: r["miou"] for n, r in out["runs"].items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
