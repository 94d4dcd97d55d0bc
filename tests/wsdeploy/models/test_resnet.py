"""Tests for wsdeploy.models.resnet: torchvision key compatibility, weight loading, strides."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from wsdeploy.models.resnet import (
    BasicBlock,
    ResNet,
    dilation_for_output_stride,
    load_torchvision_weights,
    resnet18,
    resnet50,
    resnet101,
)

# Produced from torchvision's own resnet.py by scripts/dump_torchvision_resnet_keys.py.
KEYS_JSON = Path(__file__).with_name("torchvision_resnet_keys.json")
BUILDERS = {"resnet18": resnet18, "resnet50": resnet50, "resnet101": resnet101}


def _torchvision_entries(arch: str) -> list[tuple[str, list[int]]]:
    models = json.loads(KEYS_JSON.read_text())["models"]
    return [(key, shape) for key, shape in models[arch]]


def _fake_torchvision_file(arch: str, path: Path, *, drop_counters: bool = False) -> dict[str, torch.Tensor]:
    """Random state dict with torchvision's keys and shapes (fc included), saved to ``path``."""
    gen = torch.Generator().manual_seed(0)
    state = {}
    for key, shape in _torchvision_entries(arch):
        if key.endswith("num_batches_tracked"):
            if not drop_counters:
                state[key] = torch.tensor(7, dtype=torch.long)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=gen) + 0.5
        else:
            state[key] = torch.randn(shape, generator=gen)
    torch.save(state, path)
    return state


@pytest.mark.parametrize("arch", list(BUILDERS))
@pytest.mark.parametrize("output_stride", [8, 32])
def test_state_dict_keys_and_shapes_match_torchvision(arch: str, output_stride: int) -> None:
    expected = [(k, s) for k, s in _torchvision_entries(arch) if not k.startswith("fc.")]
    ours = [(k, list(v.shape)) for k, v in BUILDERS[arch](output_stride=output_stride).state_dict().items()]
    assert ours == expected


def test_load_torchvision_weights_strict(tmp_path: Path) -> None:
    path = tmp_path / "resnet18-f37072fd.pth"
    state = _fake_torchvision_file("resnet18", path, drop_counters=True)
    backbone = resnet18(output_stride=16)
    load_torchvision_weights(backbone, path)
    loaded = backbone.state_dict()
    for key, value in state.items():
        if not key.startswith("fc."):
            torch.testing.assert_close(loaded[key], value, rtol=0, atol=0)
    assert int(loaded["bn1.num_batches_tracked"]) == 0  # absent from the file: kept


def test_load_torchvision_weights_wrong_depth_lists_mismatches(tmp_path: Path) -> None:
    path = tmp_path / "resnet18.pth"
    _fake_torchvision_file("resnet18", path)
    with pytest.raises(ValueError, match=r"missing .*layer1\.0\.conv3\.weight.*wrong shape"):
        load_torchvision_weights(resnet50(), path)


def test_load_torchvision_weights_bad_files(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="cannot read"):
        load_torchvision_weights(resnet18(), garbage)
    nested = tmp_path / "nested.pth"
    torch.save({"model": {"w": torch.zeros(1)}}, nested)
    with pytest.raises(ValueError, match="not a flat state dict"):
        load_torchvision_weights(resnet18(), nested)
    with pytest.raises(ValueError, match="width=64"):
        load_torchvision_weights(resnet18(width=16), garbage)


@pytest.mark.parametrize(
    ("output_stride", "strides"),
    [(8, (4, 8, 8, 8)), (16, (4, 8, 16, 16)), (32, (4, 8, 16, 32))],
)
@pytest.mark.parametrize("builder", [resnet18, resnet50])
def test_forward_features_shapes(builder, output_stride: int, strides: tuple[int, ...]) -> None:
    backbone = builder(output_stride=output_stride, width=16).eval()
    e = 1 if builder is resnet18 else 4
    h, w = 3 * 32, 5 * 32
    with torch.no_grad():
        feats = backbone.forward_features(torch.randn(2, 3, h, w))
    assert list(feats) == ["layer1", "layer2", "layer3", "layer4"]
    for (name, f), stride, mult in zip(feats.items(), strides, (1, 2, 4, 8)):
        assert f.shape == (2, 16 * mult * e, h // stride, w // stride), name
        assert backbone.feature_strides[name] == stride
        assert backbone.feature_channels[name] == f.shape[1]
    assert backbone.output_stride == output_stride


def test_bad_arguments_quote_the_value() -> None:
    with pytest.raises(ValueError, match=r"got \(True, False\)"):
        ResNet(block=BasicBlock, layers=(2, 2, 2, 2), replace_stride_with_dilation=(True, False))
    with pytest.raises(ValueError, match=r"got \(1, 0, 0\)"):
        ResNet(block=BasicBlock, layers=(2, 2, 2, 2), replace_stride_with_dilation=(1, 0, 0))
    with pytest.raises(ValueError, match="got True"):
        ResNet(block=BasicBlock, layers=(2, 2, 2, 2), replace_stride_with_dilation=True)
    with pytest.raises(ValueError, match="got 4"):
        dilation_for_output_stride(4)
    with pytest.raises(ValueError, match="got 12"):
        resnet18(width=12)
