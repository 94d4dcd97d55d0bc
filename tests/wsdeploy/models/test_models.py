"""Tests for the segmentation models, the CAM classifier and the registry (width 16, CPU)."""

from __future__ import annotations

import json

import pytest
import torch

from wsdeploy.models import CAMClassifier, SegmentationModel, build_model, list_models

SEG_MODELS = [n for n in list_models() if not n.startswith("classifier_")]
CLS_MODELS = [n for n in list_models() if n.startswith("classifier_")]
K = 5


def test_registry_names() -> None:
    assert list_models() == sorted([
        "classifier_resnet18", "classifier_resnet50", "classifier_resnet101",
        "deeplabv3plus_resnet18", "deeplabv3plus_resnet50", "deeplabv3plus_resnet101",
        "lraspp_resnet18", "lraspp_resnet50",
    ])


@pytest.mark.parametrize("name", SEG_MODELS)
@pytest.mark.parametrize("output_stride", [8, 16])
def test_segmentation_logit_shapes(name: str, output_stride: int) -> None:
    torch.manual_seed(0)
    model = build_model(name, K, output_stride=output_stride, width=16).eval()
    assert isinstance(model, SegmentationModel)
    assert model.input_multiple == output_stride and model.logit_stride == 4
    # odd multiples of the output stride: 3x, 5x and 7x
    for batch, (h, w) in [(1, (3 * output_stride, 5 * output_stride)), (2, (7 * output_stride, 3 * output_stride))]:
        with torch.no_grad():
            logits = model(torch.randn(batch, 3, h, w))
        assert logits.shape == (batch, K, h // 4, w // 4)
        assert logits.dtype == torch.float32 and torch.isfinite(logits).all()


@pytest.mark.parametrize("name", CLS_MODELS)
@pytest.mark.parametrize("output_stride", [8, 16])
def test_classifier_forward_is_mean_of_cam(name: str, output_stride: int) -> None:
    torch.manual_seed(0)
    model = build_model(name, K, output_stride=output_stride, width=16).eval()
    assert isinstance(model, CAMClassifier)
    assert model.classifier.bias is None
    h, w = 3 * output_stride, 5 * output_stride
    x = torch.randn(2, 3, h, w)
    with torch.no_grad():
        logits, cams = model(x), model.cam(x)
    assert logits.shape == (2, K)
    assert cams.shape == (2, K, h // output_stride, w // output_stride)
    torch.testing.assert_close(logits, cams.mean((2, 3)), rtol=0, atol=0)
    # pooling first then the 1x1 conv (the CAM paper's order) gives the same logits
    with torch.no_grad():
        pooled = model.backbone.forward_features(x)["layer4"].mean((2, 3))  # (B, C)
    torch.testing.assert_close(logits, pooled @ model.classifier.weight[:, :, 0, 0].T, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["deeplabv3plus_resnet18", "lraspp_resnet18", "classifier_resnet18"])
def test_trains_with_batch_one(name: str) -> None:
    # single-image annotate trains with batch 1: no BatchNorm on a 1x1 map anywhere
    model = build_model(name, K, width=16).train()
    out = model(torch.randn(1, 3, 64, 64))
    out.sum().backward()
    assert model.backbone.conv1.weight.grad is not None


def test_input_check_names_the_padded_size() -> None:
    model = build_model("deeplabv3plus_resnet18", K, width=16)
    with pytest.raises(ValueError, match=r"multiples of 16, got \(H, W\) = \(50, 64\); pad the image to \(64, 64\)"):
        model(torch.randn(1, 3, 50, 64))
    with pytest.raises(ValueError, match=r"expected input \(B, 3, H, W\), got \(1, 1, 64, 64\)"):
        model(torch.randn(1, 1, 64, 64))
    with pytest.raises(TypeError, match="torch.uint8"):
        model(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))
    classifier = build_model("classifier_resnet18", K, width=16, output_stride=8)
    with pytest.raises(ValueError, match=r"pad the image to \(24, 16\)"):
        classifier(torch.randn(1, 3, 20, 16))


def test_build_model_errors() -> None:
    with pytest.raises(ValueError, match="unknown model 'deeplabv3_resnet18'; valid names: classifier_resnet101"):
        build_model("deeplabv3_resnet18", K)
    with pytest.raises(TypeError, match=r"unknown argument\(s\) \['outptu_stride'\]"):
        build_model("lraspp_resnet18", K, outptu_stride=8)
    with pytest.raises(ValueError, match="output_stride must be one of .* got 4"):
        build_model("lraspp_resnet18", K, output_stride=4)
    with pytest.raises(ValueError, match="width must be .* got 20"):
        build_model("lraspp_resnet18", K, width=20)
    with pytest.raises(ValueError, match="num_classes must be an int >= 1, got 0"):
        build_model("classifier_resnet18", 0, width=16)
    with pytest.raises(TypeError, match="JSON-plain"):
        build_model("classifier_resnet18", K, backbone_weights=["x.pth"])
    with pytest.raises(ValueError, match="width=64"):
        build_model("deeplabv3plus_resnet18", K, width=16, backbone_weights="resnet18.pth")


def test_rebuild_from_json_kwargs_gives_same_state_dict_layout() -> None:
    kwargs = {"output_stride": 8, "width": 16, "backbone_weights": None}
    record = json.loads(json.dumps({"name": "deeplabv3plus_resnet50", "kwargs": kwargs}))
    a = build_model("deeplabv3plus_resnet50", K, **kwargs)
    b = build_model(record["name"], K, **record["kwargs"])
    b.load_state_dict(a.state_dict(), strict=True)
    assert a.head.aspp.branches[1][0].dilation == (12, 12)  # OS8 rates 12/24/36
    assert build_model("deeplabv3plus_resnet18", K, width=16).rates == (6, 12, 18)
