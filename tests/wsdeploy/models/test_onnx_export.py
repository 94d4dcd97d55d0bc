"""Every registered model exports to ONNX with dynamic batch/H/W and matches torch in onnxruntime.

Exporter choice (torch 2.13): ``torch.onnx.export(..., dynamo=True)``, the default since torch
2.9 and the maintained path (the TorchScript exporter, ``dynamo=False``, also works here but
warns that it is deprecated). Notes for reuse in ``wsdeploy.export``:

- ``dynamic_shapes`` as a tuple mirroring the positional args, with *string* dims
  (``{0: "batch", 2: "height", 3: "width"}``): the ONNX input then carries those names; output
  dims come out as expressions such as ``((height - 1)//4) + 1``.
- ``external_data=False`` keeps the weights inside the single ``.onnx`` file (the default, True,
  writes a side ``.onnx.data`` file even for a 1 MB model); fine below ONNX's 2 GB limit.
- Use an example batch of 2 (and H, W > 1): ``torch.export`` specialises dims whose example
  size is 0 or 1 (the ONNX exporter then retries, but a plain ``torch.export`` fails).
- The models' eager input check is skipped while exporting (``wsdeploy.models.base.is_exporting``
  is True under both exporters), so the graph has no shape assertions: the caller pads.

Tolerance: atol 1e-4, rtol 1e-4 on logits (observed differences ~1e-7 at width 8).
Every registered model exports here with `WSDEPLOY_SLOW_TESTS=1`; by default only the shallow
classifier does (see `_cases`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from wsdeploy.models import build_model, list_models

# raised inside torch 2.13's own exporter (pytree internals), not by our code
pytestmark = pytest.mark.filterwarnings("ignore:`isinstance\\(treespec, LeafSpec\\)`:FutureWarning")


def export_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    """Export ``model`` (input ``image`` (B, 3, H, W), output ``logits``) with dynamic B, H, W."""
    torch.onnx.export(
        model.eval(),
        (example,),
        path,
        dynamo=True,
        input_names=["image"],
        output_names=["logits"],
        dynamic_shapes=({0: "batch", 2: "height", 3: "width"},),
        external_data=False,
        verbose=False,
    )


def _cases() -> list[object]:
    """The classifiers here (`wsdeploy export` refuses them, so tests/export never exports one);
    the segmentation models' export is tested through `wsdeploy.export.to_onnx` there. Deeper
    ResNets are exhaustive: ResNet-50 and -101 differ only in their number of bottleneck blocks
    (one export: 23-67 s on the 2-core CPU)."""
    return [pytest.param(name, marks=[pytest.mark.slow] + ([] if name == "classifier_resnet18" else [pytest.mark.exhaustive]))
            for name in list_models()]


@pytest.mark.parametrize("name", _cases())
def test_onnx_export_dynamic_shapes_matches_torch(name: str, tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    torch.manual_seed(0)
    model = build_model(name, 3, output_stride=16, width=8).eval()
    m = model.input_multiple
    path = tmp_path / f"{name}.onnx"
    export_onnx(model, torch.randn(2, 3, 2 * m, 3 * m), path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no external data file

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert inp.name == "image" and inp.shape == ["batch", 3, "height", "width"]
    for shape in [(1, 3, 3 * m, 5 * m), (3, 3, 4 * m, 2 * m)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            expected = model(x).numpy()
        (got,) = session.run(["logits"], {"image": x.numpy()})
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_torch_export_dynamic_shapes() -> None:
    # The .pt2 path. Without the eager-only skip in check_input_shape, `h % multiple` would
    # specialise H and W and torch.export would fail with "Constraints violated" (checked).
    model = build_model("lraspp_resnet18", 3, width=8).eval()
    dim = torch.export.Dim.DYNAMIC
    program = torch.export.export(model, (torch.randn(2, 3, 64, 96),), dynamic_shapes=({0: dim, 2: dim, 3: dim},))
    x = torch.randn(3, 3, 48, 80)
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), model(x), rtol=1e-5, atol=1e-5)
