"""`to_onnx`: card in metadata, dynamic and fixed shapes, fp16/INT8, parity checks, bad files."""
from __future__ import annotations

import importlib.util
import json

import cv2
import numpy as np
import onnx
import pytest

import wsdeploy
from wsdeploy.backends import OnnxRuntimeBackend, TorchBackend
from wsdeploy.checkpoint import load_checkpoint, read_checkpoint
from wsdeploy.export import ParityError, Tolerance, check_parity, read_onnx_info, to_onnx
from wsdeploy.models import build_model, list_models

from tests.export.conftest import make_checkpoint

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8), (0, 0), 2)


def test_card_round_trips_through_onnx_metadata(checkpoint, onnx_file):
    card, _ = read_checkpoint(checkpoint)
    info = read_onnx_info(onnx_file)
    assert info.card == card
    assert (info.input_multiple, info.logit_stride, info.precision, info.input_shape) == (16, 4, "fp32", None)
    props = {p.key: p.value for p in onnx.load(str(onnx_file)).metadata_props}
    assert json.loads(props["wsdeploy.card"]) == card.to_dict()
    assert wsdeploy.load(onnx_file, device="cpu").card == card.to_dict()


def test_dynamic_batch_height_width_match_torch(checkpoint, onnx_file):
    session = OnnxRuntimeBackend(onnx_file, device="cpu", threads=1).session
    assert session.get_inputs()[0].shape == ["batch", 3, "height", "width"]
    torch_seg = wsdeploy.load(checkpoint, device="cpu")
    onnx_seg = wsdeploy.load(onnx_file, device="cpu")
    for batch, (h, w) in [(1, (37, 53)), (3, (61, 45)), (1, (96, 64))]:
        images = [_image(h, w, seed) for seed in range(batch)]
        for a, b in zip(torch_seg.segment(images, return_probs=True), onnx_seg.segment(images, return_probs=True)):
            assert b.labels.shape == (h, w)
            np.testing.assert_allclose(b.probs, a.probs, atol=1e-4)
            assert (a.labels == b.labels).mean() >= 0.999


def test_export_reports_parity_within_fp32_tolerance(onnx_export):
    result = onnx_export
    assert result.precision == "fp32"
    assert result.simplified == (importlib.util.find_spec("onnxslim") is not None)  # optional
    assert result.parity.images == 4  # the bundled demo images, or synthetic scenes without them
    assert result.parity.label_agreement >= 0.999 and result.parity.max_rel_error <= 1e-3
    assert sorted(p.name for p in result.path.parent.iterdir()) == ["model.onnx"]  # no temp/external data


def _reuse_export(monkeypatch, onnx_file):
    """Skip the slow torch.onnx.export step: 'export' by copying an existing fp32 file."""
    import shutil

    import wsdeploy.export.onnx_export as onnx_export

    monkeypatch.setattr(onnx_export, "_torch_export", lambda model, example, path, **kw: shutil.copy(onnx_file, path))


