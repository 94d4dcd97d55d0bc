"""TensorRT export: what can be checked without TensorRT (profiles, the INT8 scheme TensorRT
needs, argument checks, the error when it is missing); building and running engines is skipped
where TensorRT or CUDA is absent. The API names are checked in `test_tensorrt_api.py`."""
from __future__ import annotations

import dataclasses
import sys
import types

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from wsdeploy.backends.tensorrt_backend import import_tensorrt
from wsdeploy.export import optimization_profile, to_onnx, to_tensorrt
from wsdeploy.export.onnx_export import read_onnx_info
from wsdeploy.export.tensorrt import int8_scheme

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def _has_tensorrt() -> bool:
    try:
        import_tensorrt()
    except ImportError:
        return False
    return torch.cuda.is_available()


def test_optimization_profile_rounds_to_the_input_multiple():
    lo, opt, hi = optimization_profile((1, 3, 250, 250), (4, 3, 512, 500), (16, 3, 1024, 1024), input_multiple=32)
    assert (lo, opt, hi) == ((1, 3, 256, 256), (4, 3, 512, 512), (16, 3, 1024, 1024))
    with pytest.raises(ValueError, match="min_shape <= opt_shape <= max_shape"):
        optimization_profile((1, 3, 512, 512), (1, 3, 256, 256), (1, 3, 1024, 1024), input_multiple=32)
    with pytest.raises(ValueError, match=r"opt_shape must be \(B, 3, H, W\)"):
        optimization_profile((1, 3, 64, 64), (1, 1, 64, 64), (1, 3, 64, 64), input_multiple=32)


def _quantize_graph(path, zero_point_type: int | None, zero: int = 0) -> None:
    """x -> QuantizeLinear -> DequantizeLinear -> y, with the given zero-point type (None: none)."""
    inits = [helper.make_tensor("scale", TensorProto.FLOAT, [], [0.1])]
    q_inputs = ["x", "scale"]
    if zero_point_type is not None:
        inits.append(helper.make_tensor("zero", zero_point_type, [], [zero]))
        q_inputs.append("zero")
    nodes = [helper.make_node("QuantizeLinear", q_inputs, ["q"]), helper.make_node("DequantizeLinear", ["q", *q_inputs[1:]], ["y"])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])], initializer=inits,
    )
    onnx.save(helper.make_model(graph), str(path))


def test_int8_scheme_tells_symmetric_from_asymmetric(tmp_path):
    cases = {"sym": (TensorProto.INT8, 0), "uint8": (TensorProto.UINT8, 128), "shifted": (TensorProto.INT8, 3),
             "no_zero_point": (None, 0)}
    expected = {"sym": "symmetric", "uint8": "asymmetric", "shifted": "asymmetric", "no_zero_point": "asymmetric"}
    for name, (dtype, zero) in cases.items():
        _quantize_graph(tmp_path / f"{name}.onnx", dtype, zero)
        assert int8_scheme(tmp_path / f"{name}.onnx") == expected[name], name
    assert _fp32_scheme(tmp_path) is None


def _fp32_scheme(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    onnx.save(helper.make_model(graph), str(tmp_path / "fp32.onnx"))
    return int8_scheme(tmp_path / "fp32.onnx")


@pytest.mark.slow
def test_symmetric_int8_onnx_is_what_tensorrt_gets(onnx_file, tmp_path):
    from wsdeploy.backends.onnxruntime_backend import OnnxRuntimeBackend
    from wsdeploy.export.onnx_export import read_onnx_info
    from wsdeploy.export.onnx_precision import quantize_int8
    from wsdeploy.export.parity import compare_backends

    info = read_onnx_info(onnx_file)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, size=(64, 96, 3), dtype=np.uint8) for _ in range(3)]
    for symmetric in (True, False):
        out = tmp_path / f"int8_{symmetric}.onnx"
        quantize_int8(onnx_file, out, images=images, card=info.card, input_multiple=info.input_multiple,
                      symmetric=symmetric)
        assert int8_scheme(out) == ("symmetric" if symmetric else "asymmetric")
    reference = OnnxRuntimeBackend(onnx_file, device="cpu", threads=1)
    report = compare_backends(reference, OnnxRuntimeBackend(tmp_path / "int8_True.onnx", device="cpu", threads=1),
                              images, card=info.card)
    assert report.label_agreement >= 0.9  # onnxruntime runs the symmetric scheme as well


