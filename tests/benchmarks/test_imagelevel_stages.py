"""The image-level table's propagation stages end to end at tiny size, every `wsdeploy` command
run in-process: classifier -> CAMs -> seeds -> affinity -> walk grid -> pseudo-masks -> rounds."""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import threading
from pathlib import Path

import pytest

from wsdeploy.cli.main import main
from wsdeploy.data.synthetic import generate_dataset

from tests.benchmarks.test_records import ROOT, _load

pytest.importorskip("albumentations")

_TINY = "--crop-size 48 --scale-min 1 --scale-max 1 --batch-size 2 --workers 0 --device cpu --log-every 1 " \
        "--no-tensorboard --lr 0.01 --warmup-steps 0"


@pytest.mark.slow
def test_propagation_chain_runs_every_stage_and_reuses_finished_ones(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    stages = _load("imagelevel_stages")
    data = str(generate_dataset(tmp_path / "ds", num_images=6, size=48, seed=3, val_fraction=0.34, workers=0))
    ran: list[str] = []

    def wsdeploy(cmd: list[str], done: Path) -> str:
        text = shlex.join(["wsdeploy", *cmd])
        if not done.exists():
            ran.append(text)
            assert main(cmd) == 0, text
        return text

    out = tmp_path / "runs"
    clf = out / "classifier"
    wsdeploy(["train", "--data", data, "--supervision", "tags", "--model", "classifier_resnet18", "--width", "8",
              "--output-stride", "8", "--steps", "2", "--out-dir", str(clf), *shlex.split(_TINY)], clf / "model.pt")
    cams = {}
    for split in ("train", "val"):
        cams[split] = out / f"cams_{split}"
        wsdeploy(["cam", "--model", str(clf / "model.pt"), "--data", data, "--split", split, "--out", str(cams[split]),
                  "--scales", "1", "--device", "cpu"], cams[split] / "cams.json")
    seeds = {"cam seeds": out / "seeds", "cam+crf seeds": out / "seeds_crf"}
    for name, folder in seeds.items():
        wsdeploy(["cam", "--cams", str(cams["train"]), "--data", data, "--seeds-out", str(folder), "--fg-threshold",
                  "0.2", *(["--crf"] if "crf" in name else [])], folder / "seeds.json")
    args = argparse.Namespace(
        train_seeds="0", affinity_args=f"--steps 2 --affinity-radius 3 --affinity-dim 4 {_TINY}", betas="4",
        walk_steps="8", rounds=2, round_losses="pce", round_args="--relabel-crf", fg_thresholds="0.1,0.5", sweep_args="", parallel=1, pseudo_runs="sec",
        round_runs="sec", round_runs_from=1,
    )
    kwargs = dict(tag="", data=data, out=out / "propagation", classifier=clf / "model.pt", cams_train=cams["train"],
                  cams_val=cams["val"], seed_dirs=seeds, args=args, picked=None,
                  passthrough=shlex.split(f"--model lraspp_resnet18 --width 8 --steps 2 {_TINY}"))  # every segmenter's
    rows, picked = stages.chain(wsdeploy, **kwargs)
    assert [(r["name"], r["stage"], r["split"]) for r in rows] == [
        ("cam+rw", "pseudo", "train"), ("cam+rw", "pseudo", "val"), ("cam+rw+crf", "pseudo", "train"),
        ("round 1", "final", "val"), ("round 2", "final", "val"), ("sec on pseudo-masks", "final", "val"),
        ("sec on round 1 re-labels", "final", "val")]
    assert all(0 <= r["miou"] <= 1 for r in rows)
    assert (picked["beta"], picked["steps"]) == (4.0, 8) and picked["fg_threshold"] in (0.1, 0.5)
    assert picked["pseudo_used"] in ("cam+rw", "cam+rw+crf")
    affinity_cmd = next(c for c in ran if "--method affinity" in c)
    assert "--affinity-background sky,grass,sand,water" in affinity_cmd  # the synthetic set's stuff
    sec, sec_round = [c for c in ran if "--method sec" in c]
    assert f"--seeds {(out / 'propagation' / 'selftrain_seed0' / 'round1' / 'labels').resolve()} " in sec_round
    assert f"--seeds {out / 'propagation' / ('pseudo_crf_seed0' if picked['pseudo_used'] == 'cam+rw+crf' else 'pseudo_seed0')}" in sec
    walks = [c for c in ran if "--propagate " in c]
    assert len(walks) == 2  # the grid's train walk is reused at the picked setting; val walked once
    ran.clear()
    again, _ = stages.chain(wsdeploy, **kwargs)  # a re-run reuses every finished stage
    assert ran == [] and [r["miou"] for r in again] == [r["miou"] for r in rows]
    # until="pseudo" (imagelevel_table.py --until pseudo) stops before any segmenter trains
    pseudo_rows, pseudo_picked = stages.chain(wsdeploy, **{**kwargs, "out": out / "pseudo_only"}, until="pseudo")
    assert [r["name"] for r in pseudo_rows] == ["cam+rw", "cam+rw", "cam+rw+crf"]
    assert not any("--rounds" in c for c in ran) and not (out / "pseudo_only" / "selftrain_seed0").exists()
    assert pseudo_picked["pseudo_used"] in ("cam+rw", "cam+rw+crf")
    # no rounds (the 4x chain's --tags4x-rounds 0): the pseudo runs alone, no self-training
    no_rounds = argparse.Namespace(**{**vars(args), "rounds": 0, "round_runs": ""})
    rows0, _ = stages.chain(wsdeploy, **{**kwargs, "out": out / "no_rounds", "args": no_rounds, "picked": picked})
    assert [r["name"] for r in rows0] == ["cam+rw", "cam+rw", "cam+rw+crf", "sec on pseudo-masks"]
    assert not (out / "no_rounds" / "selftrain_seed0").exists()


def test_per_seed_jobs_run_at_the_same_time_and_a_failure_fails_the_stage(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    stages = _load("imagelevel_stages")
    barrier = threading.Barrier(2, timeout=10)  # broken (an error) unless both jobs run at once

    def wsdeploy(cmd: list[str], done: Path) -> str:
        barrier.wait()
        return " ".join(cmd)

    jobs = {0: (["train", "--seed", "0"], Path("a")), 1: (["train", "--seed", "1"], Path("b"))}
    assert stages._per_seed(wsdeploy, 2, jobs) == {0: "train --seed 0", 1: "train --seed 1"}

    def failing(cmd: list[str], done: Path) -> str:
        raise subprocess.CalledProcessError(1, cmd)

    with pytest.raises(subprocess.CalledProcessError):
        stages._per_seed(failing, 2, jobs)


def test_round_runs_train_on_each_seeds_round_labels_next_to_the_pseudo_runs(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    stages = _load("imagelevel_stages")
    out = tmp_path / "propagation"
    args = argparse.Namespace(pseudo_runs="sec", round_runs="sec,seeds+pce", round_runs_from=2)
    final_runs = {"sec": ["--method", "sec"], "seeds+pce": ["--method", "seeds-rloss", "--losses", "pce"]}
    finals = stages.final_runs_on_labels(
        args, data="ds", out=out, passthrough=["--steps", "3"], final_runs=final_runs,
        pseudo={0: "/p0", 1: "/p1"}, selftrain={0: out / "selftrain_seed0", 1: out / "selftrain_seed1"},
        pseudo_used="cam+rw+crf")
    assert [(name, trained_on) for name, _, _, trained_on in finals] == [
        ("sec on pseudo-masks", "cam+rw+crf"), ("sec on round 2 re-labels", "round 2 re-labels of cam+rw+crf"),
        ("seeds+pce on round 2 re-labels", "round 2 re-labels of cam+rw+crf")]
    _, models, jobs, _ = finals[2]
    assert models == {s: out / f"seeds_pce_on_round2_seed{s}" / "model.pt" for s in (0, 1)}
    cmd, done = jobs[1]
    assert done == models[1]
    assert cmd == ["train", "--data", "ds", "--supervision", "tags",
                   "--seeds", str((out / "selftrain_seed1" / "round2" / "labels").resolve()),
                   "--out-dir", str(out / "seeds_pce_on_round2_seed1"), "--no-progress", "--steps", "3",
                   "--method", "seeds-rloss", "--losses", "pce", "--seed", "1"]
    assert finals[0][2][0][0][6] == "/p0"  # the pseudo runs keep their folders and commands


def test_tags4x_rounds_zero_trains_only_the_pseudo_runs(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    stages = _load("imagelevel_stages")
    args = argparse.Namespace(rounds=2, round_runs="sec", round_runs_from=1, pseudo_runs="sec", tags4x_rounds=0)
    four = stages.tags4x_args(args)
    assert (four.rounds, four.round_runs, four.pseudo_runs) == (0, "", "sec")
    assert (args.rounds, args.round_runs) == (2, "sec")  # the original chain's flags are untouched
    assert vars(stages.tags4x_args(argparse.Namespace(**{**vars(args), "tags4x_rounds": None}))) == {
        **vars(args), "tags4x_rounds": None}  # default: the original chain's rounds and round runs
    one = stages.tags4x_args(argparse.Namespace(**{**vars(args), "tags4x_rounds": 1, "round_runs_from": 2}))
    assert (one.rounds, one.round_runs) == (1, "")  # round 2's re-labels do not exist with one round


@pytest.mark.parametrize("flags, message", [
    (["--tags4x-rounds", "0"], "--tags4x-rounds needs --tags4x"),
    (["--tags4x", "--tags4x-rounds", "-1"], "--tags4x-rounds needs --tags4x and is 0 or more"),
    (["--round-runs", "nope"], "unknown --round-runs ['nope']"),
    (["--tags4x-classifier-args", "--steps 12000"], "--tags4x-classifier-args needs --tags4x-seeds"),
    (["--tags4x-runs", "sec"], "--tags4x-runs needs --tags4x-seeds"),
    (["--tags4x-seeds", "--tags4x-runs", "nope"], "unknown --tags4x-runs ['nope']"),
    (["--round-runs", "sec", "--rounds", "2", "--round-runs-from", "3"], "--round-runs-from 3 is not a round of --rounds 2"),
    (["--round-runs", "sec", "--rounds", "2", "--round-runs-from", "0"], "--round-runs-from 0 is not a round of --rounds 2"),
])
def test_round_runs_flags_are_checked_before_anything_runs(tmp_path, monkeypatch, capsys, flags, message):
    table = _load("imagelevel_table")
    monkeypatch.setattr(table.sys, "argv", ["imagelevel_table.py", "--data", str(tmp_path / "missing"), "--out-dir",
                                            str(tmp_path / "runs"), "--propagation", *flags])
    with pytest.raises(SystemExit) as exit_info:
        table.main()
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_a_missing_full_model_is_a_note_at_the_start_and_a_one_line_error_at_the_end(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    table = _load("imagelevel_table")
    data = str(generate_dataset(tmp_path / "ds", num_images=6, size=48, seed=3, val_fraction=0.34, workers=0))
    results = tmp_path / "table.json"
    missing = tmp_path / "full" / "model.pt"
    classifier = f"--model classifier_resnet18 --width 8 --output-stride 8 --steps 2 {_TINY}"
    monkeypatch.setattr(table.sys, "argv", [
        "imagelevel_table.py", "--data", data, "--out-dir", str(tmp_path / "runs"), "--json", str(results),
        "--fg-thresholds", "0.2", "--runs", "", "--full-model", str(missing), "--classifier-args", classifier])
    with pytest.raises(SystemExit) as exit_info:
        table.main()
    message = str(exit_info.value.code)
    assert message.startswith(f"--full-model: no such file: {missing}; every other row is in {results}")
    assert "\n" not in message
    assert f"note: --full-model {missing} does not exist yet" in capsys.readouterr().err
    rows = json.loads(results.read_text())["runs"]  # everything before the full row was saved
    assert [(r["name"], r["split"]) for r in rows] == [
        ("cam", "train"), ("cam", "val"), ("cam seeds", "train"), ("cam+crf seeds", "train")]


@pytest.mark.slow
def test_tags4x_seeds_trains_the_runs_on_the_4x_classifiers_seeds_at_the_original_pick(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    stages = _load("imagelevel_stages")
    data = str(generate_dataset(tmp_path / "ds", num_images=6, size=48, seed=3, val_fraction=0.34, workers=0))
    monkeypatch.setattr(stages, "_tags4x_dataset", lambda wsdeploy, data, out: data)  # the real one needs 2720 images
    ran: list[list[str]] = []

    def wsdeploy(cmd: list[str], done: Path) -> str:
        if not done.exists():
            ran.append(cmd)
            assert main(cmd) == 0, cmd
        return shlex.join(["wsdeploy", *cmd])

    classifier = f"--model classifier_resnet18 --width 8 --output-stride 8 {_TINY}"
    args = argparse.Namespace(classifier_args=f"{classifier} --steps 1", tags4x_classifier_args=f"{classifier} --steps 2",
                              train_seeds="0,1", parallel=1)
    out = tmp_path / "runs"
    rows = stages.tags4x_seed_rows(wsdeploy, data=data, out=out, args=args, fg=0.3, crf=True, run_names=["sec"],
                                   passthrough=shlex.split(f"--model lraspp_resnet18 --width 8 --steps 2 {_TINY}"))
    assert [(r["name"], r["stage"], r["split"]) for r in rows] == [
        ("cam (4x tags, no propagation)", "cam", "val"), ("sec (4x tags, no propagation)", "final", "val")]
    assert set(rows[1]["miou_per_seed"]) == {"0", "1"} and all(0 <= r["miou"] <= 1 for r in rows)
    train, _, _, _, seeds, sec0, sec1 = ran  # classifier, CAMs train / val, val sweep, seeds, SEC x 2
    assert train[train.index("--steps") + 1] == "2"  # --tags4x-classifier-args, not --classifier-args
    assert seeds[seeds.index("--fg-threshold") + 1] == "0.3" and "--crf" in seeds and "--sweep" not in seeds
    assert "--method" in sec0 and sec0[sec0.index("--seeds") + 1] == str(out / "seeds_tags4x_seeds")
    assert sec1[-2:] == ["--seed", "1"] and sec1[sec1.index("--out-dir") + 1] == str(out / "sec_tags4x_seeds_seed1")
    ran.clear()
    again = stages.tags4x_seed_rows(wsdeploy, data=data, out=out, args=args, fg=0.3, crf=True, run_names=["sec"],
                                    passthrough=shlex.split(f"--model lraspp_resnet18 --width 8 --steps 2 {_TINY}"))
    assert ran == [] and [r["miou"] for r in again] == [r["miou"] for r in rows]  # finished stages are reused
