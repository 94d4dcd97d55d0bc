"""The image-level table: tags -> classifier -> CAMs -> seeds -> segmenter, on the synthetic benchmark.

Every stage is a `wsdeploy` command, recorded verbatim in the JSON:

1. `wsdeploy train --supervision tags --model classifier_*`: the CAM classifier on the train split;
2. `wsdeploy cam`: multi-scale + flip CAMs of the train split, a threshold sweep against the
   train split's dense masks (the threshold is picked there, never on val), then seeds with and
   without dense-CRF refinement;
3. `wsdeploy train --supervision tags --method seeds-rloss | sec`: segmenters on the better seeds
   (by seed mIoU on train), evaluated on the val split's dense masks, like the full-supervision row,
   once per training seed (`--train-seeds`, default 0,1; a row keeps each value and their mean);
4. with `--propagation`: the affinity net, random walk, self-training rounds, regional contrast and
   (`--tags4x`) the 4x-tags row of issue 14 (`imagelevel_stages.py`).

    python benchmarks/imagelevel_table.py --data data/synthetic-128-seed1 --out-dir runs/imagelevel \
        --classifier-args "--model classifier_resnet18 --output-stride 8" -- --model deeplabv3plus_resnet18 ...

Everything after `--` is passed to every segmenter's `wsdeploy train` run (model, schedule,
crop); the classifier run gets `--classifier-args` instead (its own model and schedule). A stage
whose output already exists with the same command is reused (`--fresh` re-runs all; for training
runs the command recorded in the model card is compared), so an interrupted table continues.
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import imagelevel_stages
from scribble_table import dataset_description, results_header, split_passthrough, trained_with

from wsdeploy.atomic import atomic_write_text
from wsdeploy.checkpoint import read_checkpoint
from wsdeploy.data.datasets import SegmentationDataset
from wsdeploy.data.image_io import read_label_png

FINAL_RUNS = {  # name -> extra `wsdeploy train` flags (after the passthrough ones)
    "seeds+pce": ["--method", "seeds-rloss", "--losses", "pce"],
    "seeds+pce+crf": ["--method", "seeds-rloss", "--losses", "pce,crf"],
    "seeds+pce+crf+entropy": ["--method", "seeds-rloss", "--losses", "pce,crf,entropy"],
    "sec": ["--method", "sec", "--losses", "pce"],
}


def main() -> int:
    argv, passthrough = split_passthrough(sys.argv[1:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="dataset folder with images, masks, tags.txt, splits")
    parser.add_argument("--out-dir", default="runs/imagelevel", help="one sub-folder per stage")
    parser.add_argument("--json", default="benchmarks/results/imagelevel_table.json", help="results file")
    parser.add_argument("--classifier-args", default="", help="the classifier run's flags (model, schedule)")
    parser.add_argument("--fg-thresholds", default="0.1,0.2,0.3,0.4,0.5,0.6,0.7", help="sweep grid")
    parser.add_argument("--full-model", default=None,
                        help="model.pt of the full-supervision run with the same flags (e.g. the "
                        "scribble table's), instead of training it again; a comma list = one per seed")
    parser.add_argument("--runs", default=",".join(FINAL_RUNS), help=f"final runs from {list(FINAL_RUNS)}")
    parser.add_argument("--fresh", action="store_true", help="re-run stages whose outputs exist")
    parser.add_argument("--also-runs-on", default="", choices=["", "cam seeds", "cam+crf seeds"],
                        help="also train final runs on these seeds (rows named '<run> on <seeds>')")
    parser.add_argument("--also-runs", default=None, help="the final runs trained on --also-runs-on (default: --runs)")
    parser.add_argument("--until", default="final", choices=["final", "pseudo", "sweep"],
                        help="'sweep': stop after the classifier, the train CAMs and their threshold sweep "
                        "(e.g. to compare classifier budgets: benchmarks/results/imagelevel_classifier6k_sweep.json); "
                        "'pseudo' (with --propagation): stop after the pseudo-masks, before any segmenter trains")
    group = parser.add_argument_group("propagation stages (issue 14)")
    parser.add_argument("--sweep-args", default="",
                        help="extra flags of the train sweeps (CAMs, walks), e.g. '--pick-by precision --min-coverage 0.5'")
    group.add_argument("--propagation", action="store_true", help="also run the affinity / random walk / self-training stages")
    group.add_argument("--train-seeds", default="0,1", help="training seeds of every trained row (default: 0,1)")
    group.add_argument("--parallel", type=int, default=1,
                       help="the training seeds' affinity and self-training runs trained at the same time "
                       "(set OMP_NUM_THREADS so that parallel x threads fits the cores)")
    group.add_argument("--affinity-args", default="", help="extra flags of the affinity runs, e.g. '--steps 2000 --affinity-radius 5'")
    group.add_argument("--betas", default="4,8,16", help="random-walk beta grid, picked on train")
    group.add_argument("--walk-steps", default="64,256", help="random-walk steps grid, picked on train")
    group.add_argument("--rounds", type=int, default=2, help="self-training rounds")
    group.add_argument("--round-losses", default="pce,crf", help="--losses of the self-training rounds")
    group.add_argument("--round-args", default="--relabel-crf", help="extra flags of the self-training run")
    group.add_argument("--pseudo-runs", default="",
                       help=f"final runs from {list(FINAL_RUNS)} also trained on the pseudo-masks (e.g. sec)")
    group.add_argument("--round-runs", default="",
                       help=f"final runs from {list(FINAL_RUNS)} also trained on a self-training round's re-labels (e.g. sec)")
    group.add_argument("--round-runs-from", type=int, default=1,
                       help="the round whose re-labels of the train split --round-runs train on (1 .. --rounds)")
    group.add_argument("--contrast-weight", type=float, default=0.1, help="classifier --contrast-weight (0: skip)")
    group.add_argument("--tags4x", action="store_true", help="also the 4x-tags row (generates its dataset)")
    group.add_argument("--tags4x-seeds", action="store_true",
                       help="the 4x-tags row without propagation (no --propagation needed): the 4x classifier, its "
                       "seeds at the original train pick and the --runs on them, per training seed")
    group.add_argument("--tags4x-runs", default=None,
                       help=f"the final runs from {list(FINAL_RUNS)} trained on the 4x seeds (default: --runs)")
    group.add_argument("--tags4x-classifier-args", default=None,
                       help="the 4x classifier's flags (default: --classifier-args), e.g. with --steps 12000 for "
                       "as many epochs as the original classifier")
    group.add_argument("--tags4x-rounds", type=int, default=None,
                       help="self-training rounds of the 4x chain (default: --rounds); 0: only its --pseudo-runs "
                       "(and no --round-runs), e.g. the best row, SEC on the pseudo-masks, alone")
    args = parser.parse_args(argv)
    names = [n for n in args.runs.split(",") if n]
    for flag, text in (("runs", args.runs), ("--pseudo-runs", args.pseudo_runs), ("--round-runs", args.round_runs),
                       ("--tags4x-runs", args.tags4x_runs or "")):
        if unknown := [n for n in text.split(",") if n and n not in FINAL_RUNS]:
            parser.error(f"unknown {flag} {unknown}; choose from {list(FINAL_RUNS)}")
    if args.round_runs and not 1 <= args.round_runs_from <= args.rounds:
        parser.error(f"--round-runs-from {args.round_runs_from} is not a round of --rounds {args.rounds}")
    if args.tags4x_rounds is not None and (args.tags4x_rounds < 0 or not args.tags4x):
        parser.error("--tags4x-rounds needs --tags4x and is 0 or more")
    if args.tags4x_classifier_args is not None and not (args.tags4x or args.tags4x_seeds):
        parser.error("--tags4x-classifier-args needs --tags4x-seeds (or --tags4x)")
    if args.tags4x_runs is not None and not args.tags4x_seeds:
        parser.error("--tags4x-runs needs --tags4x-seeds")
    tags4x_runs = names if args.tags4x_runs is None else [n for n in args.tags4x_runs.split(",") if n]
    if args.round_runs and not args.propagation:
        parser.error("--round-runs needs --propagation (the rounds are the propagation stages')")
    if args.until == "pseudo" and not args.propagation:  # before hours of classifier training, not after
        parser.error("--until pseudo needs --propagation (the pseudo-masks are the random walk's)")

    full_models = [p for p in (args.full_model or "").split(",") if p]  # one model.pt per training seed
    if missing := [p for p in full_models if not Path(p).is_file()]:
        # not an error yet: the full run may train beside the table; it is read only at the end
        print(f"note: --full-model {', '.join(missing)} does not exist yet; it is read after the last "
              "segmenter", file=sys.stderr)

    out = Path(args.out_dir)
    data = args.data
    results: dict[str, Any] = {**results_header(data=data), "dataset": dataset_description(data), "runs": []}

    def save() -> None:  # partial results survive a crash
        atomic_write_text(args.json, json.dumps(results, indent=2))

    def wsdeploy(cmd: list[str], done: Path) -> str:
        text = " ".join(shlex.quote(c) for c in ["wsdeploy", *cmd])
        stamp = done.parent / (done.name + ".command")
        if not args.fresh and done.exists():
            if cmd[0] == "train":  # the model card records the command, in canonical form
                same = trained_with(done, ["wsdeploy", *cmd])
            else:
                same = stamp.is_file() and stamp.read_text() == text
            if same:
                print(f"[reuse] {text}", flush=True)
                return text
        print(f"[run] {text}", flush=True)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "wsdeploy", *cmd], check=True)
        print(f"[done] {time.perf_counter() - t0:.0f} s", flush=True)
        stamp.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(stamp, text)
        return text

    # 1. classifier
    clf = out / "classifier"
    clf_cmd = wsdeploy(
        ["train", "--data", data, "--supervision", "tags", "--out-dir", str(clf), "--no-progress",
         *shlex.split(args.classifier_args)],
        clf / "model.pt",
    )
    card, _ = read_checkpoint(clf / "model.pt")
    results["classifier"] = {"evaluation": card.evaluation, "command": clf_cmd}

    # 2. CAMs of the train split, threshold sweep on the train split's masks, seeds
    cams = out / "cams_train"
    cam_cmd = wsdeploy(["cam", "--model", str(clf / "model.pt"), "--data", data, "--split", "train",
                        "--out", str(cams)], cams / "cams.json")
    sweep_json = out / "sweep_train.json"
    sweep_cmd = wsdeploy(["cam", "--cams", str(cams), "--data", data, "--split", "train", "--sweep",
                          "--sweep-json", str(sweep_json), "--fg-thresholds", args.fg_thresholds,
                          *shlex.split(args.sweep_args)],
                         sweep_json)
    sweep = json.loads(sweep_json.read_text())
    best = sweep["best"]
    results["sweep"] = {"split": "train", "picked_by": sweep["picked_by"], "best": best,
                        "rows": sweep["rows"], "command": sweep_cmd}
    results["runs"].append({
        "name": "cam", "stage": "cam", "miou": best["cam_miou"], "split": "train",
        "note": "dense CAM argmax over the image's tags" + (
            f", background threshold {best['fg_threshold']}" if sweep.get("background_index") is not None else ""),
        "command": f"{cam_cmd} && {sweep_cmd}",
    })
    if args.until == "sweep":
        save()
        print(f"wrote {args.json} (until the sweep: best {json.dumps(best)})")
        return 0
    # the same CAMs on val, at the threshold picked on train: comparable with the final rows
    cams_val = out / "cams_val"
    camv_cmd = wsdeploy(["cam", "--model", str(clf / "model.pt"), "--data", data, "--split", "val",
                         "--out", str(cams_val)], cams_val / "cams.json")
    val_json = out / "cam_val.json"
    valsweep_cmd = wsdeploy(["cam", "--cams", str(cams_val), "--data", data, "--split", "val", "--sweep",
                             "--sweep-json", str(val_json), "--fg-thresholds", str(best["fg_threshold"])],
                            val_json)
    results["runs"].append({
        "name": "cam", "stage": "cam", "miou": json.loads(val_json.read_text())["rows"][0]["cam_miou"],
        "split": "val", "note": "threshold picked on train", "command": f"{camv_cmd} && {valsweep_cmd}",
    })
    save()

    seed_rows = {}
    for name, extra in (("cam seeds", []), ("cam+crf seeds", ["--crf"])):
        folder = out / ("seeds_crf" if extra else "seeds")
        cmd = wsdeploy(["cam", "--cams", str(cams), "--data", data, "--split", "train",
                        "--seeds-out", str(folder), "--fg-threshold", str(best["fg_threshold"]), *extra],
                       folder)
        stats = seed_statistics(data, folder)
        row = {"name": name, "stage": "seeds", "miou": stats["miou_as_background"], "split": "train",
               "seeds": str(folder.resolve()), **stats, "command": cmd}
        seed_rows[name] = row
        results["runs"].append(row)
        print(f"[{name}] {json.dumps(stats)}", flush=True)
        save()
    chosen = max(seed_rows.values(), key=lambda r: r["miou"])
    results["seeds_used"] = chosen["name"]

    def propagate(until: str) -> None:  # the propagation stages (issue 14) on this classifier's CAMs
        imagelevel_stages.run_stages(
            wsdeploy, data=data, out=out, args=args, passthrough=passthrough, results=results, save=save,
            classifier=clf / "model.pt", cams_train=cams, cams_val=cams_val,
            seed_dirs={"cam seeds": out / "seeds", "cam+crf seeds": out / "seeds_crf"}, until=until,
        )

    if args.until == "pseudo":
        propagate("pseudo")
        print(f"wrote {args.json} (until the pseudo-masks)")
        for run in results["runs"]:
            print(f"  {run['stage']:>6} {run['name']:>22} ({run['split']}): {run['miou']:.4f}")
        return 0

    # 3. segmenters on the seeds, and the full-supervision reference
    seed_sets = [(chosen, "", names)]
    if args.also_runs_on and args.also_runs_on != chosen["name"]:
        also = names if args.also_runs is None else [n for n in args.also_runs.split(",") if n]
        if unknown := [n for n in also if n not in FINAL_RUNS]:
            parser.error(f"unknown --also-runs {unknown}; choose from {list(FINAL_RUNS)}")
        suffix = "_on_" + args.also_runs_on.split()[0].replace("+", "_")
        seed_sets.append((seed_rows[args.also_runs_on], suffix, also))
    train_seeds = [int(v) for v in args.train_seeds.split(",") if v]
    for seeds_row, suffix, run_names in seed_sets:
        for name in run_names:
            label = name if not suffix else f"{name} on {seeds_row['name']}"
            per_seed = {}
            for seed in train_seeds:
                job, done = imagelevel_stages.final_run_job(
                    name, seed, data=data, seeds=seeds_row["seeds"], out=out, suffix=suffix,
                    passthrough=passthrough, final_runs=FINAL_RUNS)
                per_seed[seed] = final_row(label, done, wsdeploy(job, done))
            results["runs"].append(imagelevel_stages.seed_mean(per_seed))
            print(f"[{label}] val mIoU {results['runs'][-1]['miou']:.4f}", flush=True)
            save()
    if args.propagation:
        propagate("final")
    if args.tags4x_seeds:
        rows = imagelevel_stages.tags4x_seed_rows(
            wsdeploy, data=data, out=out, args=args, passthrough=passthrough, fg=best["fg_threshold"],
            crf=chosen["name"] == "cam+crf seeds", run_names=tags4x_runs)
        results["runs"].extend(rows)
        for row in rows:
            print(f"[{row['name']}] val mIoU {row['miou']:.4f}", flush=True)
        save()
    if full_models:
        per_seed = {}
        if missing := [p for p in full_models if not Path(p).is_file()]:  # it may be training beside the table
            raise SystemExit(f"--full-model: no such file: {', '.join(missing)}; every other row is in "
                             f"{args.json}; rerun when it exists (finished stages are reused)")
        for i, path in enumerate(full_models):
            full_card, _ = read_checkpoint(path)
            per_seed[i] = final_row("full", Path(path), full_card.training.get("command"))
        results["runs"].append(imagelevel_stages.seed_mean(per_seed))
    else:
        run_dir = out / "full"
        cmd = wsdeploy(["train", "--data", data, "--supervision", "full", "--losses", "pce",
                        "--out-dir", str(run_dir), "--no-progress", *passthrough], run_dir / "model.pt")
        results["runs"].append(final_row("full", run_dir / "model.pt", cmd))
    save()
    print(f"wrote {args.json}")
    for run in results["runs"]:
        print(f"  {run['stage']:>6} {run['name']:>22}: {run['miou']:.4f}")
    return 0


def final_row(name: str, model_path: Path, command: str | None) -> dict[str, Any]:
    card, _ = read_checkpoint(model_path)
    return {"name": name, "stage": "final", "miou": card.evaluation.get("miou"),
            "split": card.evaluation.get("split"), "per_class_iou": card.evaluation.get("per_class_iou"),
            "steps": card.training.get("steps"), "command": command}


def seed_statistics(data: str, seeds_dir: Path) -> dict[str, float | None]:
    """Seeds of the train split against its dense masks: precision, coverage and mIoU with
    unseeded pixels ignored or counted as background (as wrong, without a background class)."""
    from wsdeploy.training.tags.seeds import seed_stats
    from wsdeploy.training.tags.targets import dataset_background_index

    dataset = SegmentationDataset(data, split="train", labels="masks")
    background = dataset_background_index(dataset)
    total = None
    for i, image_id in enumerate(dataset.ids):
        seeds = read_label_png(seeds_dir / f"{image_id}.png")
        stats = seed_stats(seeds, dataset[i]["label"], len(dataset.classes), background_index=background)
        total = stats if total is None else total + stats
    return total.to_dict()


if __name__ == "__main__":
    sys.exit(main())
