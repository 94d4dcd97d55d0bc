"""Issue 16, item 6: presets, the measured loss defaults, and what the trainer says (header,
crop and schedule warnings, the summary line)."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from wsdeploy.training.config import TrainConfig, config_from_dict, load_config
from wsdeploy.training.presets import PRESETS, RLOSS_VOC_CRF_WEIGHT, preset
from wsdeploy.training.report import (
    crop_warning,
    format_duration,
    run_header,
    schedule_warning,
    summary_line,
)
from wsdeploy.training.tags.settings import AffinitySettings

from wsdeploy.cli.main import main

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_are_valid_configs(name):
    config = config_from_dict({"data": "d", **preset(name)})
    assert config.loss_names == ["pce", "crf"]
    assert config.crop_size % config.output_stride == 0  # a crop the model accepts


def test_voc_preset_is_rloss_recipe_with_the_measured_weight():
    config = config_from_dict({"data": "d", **preset("voc-deeplabv3plus-r101")})
    assert (config.model, config.crop_size, config.optimizer, config.lr, config.batch_size, config.steps) == \
        ("deeplabv3plus_resnet101", 512, "sgd", 0.007, 12, 30000)
    assert (config.poly_power, config.crf.sigma_rgb, config.crf.sigma_xy, config.crf.scale) == (0.9, 15.0, 100.0, 0.5)
    measured = json.loads((RESULTS / "rloss_weight.json").read_text())
    assert measured["rloss_weight"] == 2e-9 and measured["crop_size"] == 513
    assert config.crf.weight == RLOSS_VOC_CRF_WEIGHT == round(measured["equivalent_weight"], 3)


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ValueError, match="cpu-small"):
        preset("gpu-huge")


def test_defaults_are_what_the_sweep_measured_best():
    sweep = {r["name"]: r["miou"] for r in json.loads((RESULTS / "scribble_sweep.json").read_text())["runs"]}
    assert sweep["crf_rgb30_w1"] > sweep["crf_rgb30_w0.25"]  # weight 1.0 beats 0.25 ...
    assert sweep["crf_rgb30_w1"] > sweep["crf_rgb30_w1_from0"]  # ... and step 1000 of 3000 beats step 0
    config = TrainConfig(data="d", losses="pce,crf", steps=3000)
    assert config.crf.weight == 1.0 and config.regularizers_start == 1000
    assert TrainConfig(data="d", regularizers_from_step=0).regularizers_start == 0
    with pytest.raises(ValueError, match="regularizers_from_step"):
        TrainConfig(data="d", regularizers_from_step=-2)


def test_precedence_defaults_preset_yaml_flags(tmp_path):
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text("data: d\nlr: 0.001\nsteps: 50\n")
    config = load_config(yaml_file, overrides={"steps": 7}, base=preset("cpu-small"))
    assert (config.model, config.lr, config.steps) == ("deeplabv3plus_resnet18", 0.001, 7)


def test_preset_and_resume_do_not_mix(capsys):
    assert main(["train", "--preset", "cpu-small", "--resume", "last.pt"]) == 2
    assert "--preset starts a new run" in capsys.readouterr().err


def test_report_lines():
    config = TrainConfig(data="data/x", losses="pce,crf", steps=30, out_dir="runs/a")
    header = run_header(config, images=640, device="cpu", world_size=1, losses=config.loss_weights)
    for part in ("deeplabv3plus_resnet50 (width 64", "640 'train' images of data/x", "device cpu",
                 "30 steps", "pce + crf 1 (from step 10)", "writing runs/a"):
        assert part in header, (part, header)
    assert crop_warning(512, 2.0, [(96, 96), (80, 96)]).startswith("--crop-size 512 is larger than every")
    assert crop_warning(128, 2.0, [(96, 96)]) is None and crop_warning(512, 2.0, []) is None
    assert "switch on at step 1000, after the last step (30)" in schedule_warning(
        TrainConfig(data="d", losses="pce,crf", steps=30, regularizers_from_step=1000))
    assert schedule_warning(config) is None
    affinity = TrainConfig(data="d", supervision="tags", method="affinity", seeds="s", steps=5,
                           affinity=AffinitySettings(classifier="runs/clf/model.pt"))
    header = run_header(affinity, images=8, device="cpu", world_size=1, losses=affinity.loss_weights)
    assert header.startswith("affinity net on the frozen classifier runs/clf/model.pt on 8 'train' images")
    assert "deeplabv3plus" not in header  # config.model is not what trains
    assert format_duration(42) == "42.0 s" and format_duration(511) == "8m 31s" and format_duration(7980) == "2h 13m"
    line = summary_line(steps=3000, seconds=511, metric="miou", summary={"miou": 0.49901}, split="val", val_images=160)
    assert line == "done: 3000 steps in 8m 31s (0.17 s/step); val miou 0.4990 on 160 'val' images"


@pytest.mark.slow  # one tiny training run (~3 s)
def test_trainer_says_what_it_does(tmp_path, caplog, capsys, monkeypatch):
    from wsdeploy.training import train

    from wsdeploy.checkpoint import read_checkpoint
    from wsdeploy.data.synthetic import generate_dataset

    monkeypatch.chdir(tmp_path)
    generate_dataset(tmp_path / "ds", num_images=4, size=32, seed=0, val_fraction=0.25, workers=0)
    config = TrainConfig(data="ds", supervision="scribbles", losses="pce,crf", model="deeplabv3plus_resnet18",
                         width=8, crop_size=128, scale_min=1.0, scale_max=1.0, steps=2, batch_size=2, workers=0,
                         out_dir="run", tensorboard=False, checkpoint_every=0)
    with caplog.at_level(logging.INFO, logger="wsdeploy"):
        path = train(config)
    card, _ = read_checkpoint(path)
    assert str(tmp_path) not in json.dumps(card.to_dict())  # no machine's folders in the card (item 15)
    messages = [r.getMessage() for r in caplog.records if r.name == "wsdeploy.training.trainer"]
    assert messages[0].startswith("deeplabv3plus_resnet18 (width 8") and "3 'train' images" in messages[0]
    assert any(m.startswith("--crop-size 128 is larger than every training image (largest 32 px") for m in messages)
    assert messages[-1].startswith("done: 2 steps in ") and "val miou" in messages[-1]
