"""TensorRT export: what can be checked without TensorRT (profiles, calibration batches, the
error when it is missing); building and running engines is skipped where TensorRT is absent."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from wsdeploy.checkpoint import read_checkpoint
from wsdeploy.export import optimization_profile, to_tensorrt
from wsdeploy.export.tensorrt import calibration_batches
from wsdeploy.runtime import preprocess


def _has_tensorrt() -> bool:
    try:
        import tensorrt  # noqa: F401
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


def test_calibration_batches_use_the_runtime_preprocessing(checkpoint):
    card, _ = read_checkpoint(checkpoint)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8) for _ in range(5)]
    batches = list(calibration_batches(images, card, shape=(2, 3, 48, 64), input_multiple=16))
    assert len(batches) == 2  # the fifth image does not fill a batch
    assert batches[0].shape == (2, 3, 48, 64) and batches[0].dtype == np.float32
    expected = preprocess(np.stack(images[:2]), mean=card.mean, std=card.std, multiple=16).numpy()
    np.testing.assert_allclose(batches[0], expected, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="at least one full batch of 8"):
        list(calibration_batches(images, card, shape=(8, 3, 48, 64), input_multiple=16))


@pytest.mark.skipif(_has_tensorrt(), reason="TensorRT is installed: the missing-TensorRT error cannot occur")
def test_missing_tensorrt_names_the_extra(onnx_file, tmp_path):
    with pytest.raises(ImportError, match=r'pip install "wsdeploy\[gpu\]"'):
        to_tensorrt(onnx_file, tmp_path / "model.engine")
    assert not (tmp_path / "model.engine").exists()


def test_tensorrt_arguments_are_checked_before_building(onnx_file, tmp_path):
    with pytest.raises(ValueError, match="needs calibration_data"):
        to_tensorrt(onnx_file, tmp_path / "m.engine", int8=True)
    with pytest.raises(ValueError, match="min_shape <= opt_shape"):
        to_tensorrt(onnx_file, tmp_path / "m.engine", min_shape=(4, 3, 64, 64), opt_shape=(1, 3, 64, 64))


@pytest.mark.gpu
@pytest.mark.tensorrt
@pytest.mark.skipif(not _has_tensorrt(), reason="needs TensorRT and a CUDA GPU (not on PyPI as a CPU wheel)")
def test_engine_build_and_parity(checkpoint, onnx_file, tmp_path):  # pragma: no cover - not run here
    import wsdeploy

    result = to_tensorrt(onnx_file, tmp_path / "m.engine", fp16=True, min_shape=(1, 3, 32, 32),
                         opt_shape=(1, 3, 64, 64), max_shape=(4, 3, 128, 128), timing_cache=tmp_path / "timing.cache")
    assert result.side_file.is_file() and (tmp_path / "timing.cache").is_file()
    image = np.random.default_rng(0).integers(0, 256, size=(60, 100, 3), dtype=np.uint8)
    a = wsdeploy.load(checkpoint, device="cuda").segment(image).labels
    b = wsdeploy.load(result.path, device="cuda").segment(image).labels
    assert (a == b).mean() >= 0.995
