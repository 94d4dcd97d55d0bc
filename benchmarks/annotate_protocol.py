"""Choose annotate's settings on one folder of photographs, report them on the other, both ways.

Reads the results of benchmarks/annotate.py on two folders (default GrabCut-13 and GrabCut-12)
and, for each direction A -> B: among the candidate rows (`--candidates`, a name prefix; by
default the graph-cut grid) whose slowest photo of A took at most `--max-cpu-s` CPU seconds
(the issue's 2 s budget; default no limit), picks the one with the best mean of the two
scribble sets' mIoU on A, and reports it on B next to the baselines of B (re-run in the same benchmark
process). Then the mean over all photographs of both folders (each image weighs the same) for
every row, and the gap to OpenCV GrabCut. Nothing is chosen per image, and nothing on the
reporting folder.

    python benchmarks/annotate_protocol.py      # writes benchmarks/results/annotate_protocol.json
    python benchmarks/annotate_protocol.py --max-cpu-s 2 --out benchmarks/results/annotate_protocol_budget.json

Prints the README table (markdown).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from wsdeploy.atomic import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SETS = ("scribbles", "scribbles_dense")
GRABCUT = "OpenCV GrabCut (5 iterations, mask init)"


def _score(row: dict) -> float:
    return sum(row[s]["miou"] for s in SETS) / len(SETS)


def _per_image(row: dict, key: str) -> dict[str, float]:
    """Per-image IoU averaged over the row's seeds."""
    seeds = list(row[key]["per_seed"].values())
    return {name: sum(s["per_image"][name] for s in seeds) / len(seeds) for name in seeds[0]["per_image"]}


def choose(results: dict, candidates: str, max_cpu_s: float | None = None) -> dict:
    """The candidate row (name prefix `candidates`) with the best mean of the two sets' mIoU,
    among those whose max CPU seconds per photo is <= max_cpu_s (None: every candidate)."""
    rows = [r for r in results["methods"] if r["name"].startswith(candidates)]
    if not rows:
        raise ValueError(f"no row of {results['data']} starts with {candidates!r}")
    if max_cpu_s is not None:
        rows = [r for r in rows if r["max_cpu_s_per_image"] <= max_cpu_s]
        if not rows:
            raise ValueError(f"no candidate of {results['data']} took <= {max_cpu_s} CPU-s on every photo")
    return max(rows, key=_score)


def pooled(a: dict, b: dict, name: str) -> dict[str, float] | None:
    """Mean IoU over the images of both folders for the row `name`, per scribble set."""
    ra = next((r for r in a["methods"] if r["name"] == name), None)
    rb = next((r for r in b["methods"] if r["name"] == name), None)
    if ra is None or rb is None:
        return None
    out = {}
    for key in SETS:
        values = list(_per_image(ra, key).values()) + list(_per_image(rb, key).values())
        out[key] = round(sum(values) / len(values), 4)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", type=Path, default=RESULTS / "annotate_grabcut13.json")
    parser.add_argument("--b", type=Path, default=RESULTS / "annotate_grabcut12.json")
    parser.add_argument("--candidates", default="graphcut gamma=", help="name prefix of the rows to choose among")
    parser.add_argument("--max-cpu-s", type=float, default=None,
                        help="choose only among rows whose slowest photo of the choosing folder took at most "
                             "this many CPU seconds (default: no limit)")
    parser.add_argument("--out", type=Path, default=RESULTS / "annotate_protocol.json")
    args = parser.parse_args(argv)
    command = " ".join(["python benchmarks/annotate_protocol.py", *(sys.argv[1:] if argv is None else argv)])
    a, b = json.loads(args.a.read_text()), json.loads(args.b.read_text())
    names = {id(a): Path(a["data"]).name, id(b): Path(b["data"]).name}
    directions = []
    for tune, report in ((a, b), (b, a)):
        chosen = choose(tune, args.candidates, args.max_cpu_s)
        on_report = next(r for r in report["methods"] if r["name"] == chosen["name"])
        baselines = {r["name"]: {s: r[s]["miou"] for s in SETS} for r in report["methods"]
                     if not r["name"].startswith(args.candidates)}
        directions.append({
            "chosen_on": names[id(tune)], "reported_on": names[id(report)], "chosen": chosen["name"],
            "score_on_chosen_folder": {s: chosen[s]["miou"] for s in SETS},
            "score_on_reported_folder": {s: on_report[s]["miou"] for s in SETS},
            "max_cpu_s_per_image": {"chosen_folder": chosen["max_cpu_s_per_image"],
                                    "reported_folder": on_report["max_cpu_s_per_image"]},
            "others_on_reported_folder": baselines,
        })
    every = sorted({r["name"] for r in a["methods"]} & {r["name"] for r in b["methods"]})
    pooled_rows = {n: pooled(a, b, n) for n in every}
    gc = pooled_rows.get(GRABCUT)
    result = {
        "benchmark": "annotate_protocol",
        "commands": [command, *a.get("commands", []), *b.get("commands", [])],
        "inputs": [str(args.a.relative_to(ROOT)) if args.a.is_relative_to(ROOT) else str(args.a),
                   str(args.b.relative_to(ROOT)) if args.b.is_relative_to(ROOT) else str(args.b)],
        "rule": "choose the candidate with the best mean of the two scribble sets' mIoU on one folder"
                + ("" if args.max_cpu_s is None else
                   f" among those whose slowest photo there took <= {args.max_cpu_s:g} CPU-s")
                + ", report it on the other; pooled = mean IoU over the images of both folders",
        "max_cpu_s": args.max_cpu_s,
        "directions": directions,
        "pooled": pooled_rows,
        "pooled_minus_grabcut": {n: {s: round(v[s] - gc[s], 4) for s in SETS} for n, v in pooled_rows.items()}
        if gc else None,
        "machine": a.get("machine"), "versions": a.get("versions"),
    }
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    for d in directions:
        print(f"chosen on {d['chosen_on']}: {d['chosen']} -> on {d['reported_on']}: "
              f"{d['score_on_reported_folder']}")
    print("\n| method | " + " | ".join(f"{names[id(x)]} {s}" for x in (a, b) for s in SETS)
          + " | all 25 scribbles | all 25 dense |")
    print("|---" * (2 + 2 * len(SETS) + 1) + "|")
    for n in every:
        cells = []
        for x in (a, b):
            row = next(r for r in x["methods"] if r["name"] == n)
            cells += [f"{row[s]['miou']:.3f}" + (f" ± {row[s]['seed_std']:.3f}" if len(row["seeds"]) > 1 else "")
                      for s in SETS]
        p = pooled_rows[n]
        print(f"| {n} | " + " | ".join(cells) + f" | {p['scribbles']:.3f} | {p['scribbles_dense']:.3f} |")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
