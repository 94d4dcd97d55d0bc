"""The image-level table's propagation stages: affinity net, random walk, self-training rounds,
regional contrast and the 4x-tags row (issue 14). Called by `imagelevel_table.py --propagation`
after its classifier, CAM and seed stages; every step is a `wsdeploy` command recorded in the
JSON. The flags are `imagelevel_table.py`'s ("propagation stages").

Per training seed s (`--train-seeds`, default 0,1; each row keeps both values and their mean):

1. affinity: `wsdeploy train --method affinity --affinity-classifier CLF --seeds SEEDS` on the
   seed set with the highest precision on train (the CRF-checked seeds in the first table); the
   synthetic benchmark's stuff classes give the background pairs (`--affinity-background`);
2. random walk (`wsdeploy cam --propagate`) of the train CAMs for every (beta, steps) of the
   grid, each with the threshold sweep on train; (beta, steps, threshold) are picked by the
   pseudo-masks' train mIoU with seed 0's affinity net and used for every seed; val is read
   once per row, at the picked setting;
3. pseudo-masks: the walk's seeds at the picked threshold, with and without the dense-CRF check
   (stage `pseudo`, train split), the better one by train mIoU feeds
4. self-training: `wsdeploy train --method seeds-rloss --rounds N` (stage `final`, rows
   "round 1" .. "round N", val mIoU); with `--pseudo-runs`, those final runs of the table (e.g.
   `sec`) trained on the same pseudo-masks (rows "<run> on pseudo-masks"); with `--round-runs`,
   trained on round `--round-runs-from`'s re-labels (default 1; rows "<run> on round 1 re-labels");
5. regional contrast: the classifier again with `--contrast-weight`, its CAM rows, and (only if
   its train CAM mIoU beats the plain classifier's: "keep it only if it helps") steps 1-4 on it;
6. 4x tags (`--tags4x`): the synthetic generator's images 0..639 and 800..2719 as train (tags
   only; their masks are never read: thresholds, beta and steps come from the original run) and
   the same val images 640..799; steps 1-4 with the classifier retrained on it (`--tags4x-rounds`
   self-training rounds, default `--rounds`; 0 trains only the `--pseudo-runs`); without
   propagation (`--tags4x-seeds`, `tags4x_seed_rows`): the 4x classifier's seeds at the original
   pick and the table's `--runs` on them. `--tags4x-classifier-args` gives the 4x classifier its
   own flags (e.g. as many epochs as the original: `--steps 12000`).
"""
from __future__ import annotations

import argparse
import json
import shlex
import statistics
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

