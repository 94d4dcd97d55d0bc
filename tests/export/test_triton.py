"""`to_triton`: the repository layout, config.pbtxt parsed by Triton's own protobuf, ONNX at the shapes."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

pytest.importorskip("tritonclient.grpc", reason='needs tritonclient\'s protobuf: pip install "tritonclient[grpc]"',
                    exc_type=ImportError)
pytest.importorskip("onnxscript", reason="ONNX export needs onnxscript")

from google.protobuf import text_format  # noqa: E402
from tritonclient.grpc import model_config_pb2  # noqa: E402
from wsdeploy.export.triton import check_triton_model, to_triton  # noqa: E402

import wsdeploy  # noqa: E402
from wsdeploy.checkpoint import ModelCard, save_checkpoint  # noqa: E402
from wsdeploy.models import build_model  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::FutureWarning")]
CLASSES = ["background", "a", "b", "c"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    card = ModelCard(arch="lraspp_resnet18", arch_kwargs={"width": 16}, classes=CLASSES)
    root = tmp_path_factory.mktemp("triton")
    save_checkpoint(root / "model.pt", build_model(card.arch, len(CLASSES), width=16), card)
    result = to_triton(root / "model.pt", root / "repo", model_name="seg", max_batch_size=8, max_queue_delay_us=2000)
    return root, result


def test_layout_and_config_parse_against_tritons_model_config(exported):
    root, result = exported
    assert result.model_dir == root / "repo" / "seg"
    assert result.onnx_path == root / "repo" / "seg" / "1" / "model.onnx"
    config = text_format.Parse(result.config_path.read_text(), model_config_pb2.ModelConfig())
    assert config == result.config
    assert (config.name, config.backend, config.max_batch_size) == ("seg", "onnxruntime", 8)
    assert config.dynamic_batching.max_queue_delay_microseconds == 2000
    (inp,), (out,) = config.input, config.output
    assert (inp.name, model_config_pb2.DataType.Name(inp.data_type), list(inp.dims)) == ("image", "TYPE_FP32", [3, -1, -1])
    assert (out.name, model_config_pb2.DataType.Name(out.data_type), list(out.dims)) == ("logits", "TYPE_FP32", [4, -1, -1])
    (group,) = config.instance_group
    assert group.count == 1 and model_config_pb2.ModelInstanceGroup.Kind.Name(group.kind) == "KIND_AUTO"
    side = json.loads((result.model_dir / "wsdeploy.json").read_text())
    assert side["card"]["classes"] == CLASSES and side["input_multiple"] >= 1


def test_the_repository_onnx_gives_the_checkpoints_labels(exported):
    root, result = exported
    image = np.random.default_rng(0).integers(0, 256, size=(40, 56, 3), dtype=np.uint8)
    expected = wsdeploy.load(root / "model.pt", device="cpu").segment(image).labels
    got = wsdeploy.load(result.onnx_path, device="cpu").segment(image).labels
    assert (got == expected).mean() > 0.999


def test_an_existing_onnx_export_with_cpu_instances(exported, tmp_path):
    _, result = exported
    again = to_triton(result.onnx_path, tmp_path / "repo", model_name="cpu_seg", max_batch_size=4,
                      instance_count=2, kind="cpu")
    (group,) = again.config.instance_group
    assert group.count == 2 and model_config_pb2.ModelInstanceGroup.Kind.Name(group.kind) == "KIND_CPU"
    assert again.config.max_batch_size == 4


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda t: t.replace("TYPE_FP32", "TYPE_FP16", 1), "TYPE_FP16"),
        (lambda t: t.replace('name: "image"', 'name: "input"'), "input names"),
        (lambda t: t.replace("dims: [ 3, -1, -1 ]", "dims: [ 1, -1, -1 ]", 1), "dims"),
        (lambda t: t.replace('name: "seg"', 'name: "other"'), "folder name"),
        (lambda t: t.replace("max_batch_size", "max_batch_sise"), "not a valid Triton ModelConfig"),
    ],
)
def test_check_refuses_a_config_that_does_not_fit(exported, tmp_path, edit, match):
    _, result = exported
    broken = tmp_path / "seg"
    shutil.copytree(result.model_dir, broken)
    (broken / "config.pbtxt").write_text(edit(result.config_path.read_text()))
    with pytest.raises(ValueError, match=match):
        check_triton_model(broken)


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(model_name="a/b"), "model_name"), (dict(kind="tpu"), "kind"), (dict(instance_count=0), "instance_count"),
     (dict(max_batch_size=-1), "max_batch_size"), (dict(version=0), "version")],
)
def test_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        to_triton(tmp_path / "missing.pt", tmp_path / "repo", **kwargs)