def test_parity_failure_is_loud_and_leaves_no_file(checkpoint, onnx_file, tmp_path, monkeypatch):
    _reuse_export(monkeypatch, onnx_file)
    images = [_image(64, 96), _image(50, 70, 1)]
    result = to_onnx(checkpoint, tmp_path / "ok.onnx", check_images=images, simplify=False)
    assert result.parity.shapes == [[64, 96], [64, 80]]  # each image at its own padded size
    with pytest.raises(ParityError, match="parity check failed: max relative logit error"):
        to_onnx(checkpoint, tmp_path / "m.onnx", check_images=images, simplify=False,
                tolerance=Tolerance(min_label_agreement=1.0, max_rel_error=0.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.onnx"]


def test_check_parity_raises_on_a_different_model(checkpoint, onnx_file):
    model, card = load_checkpoint(checkpoint)
    other = build_model(card.arch, card.num_classes, **card.arch_kwargs).eval()  # fresh random weights
    with pytest.raises(ParityError, match="relative logit error") as exc:
        check_parity(TorchBackend(other, device="cpu"), OnnxRuntimeBackend(onnx_file, device="cpu", threads=1),
                     [_image(64, 64)], card=card)
    assert exc.value.report.max_rel_error > 1e-3
    report = check_parity(TorchBackend(model, device="cpu"), OnnxRuntimeBackend(onnx_file, device="cpu", threads=1),
                          [_image(64, 64)], card=card, tolerance=Tolerance(min_label_agreement=0.999))
    assert report.max_abs_error < 1e-3


def test_fixed_shape_export_pads_smaller_images(checkpoint, tmp_path):
    path = tmp_path / "fixed.onnx"
    to_onnx(checkpoint, path, dynamic=False, input_shape=(2, 3, 64, 96), check=False, simplify=False)
    session = OnnxRuntimeBackend(path, device="cpu", threads=1).session
    assert session.get_inputs()[0].shape == [2, 3, 64, 96]
    torch_seg, onnx_seg = wsdeploy.load(checkpoint, device="cpu"), wsdeploy.load(path, device="cpu")
    images = [_image(37, 53, s) for s in range(3)]  # batch 3 through a batch-2 model
    for a, b in zip(torch_seg.segment(images), onnx_seg.segment(images)):
        assert (a.labels == b.labels).mean() >= 0.999
    with pytest.raises(ValueError, match="fixed input of 64x96"):
        onnx_seg.segment(_image(100, 50))
    with pytest.raises(ValueError, match="multiples of 16"):
        to_onnx(checkpoint, tmp_path / "bad.onnx", dynamic=False, input_shape=(1, 3, 50, 64))


def test_fp16_export_parity(checkpoint, onnx_file, tmp_path, monkeypatch):
    _reuse_export(monkeypatch, onnx_file)
    result = to_onnx(checkpoint, tmp_path / "m16.onnx", fp16=True, simplify=False)
    assert result.precision == "fp16" and result.parity.label_agreement >= 0.995
    model = onnx.load(str(tmp_path / "m16.onnx"))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # float32 I/O kept
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
    assert read_onnx_info(tmp_path / "m16.onnx").precision == "fp16"


def test_int8_export_is_qdq_and_calibrated_on_images(checkpoint, onnx_file, tmp_path, monkeypatch):
    _reuse_export(monkeypatch, onnx_file)
    calib = tmp_path / "calib"
    calib.mkdir()
    for i in range(4):
        cv2.imwrite(str(calib / f"{i}.jpg"), _image(64, 80, i))
    with pytest.raises(ValueError, match="calibration"):
        to_onnx(checkpoint, tmp_path / "m8.onnx", int8=True)
    result = to_onnx(checkpoint, tmp_path / "m8.onnx", int8=True, calibration=calib, simplify=False,
                     check_images=[_image(64, 64)], tolerance=Tolerance(min_label_agreement=0.5))
    ops = {n.op_type for n in onnx.load(str(tmp_path / "m8.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert result.precision == "int8" and read_onnx_info(tmp_path / "m8.onnx").precision == "int8"


def _segmentation_models() -> list[object]:
    """Every head with ResNet-18 (basic blocks) and LR-ASPP with ResNet-50 (bottleneck blocks);
    the other deep variants only add blocks the same code builds (exhaustive, 35 s each)."""
    names = [n for n in list_models() if not n.startswith("classifier")]
    default = {n for n in names if n.endswith("resnet18")} | {"lraspp_resnet50"}
    return [pytest.param(n, marks=[pytest.mark.slow] + ([] if n in default else [pytest.mark.exhaustive]))
            for n in names]


@pytest.mark.parametrize("name", _segmentation_models())
def test_every_segmentation_model_exports(name, tmp_path):
    ckpt = make_checkpoint(tmp_path / "m.pt", arch=name, width=8)
    result = to_onnx(ckpt, tmp_path / "m.onnx", check_images=[_image(64, 96), _image(45, 33, 1)])
    assert result.parity.label_agreement >= 0.999


def test_classifier_is_refused(tmp_path):
    with pytest.raises(ValueError, match="only segmentation models"):
        to_onnx(make_checkpoint(tmp_path / "c.pt", arch="classifier_resnet18", width=8), tmp_path / "c.onnx")


def test_bad_arguments(checkpoint, tmp_path):
    with pytest.raises(ValueError, match="not both"):
        to_onnx(checkpoint, tmp_path / "x.onnx", fp16=True, int8=True)
    with pytest.raises(ValueError, match="opset"):
        to_onnx(checkpoint, tmp_path / "x.onnx", opset=13)
    with pytest.raises(ValueError, match="card="):
        to_onnx(build_model("lraspp_resnet18", 2, width=8), tmp_path / "x.onnx")
    with pytest.raises(TypeError, match="checkpoint path or an nn.Module"):
        to_onnx(42, tmp_path / "x.onnx")
