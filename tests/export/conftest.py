"""Fixtures for the export tests: tiny random checkpoints, one intra-op thread."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from wsdeploy.checkpoint import ModelCard, save_checkpoint
from wsdeploy.models import build_model

CLASSES = ["background", "red", "green"]


def make_checkpoint(path: Path, arch: str = "deeplabv3plus_resnet18", width: int = 16) -> Path:
    torch.manual_seed(0)
    card = ModelCard(arch=arch, arch_kwargs={"width": width}, classes=CLASSES, supervision="scribbles")
    model = build_model(card.arch, card.num_classes, **card.arch_kwargs)
    with torch.no_grad():  # non-trivial BN statistics so labels vary across pixels
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.uniform_(0.5, 2.0)
                m.running_mean.uniform_(-0.2, 0.2)
    save_checkpoint(path, model, card)
    return path


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("export") / "model.pt")


@pytest.fixture(scope="session")
def onnx_export(checkpoint, tmp_path_factory):
    """`to_onnx` of `checkpoint`: fp32, dynamic, checked against torch on the default images."""
    from wsdeploy.export import to_onnx

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return to_onnx(checkpoint, tmp_path_factory.mktemp("onnx") / "model.onnx")
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def onnx_file(onnx_export) -> Path:
    return onnx_export.path
