"""The trainer and `wsdeploy train`: config, every loss, exact resume, checkpoints, torchrun."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from wsdeploy.data.image_io import write_image, write_label_png
from wsdeploy.training import TrainConfig, load_config
from wsdeploy.training.config import config_from_dict, config_to_dict
from wsdeploy.training.optim import lr_at

pytest.importorskip("albumentations")

CLASSES = ["background", "square", "disk"]


def _scene(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A square and a disk on a noisy background: image, mask and scribbles."""
    mask = np.zeros((h, w), np.uint8)
    y0, x0 = rng.integers(2, h // 2 - 2), rng.integers(2, w // 2 - 2)
    mask[y0 : y0 + h // 3, x0 : x0 + w // 3] = 1
    yy, xx = np.mgrid[:h, :w]
    cy, cx = rng.integers(h // 2, h - 6), rng.integers(w // 2, w - 6)
    mask[(yy - cy) ** 2 + (xx - cx) ** 2 <= 16] = 2
    colours = np.array([[40, 60, 40], [220, 40, 40], [40, 40, 220]], np.float64)
    image = colours[mask] + rng.normal(0, 12, (h, w, 3))
    scribbles = np.full((h, w), 255, np.uint8)
    for c in range(3):
        ys, xs = np.nonzero(mask == c)
        keep = rng.permutation(len(ys))[: max(1, len(ys) // 10)]
        scribbles[ys[keep], xs[keep]] = c
    return np.clip(image, 0, 255).astype(np.uint8), mask, scribbles


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """6 train images (32x32, one 40x36) and 2 val images (30x34: padded for evaluation)."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    sizes = {f"t{i}": (32, 32) for i in range(5)} | {"t5": (40, 36), "v0": (30, 34), "v1": (34, 30)}
    for name, (h, w) in sizes.items():
        image, mask, scribbles = _scene(rng, h, w)
        write_image(root / "images" / f"{name}.png", image)
        write_label_png(root / "masks" / f"{name}.png", mask)
        write_label_png(root / "scribbles" / f"{name}.png", scribbles)
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("\n".join(n for n in sizes if n[0] == "t") + "\n")
    (root / "splits" / "val.txt").write_text("v0\nv1\n")
    return root


def tiny(dataset: Path, out_dir: Path, **changes) -> TrainConfig:
    values = dict(
        data=str(dataset), model="lraspp_resnet18", width=8, output_stride=16, crop_size=32,
        batch_size=2, steps=3, workers=0, log_every=1, checkpoint_every=2, out_dir=str(out_dir),
        lr=0.02, warmup_steps=1, device="cpu", progress=False, tensorboard=False, seed=3,
    )
    values.update(changes)
    return TrainConfig(**values)


def train_crashed_then_resumed(config: TrainConfig, monkeypatch, *, step: int) -> None:
    """Train `config`, killed (KeyboardInterrupt) right after its checkpoint at `step`, before
    model.pt exists, then resumed from that last.pt to the end."""
    from wsdeploy.training import train, trainer

    save_train_state = trainer.save_train_state

    def save_then_crash(path, **kwargs):
        save_train_state(path, **kwargs)
        if kwargs["step"] == step:
            raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "save_train_state", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        train(config)
    monkeypatch.undo()
    assert not (Path(config.out_dir) / "model.pt").exists()
    train(config, resume=Path(config.out_dir) / "last.pt")


def read_log(out_dir: Path) -> tuple[list[dict], list[dict]]:
    lines = [json.loads(s) for s in (out_dir / "train_log.jsonl").read_text().splitlines()]
    return [e for e in lines if "loss" in e], [e for e in lines if "miou" in e]


# ---- config --------------------------------------------------------------------------------


def test_config_from_yaml_with_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("data: some/dir\nlosses: pce,crf\nlr: 1e-3\nsteps: 50\nbackbone_weights: null\n")
    config = load_config(path, overrides={"steps": 7, "amp": "bf16"})
    assert (config.data, config.loss_names, config.lr, config.steps, config.amp) == (
        "some/dir", ["pce", "crf"], 1e-3, 7, "bf16"
    )
    assert config.loss_weights == {"pce": 1.0, "crf": config.crf.weight}


def test_loss_settings_nested_or_flat_and_stored_nested(tmp_path):
    """Per-loss settings are small dataclasses (config.crf.weight); YAML gives them nested or
    flat (the flag names), flat keys win, and a config stored flat by an earlier version reads."""
    path = tmp_path / "run.yaml"
    path.write_text("data: d\nlosses: pce,crf,potts\ncrf:\n  weight: 1.0\n  sigma_rgb: 30\npotts_neighbours: 8\n")
    config = load_config(path, overrides={"crf_sigma_xy": 25.0})
    assert (config.crf.weight, config.crf.sigma_rgb, config.crf.sigma_xy) == (1.0, 30.0, 25.0)
    assert config.potts.neighbours == 8 and config.ncut.weight == 0.1  # untouched group: defaults
    stored = config_to_dict(config)
    assert stored["crf"] == {"weight": 1.0, "sigma_rgb": 30.0, "sigma_xy": 25.0, "scale": 0.5}
    assert config_from_dict(stored) == config
    flat = {k: v for k, v in stored.items() if k not in ("crf", "potts", "ncut", "entropy", "sec")}
    flat.update({"crf_weight": 1.0, "crf_sigma_rgb": 30.0, "crf_sigma_xy": 25.0, "potts_neighbours": 8})
    assert config_from_dict(flat) == config
    assert config_from_dict({**stored, "crf_weight": 0.5}).crf.weight == 0.5  # a flag beats the file
    with pytest.raises(ValueError, match=r"unknown crf setting\(s\) \['wieght'\]"):
        config_from_dict({"data": "d", "crf": {"wieght": 1.0}})
    with pytest.raises(ValueError, match="crf_weight must be > 0 when 'crf' is in losses"):
        config_from_dict({"data": "d", "losses": "pce,crf", "crf_weight": 0})


def test_config_rejects_unknown_keys_and_bad_values(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("data: d\nlearning_rate: 0.1\n")
    with pytest.raises(ValueError, match=r"unknown config key\(s\) \['learning_rate'\].*valid keys: data"):
        load_config(path)
    with pytest.raises(ValueError, match="'steps' expects int, got 'ten'"):
        config_from_dict({"data": "d", "steps": "ten"})
    with pytest.raises(ValueError, match="no 'data'"):
        config_from_dict({})
    with pytest.raises(ValueError, match="choose method='seeds-rloss' or 'sec'"):
        TrainConfig(data="d", supervision="tags")
    with pytest.raises(ValueError, match="pass seeds=DIR"):
        TrainConfig(data="d", supervision="tags", method="sec")
    with pytest.raises(ValueError, match="choose a classifier_\\* model"):
        TrainConfig(data="d", supervision="tags", method="classifier")
    with pytest.raises(ValueError, match="method and seeds are for supervision='tags'"):
        TrainConfig(data="d", method="sec")
    with pytest.raises(ValueError, match="own losses"):
        TrainConfig(data="d", supervision="tags", method="sec", seeds="s", losses="pce,crf")
    assert TrainConfig(data="d", supervision="tags", model="classifier_resnet18").resolved_method == "classifier"
    with pytest.raises(ValueError, match="must include 'pce'"):
        TrainConfig(data="d", losses="crf")
    with pytest.raises(ValueError, match="distinct names.*'pce,crff'"):
        TrainConfig(data="d", losses="pce,crff")


def test_lr_schedule_warmup_then_poly():
    lrs = [lr_at(s, lr=1.0, steps=10, warmup_steps=2, power=1.0) for s in range(10)]
    assert lrs[:3] == [0.5, 1.0, 1.0]
    assert lrs[-1] == pytest.approx(1 / 8) and all(a >= b for a, b in zip(lrs[1:], lrs[2:]))


def test_sampler_shards_like_distributed_sampler_and_resumes():
    import itertools

    from wsdeploy.training.data import ResumableSampler

    def take(sampler, n):
        return list(itertools.islice(iter(sampler), n))

    ranks = [ResumableSampler(5, seed=1, rank=r, world_size=2) for r in range(2)]
    epoch0 = [take(s, 3) for s in ranks]  # ceil(5 / 2) = 3 per rank, one index repeated
    assert sorted({i for shard in epoch0 for i, _ in shard}) == [0, 1, 2, 3, 4]
    slots = sorted(slot for shard in epoch0 for _, slot in shard)
    assert slots == list(range(6))  # unique over ranks
    whole = take(ResumableSampler(5, seed=1, rank=1, world_size=2), 10)
    assert take(ResumableSampler(5, seed=1, rank=1, world_size=2, start=4), 6) == whole[4:]


def test_run_log_truncates_on_resume_and_mirrors_tensorboard(tmp_path, monkeypatch):
    from wsdeploy.training.run_log import RunLog

    scalars = []

    class FakeWriter:
        def __init__(self, logdir, purge_step=None):
            self.purge_step = purge_step

        def add_scalar(self, tag, value, step):
            scalars.append((tag, value, step))

        def close(self):
            pass

    fake = types.ModuleType("torch.utils.tensorboard")
    fake.SummaryWriter = FakeWriter
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    log = RunLog(tmp_path, tensorboard=True, resume_step=None)
    for step in (1, 2, 3):
        log.write({"step": step, "loss": float(step), "lr": 0.1})
    log.write({"step": 3, "split": "val", "miou": 0.5, "per_class_iou": {"a": 0.5}})
    log.close()
    assert ("train/loss", 2.0, 2) in scalars and ("eval/miou", 0.5, 3) in scalars
    log = RunLog(tmp_path, tensorboard=False, resume_step=2)
    log.close()
    lines = (tmp_path / "train_log.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2]


# ---- training ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "losses, changes",
    [
        ("pce", {"supervision": "full", "optimizer": "adamw", "lr": 1e-3, "grad_accum": 2}),
        ("pce,crf,potts,ncut,entropy", {"regularizers_from_step": 1, "backbone_lr_scale": 0.1}),
        ("pce,crf", {"eval_every": 2}),
        ("pce,potts", {"amp": "bf16"}),
        ("pce,ncut", {}),
        ("pce,entropy", {}),
    ],
)
def test_trains_with_each_loss(dataset, tmp_path, losses, changes):
    from wsdeploy.training import train

    config = tiny(dataset, tmp_path, losses=losses, **changes)
    path = train(config)
    entries, evals = read_log(tmp_path)
    assert [e["step"] for e in entries] == [1, 2, 3]
    names = config.loss_names
    for e in entries:
        assert np.isfinite(e["loss"]) and set(names) <= set(e)
        assert e["loss"] == pytest.approx(sum(e[n] for n in names), rel=1e-5)
    if "regularizers_from_step" in changes:  # phase one: pCE only
        assert all(entries[0][n] == 0 for n in names if n != "pce")
        assert all(entries[1][n] != 0 for n in names)
    assert [e["step"] for e in evals] == ([2, 3] if "eval_every" in changes else [3])
    assert all(0 <= e["miou"] <= 1 for e in evals)
    assert path == tmp_path / "model.pt" and (tmp_path / "last.pt").is_file()


def test_resume_continues_exactly(dataset, tmp_path, monkeypatch):
    from wsdeploy.training import train

    losses = "pce,crf,entropy"
    full = tiny(dataset, tmp_path / "full", losses=losses, steps=4)
    train(full)
    reference, _ = read_log(tmp_path / "full")

    # the same run, killed right after the step-2 checkpoint, then resumed; loading in a worker
    # process changes nothing (augmentation is seeded per sample, not per worker)
    train_crashed_then_resumed(tiny(dataset, tmp_path / "crash", losses=losses, steps=4, workers=1), monkeypatch, step=2)
    resumed, _ = read_log(tmp_path / "crash")

    assert [e["step"] for e in resumed] == [1, 2, 3, 4]
    for a, b in zip(reference, resumed):
        for key in ("loss", "pce", "crf", "entropy", "lr"):
            assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-9), (a["step"], key)
    ref_state = torch.load(tmp_path / "full" / "last.pt", weights_only=True)["model"]
    new_state = torch.load(tmp_path / "crash" / "last.pt", weights_only=True)["model"]
    for k in ref_state:
        torch.testing.assert_close(new_state[k], ref_state[k], rtol=1e-5, atol=1e-6)


def test_resume_refuses_a_different_run(dataset, tmp_path):
    from wsdeploy.training import train

    config = tiny(dataset, tmp_path, steps=1, warmup_steps=0, val_split="")
    train(config)
    changed = tiny(dataset, tmp_path, steps=2, warmup_steps=0, val_split="", lr=0.5)
    with pytest.raises(ValueError, match=r"differs in \['lr: checkpoint 0.02, now 0.5'\]; only"):
        train(changed, resume=tmp_path / "last.pt")
    with pytest.raises(ValueError, match="not a training checkpoint"):
        train(config, resume=tmp_path / "model.pt")


def test_final_checkpoint_loads_and_segments(dataset, tmp_path):
    import wsdeploy
    from wsdeploy.checkpoint import read_checkpoint
    from wsdeploy.training import train

    config = tiny(dataset, tmp_path, losses="pce,crf", steps=2)
    path = train(config)
    assert load_config(tmp_path / "config.yaml") == config  # the run's config.yaml round-trips
    card, _ = read_checkpoint(path)
    assert card.classes == CLASSES and card.supervision == "scribbles"
    assert card.losses == {"pce": 1.0, "crf": 1.0}  # the default weight (scribble_sweep.json)
    assert card.arch_kwargs == {"output_stride": 16, "width": 8} and card.input_size == [32, 32]
    assert card.evaluation["split"] == "val" and 0 <= card.evaluation["miou"] <= 1
    assert card.training["steps"] == 2 and card.training["global_batch"] == 2
    assert len(card.palette) == 3
    seg = wsdeploy.load(path, device="cpu").segment(np.zeros((30, 34, 3), np.uint8))
    assert seg.labels.shape == (30, 34) and seg.classes == CLASSES
    state = torch.load(tmp_path / "last.pt", weights_only=True)  # no arbitrary unpickling
    assert state["step"] == 2 and state["config"]["losses"] == "pce,crf"


def test_cli_help_and_train(dataset, tmp_path, capsys):
    from wsdeploy.checkpoint import read_checkpoint
    from wsdeploy.cli import train as cli_train
    from wsdeploy.training.config import field_types

    parser = argparse.ArgumentParser(prog="wsdeploy train")
    cli_train.add_arguments(parser)
    text = parser.format_help()
    for name in field_types():
        assert "--" + name.replace("_", "-") in text
    assert "--resume" in text and "--config" in text

    config = tmp_path / "run.yaml"
    config.write_text(f"data: {dataset}\nmodel: lraspp_resnet18\nwidth: 8\ncrop_size: 32\n")
    argv = [
        "--config", str(config), "--losses", "pce,entropy", "--steps", "2",
        "--batch-size", "2", "--workers", "0", "--device", "cpu", "--no-progress",
        "--no-tensorboard", "--out-dir", str(tmp_path / "run"), "--val-split", "",
    ]
    assert cli_train.run(_parse(argv)) == 0
    assert "wrote" in capsys.readouterr().out
    card, _ = read_checkpoint(tmp_path / "run" / "model.pt")
    assert card.losses == {"pce": 1.0, "entropy": 0.1} and card.evaluation == {}
    assert card.training["command"].startswith("wsdeploy train --config ")
    assert "--losses pce,entropy" in card.training["command"]


def _parse(argv: list[str]) -> argparse.Namespace:
    from wsdeploy.cli import train as cli_train

    parser = argparse.ArgumentParser(prog="wsdeploy train")
    cli_train.add_arguments(parser)
    return parser.parse_args(argv)


@pytest.mark.slow
def test_torchrun_two_processes_gloo(dataset, tmp_path):
    """Two CPU processes under torchrun (gloo): same checkpoint format, one writer."""
    from wsdeploy.checkpoint import read_checkpoint

    out = tmp_path / "ddp"
    script = tmp_path / "train_cli.py"  # `wsdeploy train` without depending on COMMANDS wiring
    script.write_text(
        "import sys\nfrom wsdeploy.cli.train import add_arguments, run\nimport argparse\n"
        "p = argparse.ArgumentParser()\nadd_arguments(p)\nsys.exit(run(p.parse_args()))\n"
    )
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        str(script),
        "--data", str(dataset), "--model", "lraspp_resnet18", "--width", "8", "--crop-size", "32",
        "--batch-size", "2", "--steps", "2", "--losses", "pce,entropy", "--workers", "0",
        "--device", "cpu", "--no-progress", "--no-tensorboard", "--log-every", "1",
        "--out-dir", str(out),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("wrote") == 1  # rank 0 only
    card, _ = read_checkpoint(out / "model.pt")
    assert card.training["world_size"] == 2 and card.training["global_batch"] == 4
    assert 0 <= card.evaluation["miou"] <= 1
    state = torch.load(out / "last.pt", weights_only=True)
    assert state["step"] == 2 and len(state["rng"]) == 2
    entries, _ = read_log(out)
    assert [e["step"] for e in entries] == [1, 2]
