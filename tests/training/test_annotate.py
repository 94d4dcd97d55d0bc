"""wsdeploy.training.annotate: input checks, a trivially separable image, the fixed-image
kernel against the library losses, the CLI (one image and a dataset folder), and the GrabCut-13
benchmark at reduced size."""
from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from wsdeploy.data.image_io import read_label_png, write_image, write_label_png
from wsdeploy.training import AnnotateConfig, annotate
from wsdeploy.training.losses import dense_crf_loss, normalized_cut_loss
from wsdeploy.training.losses.dense import loss_kernel

ROOT = Path(__file__).resolve().parents[2]
GRABCUT = ROOT.parent / "shared" / "data" / "grabcut13"
FAST = AnnotateConfig(method="network", size=32, steps=40, crf_iterations=2, crf_weight=0.25)


def two_halves(h: int = 24, w: int = 32) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Red left half (class 0), blue right half (class 1), light noise; a stroke in each half."""
    rng = np.random.default_rng(0)
    truth = np.zeros((h, w), np.uint8)
    truth[:, w // 2:] = 1
    image = np.where(truth[..., None] == 0, [200, 40, 40], [40, 40, 200]).astype(np.float64)
    image = (image + rng.normal(0, 8, image.shape)).clip(0, 255).astype(np.uint8)
    scribbles = np.full((h, w), 255, np.uint8)
    scribbles[h // 3: 2 * h // 3, 3] = 0
    scribbles[h // 3: 2 * h // 3, w - 4] = 1
    return image, scribbles, truth


def test_trivially_separable_image_is_annotated_exactly():
    image, scribbles, truth = two_halves()
    result = annotate(image, scribbles, config=FAST)
    assert result.labels.shape == truth.shape and result.labels.dtype == np.uint8
    assert result.probs.shape == (2, *truth.shape) and result.probs.dtype == np.float32
    np.testing.assert_allclose(result.probs.sum(0), 1.0, atol=1e-4)
    assert (result.labels == truth).mean() == 1.0
    assert set(result.losses) >= {"pce", "crf", "total"}


def test_three_classes_and_the_same_seed_gives_the_same_result():
    image, scribbles, truth = two_halves(24, 36)
    image[:, 24:] = [40, 200, 40]
    truth[:, 24:] = 2
    scribbles[scribbles == 1] = 255
    scribbles[8:16, 21] = 1
    scribbles[8:16, 30] = 2
    config = AnnotateConfig(method="network", size=36, steps=60)
    a = annotate(image, scribbles, config=config, seed=1)
    b = annotate(image, scribbles, config=config, seed=1)
    assert (a.labels == truth).mean() > 0.97
    np.testing.assert_array_equal(a.labels, b.labels)


def test_features_option_is_accepted():
    image, scribbles, truth = two_halves()
    features = torch.from_numpy(truth[None].astype(np.float32))  # a "segmenter" that knows
    result = annotate(image, scribbles, config=FAST, features=features[:, ::2, ::2])
    assert (result.labels == truth).mean() == 1.0
    with pytest.raises(ValueError, match=r"expected features \(C, h, w\)"):
        annotate(image, scribbles, config=FAST, features=features[0])


@pytest.mark.parametrize(
    ("edit", "error", "match"),
    [
        (lambda s: np.full_like(s, 255), ValueError, "no labelled pixel"),
        (lambda s: np.where(s == 1, 0, s).astype(np.uint8), ValueError, "single class"),
        (lambda s: s[:, :-1], ValueError, r"expected shape \(H, W\) = \(24, 32\), got \(24, 31\)"),
        (lambda s: np.where(s == 1, 7, s).astype(np.uint8), ValueError, r"\[7\] are outside the classes"),
        (lambda s: s.astype(np.float32), TypeError, "integer class indices"),
    ],
    ids=["no-labelled-pixel", "single-class", "shape", "outside-classes", "float"],
)
def test_bad_scribbles_give_clear_errors(edit, error, match):
    image, scribbles, _ = two_halves()
    num_classes = 2 if "outside" in match else None
    with pytest.raises(error, match=match):
        annotate(image, edit(scribbles), num_classes=num_classes, config=FAST)


def test_bad_settings_give_clear_errors():
    with pytest.raises(ValueError, match="steps must be >= 1, got 0"):
        AnnotateConfig(steps=0)
    with pytest.raises(ValueError, match="unknown annotate setting"):
        AnnotateConfig.from_dict({"stepz": 3})
    with pytest.raises(ValueError, match=r"num_classes must be in \[2, 255\], got 1"):
        annotate(*two_halves()[:2], num_classes=1, config=FAST)


def test_prebuilt_kernel_gives_the_losses_exactly():
    """annotate builds the kernel once (loss_kernel) and passes it to every step's loss: the
    value must be the one the loss computes from the image itself, to the last bit."""
    torch.manual_seed(0)
    image = (torch.rand(2, 3, 20, 30) * 255).to(torch.uint8)
    probs = torch.randn(2, 3, 20, 30).softmax(1)
    valid = torch.rand(2, 20, 30) > 0.1
    for scale in (1.0, 0.5):
        args = dict(sigma_xy=5.0, sigma_rgb=15.0, scale_factor=scale)
        kernel = loss_kernel(image, **args)
        for loss in (dense_crf_loss, normalized_cut_loss):
            assert torch.equal(loss(probs, None, valid, kernel=kernel, **args), loss(probs, image, valid, **args))
    with pytest.raises(ValueError, match="the kernel was built for 2 images of 10x15"):
        dense_crf_loss(probs, None, kernel=loss_kernel(image, **args), scale_factor=1.0)
    with pytest.raises(ValueError, match="or a prebuilt kernel"):
        dense_crf_loss(probs, None)


def test_import_stays_light():
    code = ("import sys, wsdeploy.training as t; assert 'wsdeploy.training.annotate.image' not in sys.modules; "
            "assert callable(t.annotate) and t.annotate.__name__.rsplit('.', 1)[-1] == 'annotate'")
    subprocess.run([sys.executable, "-c", code], check=True)


def _cli(argv: list[str]) -> int:
    from wsdeploy.cli import annotate as command

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return command.run(parser.parse_args(argv))


def test_cli_one_image(tmp_path, capsys):
    image, scribbles, truth = two_halves()
    write_image(tmp_path / "a.png", image)
    write_label_png(tmp_path / "a_scr.png", scribbles)
    code = _cli([str(tmp_path / "a.png"), "--scribbles", str(tmp_path / "a_scr.png"), "--out",
                 str(tmp_path / "m.png"), "--overlay", str(tmp_path / "o.png"), "--method", "network", "--size", "32",
                 "--steps", "40"])
    assert code == 0
    assert (read_label_png(tmp_path / "m.png") == truth).mean() == 1.0
    assert (tmp_path / "o.png").is_file()
    assert json.loads(capsys.readouterr().out.splitlines()[0])["classes"] == 2
    with pytest.raises(ValueError, match="needs --scribbles"):
        _cli([str(tmp_path / "a.png"), "--out", str(tmp_path / "m.png")])
    with pytest.raises(ValueError, match="add --method network"):
        _cli([str(tmp_path / "a.png"), "--scribbles", str(tmp_path / "a_scr.png"), "--out", str(tmp_path / "m.png"),
              "--steps", "3"])
    assert _cli([str(tmp_path / "a.png"), "--scribbles", str(tmp_path / "a_scr.png"), "--out",
                 str(tmp_path / "g.png")]) == 0  # the default graph cut
    assert (read_label_png(tmp_path / "g.png") == truth).mean() == 1.0


def test_cli_dataset_folder_writes_masks_and_refuses_to_overwrite(tmp_path):
    image, scribbles, truth = two_halves()
    root = tmp_path / "data"
    for name in ("x", "y"):
        write_image(root / "images" / f"{name}.png", image)
    write_label_png(root / "scribbles" / "x.png", scribbles)  # y has no scribbles
    (root / "classes.txt").write_text("background\nobject\n")
    args = [str(root)]  # the default graph cut
    assert _cli(args) == 0
    assert (read_label_png(root / "masks" / "x.png") == truth).mean() == 1.0
    assert not (root / "masks" / "y.png").exists()
    with pytest.raises(ValueError, match="already exist.*--overwrite"):
        _cli(args)
    assert _cli([*args, "--overwrite"]) == 0
    assert _cli([*args, "--out-dir", str(tmp_path / "elsewhere")]) == 0
    assert (tmp_path / "elsewhere" / "x.png").is_file()


def test_benchmark_and_protocol_smoke(tmp_path):
    """benchmarks/annotate.py on one image (GrabCut, pydensecrf, one graph cut), then
    benchmarks/annotate_protocol.py on two copies of its output."""
    if not (GRABCUT / "names.txt").is_file():
        pytest.skip(f"GrabCut-13 data not found at {GRABCUT}")
    pytest.importorskip("pydensecrf.densecrf")
    pytest.importorskip("maxflow")
    bench, protocol = (_load_script(name) for name in ("annotate", "annotate_protocol"))
    out = tmp_path / "a.json"
    assert bench.main(["--images", "1", "--methods", "baselines,grid", "--grid", "50:5", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert {"machine", "versions", "methods", "metric", "commands", "threads"} <= set(result)
    assert [r["kind"] for r in result["methods"]] == ["grabcut", "pydensecrf", "graphcut"]
    for row in result["methods"]:
        assert set(row["scribbles"]["per_seed"]["0"]["per_image"]) == set(result["images"])
        assert 0.0 <= row["scribbles_dense"]["miou"] <= 1.0 and row["median_cpu_s_per_image"] >= 0
    assert len(result["methods"][0]["scribbles"]["per_seed"]) == 3  # GrabCut: three seeds
    again = out.stat().st_mtime_ns
    assert bench.main(["--images", "1", "--methods", "grid", "--grid", "50:5", "--out", str(out)]) == 0
    assert len(json.loads(out.read_text())["methods"]) == 3 and out.stat().st_mtime_ns >= again  # reused rows
    b = tmp_path / "b.json"
    b.write_text(out.read_text())
    assert protocol.main(["--a", str(out), "--b", str(b), "--out", str(tmp_path / "p.json")]) == 0
    p = json.loads((tmp_path / "p.json").read_text())
    assert [d["chosen"] for d in p["directions"]] == ["graphcut gamma=50 geodesic_weight=5"] * 2
    assert set(p["pooled"]) == {r["name"] for r in result["methods"]}


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