Wsdeploy = Callable[[list[str], Path], str]


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def seed_mean(per_seed: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """A final row from its per-seed rows (`final_row`): the first's fields, miou = the mean."""
    first = next(iter(per_seed.values()))
    return _mean_row(first["name"], first["stage"], first["split"], per_seed,
                     **{k: v for k, v in first.items() if k not in ("name", "stage", "split", "miou")})


def _mean_row(name: str, stage: str, split: str, per_seed: dict[int, dict[str, Any]], **extra: Any) -> dict[str, Any]:
    values = [r["miou"] for r in per_seed.values()]
    return {"name": name, "stage": stage, "split": split, "miou": statistics.mean(values),
            "miou_std": statistics.stdev(values) if len(values) > 1 else None,
            "miou_per_seed": {str(s): r["miou"] for s, r in per_seed.items()},
            "runs_per_seed": {str(s): r for s, r in per_seed.items()}, **extra}


def _per_seed(wsdeploy: Wsdeploy, parallel: int, jobs: dict[int, tuple[list[str], Path]]) -> dict[int, str]:
    """Run one `wsdeploy` job per training seed, `parallel` at a time (the seeds' runs are
    independent); returns each seed's recorded command. A failed job fails the stage."""
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        futures = {s: pool.submit(wsdeploy, cmd, done) for s, (cmd, done) in jobs.items()}
        return {s: f.result() for s, f in futures.items()}


def chain(
    wsdeploy: Wsdeploy, *, tag: str, data: str, out: Path, classifier: Path, cams_train: Path, cams_val: Path,
    seed_dirs: dict[str, Path], args: Any, passthrough: list[str], picked: dict[str, Any] | None,
    train_masks: bool = True, until: str = "final",
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Steps 1-4 for one classifier (1-3 with `until="pseudo"`); returns (rows, the picked walk
    settings).

    `picked` = None: choose (beta, steps, threshold) on train (needs train masks); else reuse it.
    """
    from imagelevel_table import FINAL_RUNS, final_row, seed_statistics  # here: imagelevel_table imports this module

    seeds = [int(s) for s in args.train_seeds.split(",") if s]
    suffix = f" ({tag})" if tag else ""
    rows: list[dict[str, Any]] = []
    if train_masks:
        stats = {name: seed_statistics(data, folder) for name, folder in seed_dirs.items()}
        aff_seeds = max(stats, key=lambda n: stats[n]["precision"] or 0.0)
    else:
        aff_seeds = next(iter(seed_dirs))
    affinity = {s: out / f"affinity_seed{s}" / "model.pt" for s in seeds}
    commands = _per_seed(wsdeploy, args.parallel, {
        s: (["train", "--data", data, "--supervision", "tags", "--method", "affinity",
             "--affinity-classifier", str(classifier), *_affinity_background(data),
             "--seeds", str(seed_dirs[aff_seeds].resolve()),
             "--out-dir", str(affinity[s].parent), "--no-progress", "--seed", str(s),
             *shlex.split(args.affinity_args)], affinity[s]) for s in seeds})

    def walk(s: int, cams: Path, split: str, beta: float, steps: int, thresholds: str) -> tuple[Path, list[dict[str, Any]], str]:
        """Propagated CAMs of one split (and their sweep, unless train masks are off limits)."""
        folder = out / f"rw_{split}_seed{s}_b{beta:g}_t{steps}"
        sweep_json = folder.parent / (folder.name + "_sweep.json")
        sweep = split == "val" or train_masks
        cmd = wsdeploy(["cam", "--cams", str(cams), "--data", data, "--split", split, "--propagate", str(affinity[s]),
                        "--propagate-out", str(folder), "--beta", f"{beta:g}", "--steps", str(steps),
                        *(["--sweep", "--sweep-json", str(sweep_json), "--fg-thresholds", thresholds,
                           *(shlex.split(args.sweep_args) if split == "train" else [])] if sweep else [])],
                       sweep_json if sweep else folder / "cams.json")
        return folder, json.loads(sweep_json.read_text()) if sweep else {"rows": []}, cmd

    def at(report: dict[str, Any], fg: float) -> dict[str, Any]:
        return next(r for r in report["rows"] if abs(r["fg_threshold"] - fg) < 1e-9)

    if picked is None:
        grid = []
        for beta in _floats(args.betas):
            for steps in [int(v) for v in args.walk_steps.split(",") if v]:
                _, report, cmd = walk(seeds[0], cams_train, "train", beta, steps, args.fg_thresholds)
                grid.append({"beta": beta, "steps": steps, **report["best"], "picked_by": report["picked_by"],
                             "command": cmd})  # the sweep's own pick (its --pick-by, --min-coverage)
        top = max(grid, key=lambda g: g[g["picked_by"]] or 0.0)
        picked = {"beta": top["beta"], "steps": top["steps"], "fg_threshold": top["fg_threshold"],
                  "picked_by": f"the train sweep's {top['picked_by']}, seed 0's affinity net",
                  "grid": grid}
    beta, steps, fg = picked["beta"], picked["steps"], picked["fg_threshold"]
    per_seed_train: dict[int, dict[str, Any]] = {}
    per_seed_val: dict[int, dict[str, Any]] = {}
    pseudo_sets: dict[str, dict[int, dict[str, Any]]] = {"cam+rw": {}, "cam+rw+crf": {}}
    for s in seeds:
        folder, report, cmd = walk(s, cams_train, "train", beta, steps, args.fg_thresholds)  # = the grid's for seed 0
        if train_masks:
            per_seed_train[s] = {"miou": at(report, fg)["cam_miou"], "command": cmd, "affinity_command": commands[s]}
        _, val_report, vcmd = walk(s, cams_val, "val", beta, steps, str(fg))  # val: once, at the picked setting
        per_seed_val[s] = {"miou": at(val_report, fg)["cam_miou"], "command": vcmd}
        for name, extra in (("cam+rw", []), ("cam+rw+crf", ["--crf"])):
            pseudo = out / f"pseudo_{'crf_' if extra else ''}seed{s}"
            pcmd = wsdeploy(["cam", "--cams", str(folder), "--data", data, "--split", "train", "--seeds-out", str(pseudo),
                             "--fg-threshold", str(fg), *extra], pseudo / "seeds.json")
            st = seed_statistics(data, pseudo) if train_masks else {"miou_as_background": None}
            pseudo_sets[name][s] = {"miou": st["miou_as_background"], **st, "seeds": str(pseudo.resolve()), "command": pcmd}
    settings = {"beta": beta, "steps": steps, "fg_threshold": fg}
    if train_masks:
        rows.append(_mean_row("cam+rw" + suffix, "pseudo", "train", per_seed_train, walk=settings))
    rows.append(_mean_row("cam+rw" + suffix, "pseudo", "val", per_seed_val, walk=settings))
    if train_masks:
        rows.append(_mean_row("cam+rw+crf" + suffix, "pseudo", "train", pseudo_sets["cam+rw+crf"], walk=settings))
        use = max(pseudo_sets, key=lambda n: statistics.mean(r["miou"] for r in pseudo_sets[n].values()))
    else:
        use = picked.get("pseudo_used", "cam+rw")
    picked = {**picked, "pseudo_used": use}
    if until == "pseudo":
        return rows, picked
    per_round: dict[int, dict[int, dict[str, Any]]] = {r: {} for r in range(1, args.rounds + 1)}
    run_dirs = {s: out / f"selftrain_seed{s}" for s in seeds}
    if args.rounds > 0:
        _per_seed(wsdeploy, args.parallel, {
            s: (["train", "--data", data, "--supervision", "tags", "--method", "seeds-rloss",
                 "--seeds", pseudo_sets[use][s]["seeds"], "--losses", args.round_losses, "--rounds", str(args.rounds),
                 "--out-dir", str(run_dirs[s]), "--no-progress", *passthrough, *shlex.split(args.round_args),
                 "--seed", str(s)], run_dirs[s] / f"round{args.rounds}" / "train" / "model.pt") for s in seeds})
    for s in seeds:
        for r in per_round:
            model = run_dirs[s] / f"round{r}" / "train" / "model.pt"
            per_round[r][s] = final_row(f"round {r}", model, None)
    for r, per_seed in per_round.items():
        rows.append(_mean_row(f"round {r}{suffix}", "final", "val", per_seed, trained_on=use))
    for label, models, jobs, trained_on in final_runs_on_labels(
            args, data=data, out=out, passthrough=passthrough, final_runs=FINAL_RUNS,
            pseudo={s: pseudo_sets[use][s]["seeds"] for s in seeds}, selftrain=run_dirs, pseudo_used=use):
        cmds = _per_seed(wsdeploy, args.parallel, jobs)
        rows.append(_mean_row(label + suffix, "final", "val",
                              {s: final_row(label + suffix, models[s], cmds[s]) for s in seeds}, trained_on=trained_on))
    return rows, picked


def final_runs_on_labels(
    args: Any, *, data: str, out: Path, passthrough: list[str], final_runs: dict[str, list[str]],
    pseudo: dict[int, str], selftrain: dict[int, Path], pseudo_used: str,
) -> list[tuple[str, dict[int, Path], dict[int, tuple[list[str], Path]], str]]:
    """The final runs of the table trained on the chain's labels instead of the CAM seeds:
    `--pseudo-runs` on the pseudo-masks (`pseudo`: seed -> folder; runs `<run>_on_pseudo_seed<s>`)
    and `--round-runs` on self-training round `--round-runs-from`'s re-labels of the train split
    (`selftrain`: seed -> the `--rounds` run's folder; runs `<run>_on_round<r>_seed<s>`). Seed s
    trains on seed s's labels. Returns (row name, seed -> model.pt, seed -> (`wsdeploy` command,
    its done-file) for `_per_seed`, what it trained on) per run."""
    from wsdeploy.training.tags.self_training import round_paths

    r = args.round_runs_from
    sets = [(_names(args.pseudo_runs), "pseudo-masks", "pseudo", pseudo, pseudo_used),
            (_names(args.round_runs), f"round {r} re-labels", f"round{r}",
             {s: str(round_paths(folder, r)[1].resolve()) for s, folder in selftrain.items()},
             f"round {r} re-labels of {pseudo_used}")]
    finals = []
    for names, what, short, labels, trained_on in sets:
        for name in names:
            models = {s: out / f"{name.replace('+', '_')}_on_{short}_seed{s}" / "model.pt" for s in labels}
            jobs = {s: (["train", "--data", data, "--supervision", "tags", "--seeds", labels[s],
                         "--out-dir", str(models[s].parent), "--no-progress", *passthrough, *final_runs[name],
                         "--seed", str(s)], models[s]) for s in labels}
            finals.append((f"{name} on {what}", models, jobs, trained_on))
    return finals


def _names(text: str) -> list[str]:
    return [n for n in text.split(",") if n]


def run_stages(
    wsdeploy: Wsdeploy, *, data: str, out: Path, args: Any, passthrough: list[str], results: dict[str, Any],
    save: Callable[[], None], classifier: Path, cams_train: Path, cams_val: Path, seed_dirs: dict[str, Path],
    until: str = "final",
) -> None:
    """Steps 1-6 of the module docstring, appending rows to `results["runs"]`; `until="pseudo"`:
    steps 1-3 only (the walk and its pseudo-masks, no segmenter, no contrast or 4x-tags rows)."""
    rows, picked = chain(wsdeploy, tag="", data=data, out=out / "propagation", classifier=classifier,
                         cams_train=cams_train, cams_val=cams_val, seed_dirs=seed_dirs, args=args,
                         passthrough=passthrough, picked=None, until=until)
    results["runs"].extend(rows)
    results["walk_picked"] = picked
    save()
    if until == "pseudo":
        return
    if args.contrast_weight > 0:
        clf = out / "classifier_contrast"
        clf_cmd = wsdeploy(["train", "--data", data, "--supervision", "tags", "--out-dir", str(clf), "--no-progress",
                            *shlex.split(args.classifier_args), "--contrast-weight", f"{args.contrast_weight:g}"],
                           clf / "model.pt")
        cams_c = out / "cams_train_contrast"
        wsdeploy(["cam", "--model", str(clf / "model.pt"), "--data", data, "--split", "train", "--out", str(cams_c)],
                 cams_c / "cams.json")
        sweep_json = out / "sweep_train_contrast.json"
        wsdeploy(["cam", "--cams", str(cams_c), "--data", data, "--split", "train", "--sweep", "--sweep-json",
                  str(sweep_json), "--fg-thresholds", args.fg_thresholds, *shlex.split(args.sweep_args),
                  "--seeds-out", str(out / "seeds_contrast")],
                 sweep_json)
        best_c = json.loads(sweep_json.read_text())["best"]
        plain = json.loads((out / "sweep_train.json").read_text())["best"]
        helps = best_c["cam_miou"] > plain["cam_miou"]
        results["runs"].append({"name": "cam (contrast)", "stage": "cam", "split": "train", "miou": best_c["cam_miou"],
                                "contrast_weight": args.contrast_weight, "helps_on_train": helps, "command": clf_cmd})
        results["contrast"] = {"train_cam_miou": best_c["cam_miou"], "plain_train_cam_miou": plain["cam_miou"],
                               "kept": helps}
        save()
        if helps:
            cams_cv = out / "cams_val_contrast"
            wsdeploy(["cam", "--model", str(clf / "model.pt"), "--data", data, "--split", "val", "--out", str(cams_cv)],
                     cams_cv / "cams.json")
            rows, _ = chain(wsdeploy, tag="contrast", data=data, out=out / "propagation_contrast",
                            classifier=clf / "model.pt", cams_train=cams_c, cams_val=cams_cv,
                            seed_dirs={"cam seeds": out / "seeds_contrast"}, args=args, passthrough=passthrough,
                            picked=None)
            results["runs"].extend(rows)
            save()
    if args.tags4x:
        data4x = _tags4x_dataset(wsdeploy, data, out)
        clf = out / "classifier_tags4x"
        wsdeploy(["train", "--data", data4x, "--supervision", "tags", "--out-dir", str(clf), "--no-progress",
                  *shlex.split(_tags4x_classifier_args(args))], clf / "model.pt")
        cams4 = {}
        for split in ("train", "val"):
            cams4[split] = out / f"cams_{split}_tags4x"
            wsdeploy(["cam", "--model", str(clf / "model.pt"), "--data", data4x, "--split", split,
                      "--out", str(cams4[split])], cams4[split] / "cams.json")
        fg = json.loads((out / "sweep_train.json").read_text())["best"]["fg_threshold"]  # the original pick
        val_json = out / "cam_val_tags4x.json"  # the 4x classifier's CAMs on val, at that threshold
        val_cmd = wsdeploy(["cam", "--cams", str(cams4["val"]), "--data", data4x, "--split", "val", "--sweep",
                            "--sweep-json", str(val_json), "--fg-thresholds", str(fg)], val_json)
        results["runs"].append({"name": "cam (4x tags)", "stage": "cam", "split": "val",
                                "miou": json.loads(val_json.read_text())["rows"][0]["cam_miou"],
                                "note": "threshold picked on the original train split", "command": val_cmd})
        seeds4 = out / "seeds_tags4x"
        crf = ["--crf"] if picked.get("pseudo_used") == "cam+rw+crf" else []
        wsdeploy(["cam", "--cams", str(cams4["train"]), "--data", data4x, "--split", "train", "--seeds-out", str(seeds4),
                  "--fg-threshold", str(fg), *crf], seeds4 / "seeds.json")
        rows, _ = chain(wsdeploy, tag="4x tags", data=data4x, out=out / "propagation_tags4x", classifier=clf / "model.pt",
                        cams_train=cams4["train"], cams_val=cams4["val"], seed_dirs={"seeds": seeds4},
                        args=tags4x_args(args), passthrough=passthrough, picked=picked, train_masks=False)
        results["runs"].extend(rows)
        save()


def tags4x_seed_rows(
    wsdeploy: Wsdeploy, *, data: str, out: Path, args: Any, passthrough: list[str], fg: float, crf: bool,
    run_names: list[str],
) -> list[dict[str, Any]]:
    """The 4x-tags row without propagation (`imagelevel_table.py --tags4x-seeds`): the 4x
    dataset's classifier (`--tags4x-classifier-args`, default `--classifier-args`), its CAMs of
    the 4x train and val splits, seeds of the 4x train split at the original train pick `fg`
    (with the dense-CRF check when `crf`, as the seeds the original final runs trained on), and
    each of `run_names` trained on them per training seed. No 4x train mask is read: the
    threshold is the original run's, and the seeds' train statistics are not computed.

    Returns rows: the classifier's val CAMs at `fg` (stage `cam`), then one final row per run
    (val mIoU, the mean of the training seeds, each kept)."""
    from imagelevel_table import FINAL_RUNS, final_row  # here: imagelevel_table imports this module

    data4x = _tags4x_dataset(wsdeploy, data, out)
    clf = out / "classifier_tags4x_seeds"
    clf_cmd = wsdeploy(["train", "--data", data4x, "--supervision", "tags", "--out-dir", str(clf), "--no-progress",
                        *shlex.split(_tags4x_classifier_args(args))], clf / "model.pt")
    cams = {}
    for split in ("train", "val"):
        cams[split] = out / f"cams_{split}_tags4x_seeds"
        wsdeploy(["cam", "--model", str(clf / "model.pt"), "--data", data4x, "--split", split,
                  "--out", str(cams[split])], cams[split] / "cams.json")
    val_json = out / "cam_val_tags4x_seeds.json"
    val_cmd = wsdeploy(["cam", "--cams", str(cams["val"]), "--data", data4x, "--split", "val", "--sweep",
                        "--sweep-json", str(val_json), "--fg-thresholds", str(fg)], val_json)
    rows = [{"name": "cam (4x tags, no propagation)", "stage": "cam", "split": "val",
             "miou": json.loads(val_json.read_text())["rows"][0]["cam_miou"],
             "note": "threshold picked on the original train split", "command": f"{clf_cmd} && {val_cmd}"}]
    seeds = out / "seeds_tags4x_seeds"
    seeds_cmd = wsdeploy(["cam", "--cams", str(cams["train"]), "--data", data4x, "--split", "train",
                          "--seeds-out", str(seeds), "--fg-threshold", str(fg), *(["--crf"] if crf else [])],
                         seeds / "seeds.json")
    seeds_used = ("cam+crf" if crf else "cam") + " seeds of the 4x train split"
    for name in run_names:
        jobs = {seed: final_run_job(name, seed, data=data4x, seeds=str(seeds), out=out, suffix="_tags4x_seeds",
                                    passthrough=passthrough, final_runs=FINAL_RUNS)
                for seed in (int(v) for v in args.train_seeds.split(",") if v)}
        cmds = _per_seed(wsdeploy, args.parallel, jobs)
        rows.append(seed_mean({s: {**final_row(f"{name} (4x tags, no propagation)", done, cmds[s]),
                                   "trained_on": seeds_used, "seeds_command": seeds_cmd} for s, (_, done) in jobs.items()}))
    return rows


def final_run_job(
    name: str, seed: int, *, data: str, seeds: str, out: Path, suffix: str, passthrough: list[str],
    final_runs: dict[str, list[str]],
) -> tuple[list[str], Path]:
    """The `wsdeploy train` command of final run `name` on the seed folder `seeds`, training
    seed `seed`, and its model.pt: run folder `out/<name><suffix>`, `_seed<k>` added and
    `--seed k` passed for k > 0 (seed 0 keeps the flags and folder of one-seed tables)."""
    run_dir = out / (name.replace("+", "_") + suffix + ("" if seed == 0 else f"_seed{seed}"))
    cmd = ["train", "--data", data, "--supervision", "tags", "--seeds", seeds, "--out-dir", str(run_dir),
           "--no-progress", *passthrough, *final_runs[name], *(["--seed", str(seed)] if seed else [])]
    return cmd, run_dir / "model.pt"


def _tags4x_classifier_args(args: Any) -> str:
    """The 4x classifier's flags: `--tags4x-classifier-args`, else the original's."""
    four = getattr(args, "tags4x_classifier_args", None)
    return args.classifier_args if four is None else four


def tags4x_args(args: Any) -> argparse.Namespace:
    """The 4x chain's flags: the original chain's, with `--tags4x-rounds` self-training rounds
    (None: `--rounds`); with 0 rounds, or fewer than `--round-runs-from`, no `--round-runs` either
    (they train on a round's re-labels), so e.g. `--tags4x-rounds 0 --pseudo-runs sec` trains only
    SEC on the 4x pseudo-masks."""
    rounds = args.rounds if args.tags4x_rounds is None else args.tags4x_rounds
    round_runs = args.round_runs if 1 <= args.round_runs_from <= rounds else ""
    return argparse.Namespace(**{**vars(args), "rounds": rounds, "round_runs": round_runs})


def _affinity_background(data: str) -> list[str]:
    """The synthetic benchmark has no background class: its stuff classes give the background pairs."""
    manifest = Path(data) / "dataset.json"
    if manifest.is_file() and json.loads(manifest.read_text()).get("generator") == "wsdeploy.data.synthetic":
        from wsdeploy.data.synthetic import CLASSES, STUFF_CLASSES

        return ["--affinity-background", ",".join(CLASSES[c] for c in STUFF_CLASSES)]
    return []  # the dataset's background class, if any


def _tags4x_dataset(wsdeploy: Wsdeploy, data: str, out: Path) -> str:
    """The generator's first 2720 images with the original seed: train = 0..639 + 800..2719 (4x
    the original 640), val = 640..799 (the original val images, byte-identical: every image is
    drawn from SeedSequence([seed, index]))."""
    spec = json.loads((Path(data) / "dataset.json").read_text())
    if spec.get("generator") != "wsdeploy.data.synthetic" or spec.get("num_val") != 160 or spec.get("num_train") != 640:
        raise SystemExit("--tags4x needs the 800-image synthetic benchmark (640 train / 160 val)")
    folder = out / "data_tags4x"
    wsdeploy(["make-dataset", str(folder), "--num-images", "2720", "--size", str(spec["config"]["size"]),
              "--seed", str(spec["seed"]), "--workers", "0", "--overwrite", "--no-progress"], folder / "dataset.json")
    ids = (folder / "splits" / "train.txt").read_text().split() + (folder / "splits" / "val.txt").read_text().split()
    ids = sorted(set(ids))
    val = ids[640:800]
    train = ids[:640] + ids[800:]
    if (Path(data) / "splits" / "val.txt").read_text().split() != val:
        raise SystemExit("the 4x dataset's images 640..799 are not the original val ids")
    (folder / "splits" / "train.txt").write_text("\n".join(train) + "\n")
    (folder / "splits" / "val.txt").write_text("\n".join(val) + "\n")
    return str(folder)
