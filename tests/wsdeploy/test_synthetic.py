"""Tests of the synthetic benchmark generator (wsdeploy.data.synthetic) and its CLI."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from wsdeploy.data.palette import colourise, palette
from wsdeploy.data.synthetic.scribbles import scribbles_from_mask
from wsdeploy.data.synthetic import CLASSES, SyntheticConfig, generate_dataset, image_seed, render_scene

SMALL = SyntheticConfig(size=64)


def _read(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def test_render_scene_is_deterministic_and_seeds_differ():
    a, b, c = render_scene(7, config=SMALL), render_scene(7, config=SMALL), render_scene(8, config=SMALL)
    for x, y in zip(a, b, strict=True):
        assert x.tobytes() == y.tobytes()
    assert a.image.tobytes() != c.image.tobytes()
    assert a.image.shape == (64, 64, 3) and a.mask.shape == (64, 64) and a.scribbles.shape == (64, 64)
    assert a.image.dtype == a.mask.dtype == a.scribbles.dtype == np.uint8


def test_scribbles_label_their_mask_class_and_cover_about_three_percent():
    config = SyntheticConfig(size=96)
    coverage = []
    for seed in range(12):
        scene = render_scene(seed, config=config)
        labelled = scene.scribbles != 255
        assert np.array_equal(scene.scribbles[labelled], scene.mask[labelled])
        assert scene.mask.max() < len(CLASSES)
        coverage.append(labelled.mean())
    assert 0.015 < np.mean(coverage) < 0.045, np.mean(coverage)
    denser = np.mean([(render_scene(s, config=SyntheticConfig(size=96, scribble_coverage=0.08)).scribbles != 255).mean()
                      for s in range(6)])
    assert denser > 1.5 * np.mean(coverage[:6])


def test_scribbles_stay_away_from_region_borders():
    mask = np.zeros((80, 80), np.uint8)
    mask[:, 40:] = 1
    scribbles = scribbles_from_mask(mask, rng=np.random.default_rng(0), width=3, margin=0.3)
    for cls in (0, 1):
        region = (mask == cls).astype(np.uint8)
        dist = cv2.distanceTransform(np.pad(region, 1), cv2.DIST_L2, 5)[1:-1, 1:-1]
        on = scribbles == cls
        assert on.any()
        assert dist[on].min() >= 0.3 * dist.max() - 1e-3


def test_every_class_appears_over_a_few_dozen_images():
    seen = np.zeros(len(CLASSES), int)
    scribbled = np.zeros(len(CLASSES), int)
    for seed in range(40):
        scene = render_scene(image_seed(0, seed), config=SMALL)
        seen[np.unique(scene.mask)] += 1
        scribbled[[c for c in np.unique(scene.scribbles) if c != 255]] += 1
    assert seen.min() >= 5, dict(zip(CLASSES, seen, strict=True))
    assert scribbled.min() >= 3, dict(zip(CLASSES, scribbled, strict=True))


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_generate_dataset_layout_tags_and_worker_independence(tmp_path):
    serial = generate_dataset(tmp_path / "a", num_images=6, size=48, seed=3, val_fraction=0.34, workers=0)
    parallel = generate_dataset(tmp_path / "b", num_images=6, size=48, seed=3, val_fraction=0.34, workers=2)
    files = _files(serial)
    assert files == _files(parallel)
    ids = [f"{i:06d}" for i in range(6)]
    assert set(files) == {
        "classes.txt", "tags.txt", "dataset.json", "splits/train.txt", "splits/val.txt",
        *(f"{d}/{i}.png" for d in ("images", "masks", "scribbles") for i in ids),
    }
    assert (serial / "classes.txt").read_text().splitlines() == list(CLASSES)
    assert (serial / "splits/train.txt").read_text().split() == ids[:4]
    assert (serial / "splits/val.txt").read_text().split() == ids[4:]
    tags = {line.split()[0]: line.split()[1:] for line in (serial / "tags.txt").read_text().splitlines()}
    for i in ids:
        image, mask = _read(serial / f"images/{i}.png"), _read(serial / f"masks/{i}.png")
        assert image.shape == (48, 48, 3) and mask.shape == (48, 48) and mask.dtype == np.uint8
        assert tags[i] == [CLASSES[c] for c in np.unique(mask)]
    scene = render_scene(image_seed(3, 5), config=SyntheticConfig(size=48))
    assert np.array_equal(_read(serial / f"masks/{ids[5]}.png"), scene.mask)
    assert np.array_equal(_read(serial / f"scribbles/{ids[5]}.png"), scene.scribbles)
    assert np.array_equal(_read(serial / f"images/{ids[5]}.png")[:, :, ::-1], scene.image)
    manifest = json.loads((serial / "dataset.json").read_text())
    assert manifest["seed"] == 3 and manifest["num_train"] == 4 and manifest["num_val"] == 2
    assert manifest["config"]["size"] == 48 and manifest["classes"] == list(CLASSES)

    other = generate_dataset(tmp_path / "c", num_images=6, size=48, seed=4, val_fraction=0.34, workers=0)
    assert _files(other)["images/000000.png"] != files["images/000000.png"]


def test_generate_dataset_refuses_non_empty_folder_unless_overwrite(tmp_path):
    out = generate_dataset(tmp_path / "d", num_images=3, size=32, val_fraction=0.0, workers=0)
    (out / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="overwrite"):
        generate_dataset(out, num_images=2, size=32, val_fraction=0.0, workers=0)
    generate_dataset(out, num_images=2, size=32, val_fraction=0.0, workers=0, overwrite=True, image_format="jpg")
    assert sorted(p.name for p in (out / "images").iterdir()) == ["000000.jpg", "000001.jpg"]
    assert (out / "keep.txt").read_text() == "mine"
    assert (out / "splits/val.txt").read_text() == ""


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_images": 0},
        {"num_images": 4, "val_fraction": 1.0},
        {"num_images": 4, "val_fraction": 0.01},
        {"num_images": 4, "seed": -1},
        {"num_images": 4, "size": 8},
        {"num_images": 4, "scribble_coverage": 0.0},
        {"num_images": 4, "scribble_width": 0},
        {"num_images": 4, "image_format": "gif"},
        {"num_images": 4, "workers": -2},
    ],
)
def test_generate_dataset_rejects_bad_arguments(tmp_path, kwargs):
    with pytest.raises(ValueError):
        generate_dataset(tmp_path / "x", **kwargs)
    assert not (tmp_path / "x").exists()


def test_config_and_render_reject_bad_values():
    with pytest.raises(ValueError, match="max_objects"):
        SyntheticConfig(min_objects=3, max_objects=2)
    with pytest.raises(ValueError, match="object_scale"):
        SyntheticConfig(object_scale=(0.3, 0.1))
    with pytest.raises(ValueError, match="seed"):
        render_scene(-1, config=SMALL)
    with pytest.raises(ValueError, match="width"):
        scribbles_from_mask(np.zeros((8, 8), np.uint8), rng=np.random.default_rng(0), width=0)


def test_palette_matches_voc_and_colourise():
    colours = palette(21)
    assert colours.shape == (21, 3) and colours.dtype == np.uint8
    assert colours[1].tolist() == [128, 0, 0] and colours[15].tolist() == [192, 128, 128]
    assert colours[20].tolist() == [0, 64, 128]
    labels = np.array([[0, 1], [255, 2]], np.uint8)
    rgb = colourise(labels, 3)
    assert rgb[0, 1].tolist() == [128, 0, 0] and rgb[1, 0].tolist() == [224, 224, 192]
    with pytest.raises(ValueError, match="num_classes"):
        palette(0)
    with pytest.raises(ValueError, match="3"):
        colourise(np.array([[3]], np.uint8), 3)


def test_cli_make_dataset(tmp_path, capsys):
    from wsdeploy.cli.main import main

    out = tmp_path / "cli"
    argv = ["make-dataset", str(out), "--num-images", "3", "--size", "32", "--workers", "0", "--no-progress"]
    assert main(argv) == 0
    manifest = json.loads((out / "dataset.json").read_text())
    assert manifest["command"].startswith("wsdeploy make-dataset")
    assert main(argv) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(argv + ["--overwrite"]) == 0