def test_tensorrt_refuses_an_asymmetric_int8_onnx(onnx_file, tmp_path, monkeypatch):
    import wsdeploy.export.tensorrt as trt_export

    monkeypatch.setattr(trt_export, "read_onnx_info", lambda path: dataclasses.replace(read_onnx_info(path), precision="int8"))
    _quantize_graph(tmp_path / "asym.onnx", TensorProto.UINT8, 128)
    monkeypatch.setattr(trt_export, "int8_scheme", lambda path: int8_scheme(tmp_path / "asym.onnx"))
    with pytest.raises(ValueError, match="asymmetric uint8 activations.*int8_symmetric=True"):
        to_tensorrt(onnx_file, tmp_path / "m.engine")
    assert not (tmp_path / "m.engine").exists()


def test_stub_only_tensorrt_counts_as_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))  # what tensorrt-stubs looks like
    with pytest.raises(ImportError, match=r"only type stubs"):
        import_tensorrt()


@pytest.mark.skipif(_has_tensorrt(), reason="TensorRT is installed: the missing-TensorRT error cannot occur")
def test_missing_tensorrt_names_the_extra(onnx_file, tmp_path):
    with pytest.raises(ImportError, match=r'pip install "wsdeploy\[gpu\]"'):
        to_tensorrt(onnx_file, tmp_path / "model.engine")
    assert not (tmp_path / "model.engine").exists()


def test_tensorrt_arguments_are_checked_before_building(onnx_file, tmp_path):
    with pytest.raises(ValueError, match="min_shape <= opt_shape"):
        to_tensorrt(onnx_file, tmp_path / "m.engine", min_shape=(4, 3, 64, 64), opt_shape=(1, 3, 64, 64))
    with pytest.raises(ValueError, match="workspace_gib must be > 0"):
        to_tensorrt(onnx_file, tmp_path / "m.engine", workspace_gib=0)
    with pytest.raises(TypeError):  # TensorRT 11 has no precision flags: the ONNX decides
        to_tensorrt(onnx_file, tmp_path / "m.engine", fp16=True)  # type: ignore[call-arg]


@pytest.mark.gpu
@pytest.mark.tensorrt
@pytest.mark.skipif(not _has_tensorrt(), reason="needs TensorRT and a CUDA GPU (TensorRT's libraries come from NVIDIA's index)")
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_engine_build_and_parity(checkpoint, tmp_path, precision):  # pragma: no cover - not run here
    import wsdeploy

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, size=(64, 96, 3), dtype=np.uint8) for _ in range(4)]
    source = to_onnx(checkpoint, tmp_path / "m.onnx", fp16=precision == "fp16", int8=precision == "int8",
                     int8_symmetric=True, calibration=images if precision == "int8" else None).path
    result = to_tensorrt(source, tmp_path / "m.engine", min_shape=(1, 3, 32, 32), opt_shape=(1, 3, 64, 96),
                         max_shape=(4, 3, 128, 128), timing_cache=tmp_path / "timing.cache", check_images=images)
    assert result.precision == precision and result.parity is not None
    assert result.side_file.is_file() and (tmp_path / "timing.cache").is_file()
    a = wsdeploy.load(checkpoint, device="cuda").segment(images[0]).labels
    b = wsdeploy.load(result.path, device="cuda").segment(images[0]).labels
    assert (a == b).mean() >= (0.98 if precision == "int8" else 0.995)
