"""Every backend behind `wsdeploy.load`: same `Segmentation` as torch, cards read back, clear
errors for foreign, corrupt or unsupported files and for a missing TensorRT."""
from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import threading

import cv2
import numpy as np
import onnx
import pytest
import torch

import wsdeploy
from wsdeploy.backends import BACKEND_NAMES, Pt2Backend, TorchBackend
from wsdeploy.checkpoint import load_checkpoint, read_checkpoint

from tests.export.conftest import make_checkpoint

RUN_SLOW = os.environ.get("WSDEPLOY_SLOW_TESTS") == "1"
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("backends") / "model.pt", arch="lraspp_resnet18", width=8)


@pytest.fixture(scope="module")
def exports(checkpoint, tmp_path_factory):
    """{'onnx': path, 'pt2': path} exported from `checkpoint` (parity-checked on export)."""
    from wsdeploy.export import to_onnx, to_pt2

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("exports")
    try:
        return {
            "onnx": to_onnx(checkpoint, folder / "model.onnx", simplify=False).path,
            "pt2": to_pt2(checkpoint, folder / "model.pt2").path,
        }
    finally:
        torch.set_num_threads(threads)


def _images() -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    return [cv2.GaussianBlur(rng.integers(0, 256, size=s, dtype=np.uint8), (0, 0), 2) for s in [(37, 53, 3), (64, 48, 3)]]


@pytest.mark.parametrize("kind", ["onnx", "pt2"])
def test_every_backend_gives_the_same_segmentation(checkpoint, exports, kind):
    reference = wsdeploy.load(checkpoint, device="cpu")
    model = wsdeploy.load(exports[kind], device="cpu")
    assert model.card == reference.card and model.classes == reference.classes
    for a, b in zip(reference.segment(_images(), return_probs=True), model.segment(_images(), return_probs=True)):
        assert isinstance(b, wsdeploy.Segmentation) and b.labels.dtype == a.labels.dtype
        np.testing.assert_allclose(b.probs, a.probs, atol=1e-4)
        assert (a.labels == b.labels).mean() >= 0.999


def test_crf_runs_after_an_exported_backend(exports):
    pytest.importorskip("wsdeploy.crf")
    seg = wsdeploy.load(exports["onnx"], device="cpu", crf=True).segment(_images()[0], return_probs=True)
    assert seg.labels.shape == (37, 53)
    np.testing.assert_allclose(seg.probs.sum(0), 1.0, atol=1e-4)


def test_pt2_runs_without_the_model_code(exports, monkeypatch):
    import wsdeploy.models

    backend = Pt2Backend(exports["pt2"], device="cpu")
    assert backend.kind == "exported_program"
    monkeypatch.setattr(wsdeploy.models, "build_model", None)  # nothing may rebuild the module
    x = torch.randn(3, 3, 48, 80)
    assert backend(x).shape == (3, 3, 48 // backend.logit_stride, 80 // backend.logit_stride)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")  # inside AOTI
@pytest.mark.skipif(not RUN_SLOW, reason="AOTInductor compiles C++ for ~50 s on 2 cores; set WSDEPLOY_SLOW_TESTS=1")
def test_pt2_aoti_package_on_cpu(checkpoint, tmp_path):
    from wsdeploy.export import to_pt2

    result = to_pt2(checkpoint, tmp_path / "aoti.pt2", aoti=True)
    assert result.kind == "aoti" and result.parity.label_agreement >= 0.999
    model = wsdeploy.load(result.path, device="cpu")
    assert model.backend.kind == "aoti" and model.segment(_images()[0]).labels.shape == (37, 53)


def test_foreign_onnx_is_refused(tmp_path):
    model = build_plain_onnx(tmp_path / "foreign.onnx")
    with pytest.raises(ValueError, match="no wsdeploy model card"):
        wsdeploy.load(model, device="cpu")


def build_plain_onnx(path):
    """A valid ONNX model that wsdeploy did not write (Identity, no metadata)."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["image"], ["logits"])], "foreign",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["b", 3, "h", "w"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", 3, "h", "w"])],
    )
    onnx.save(helper.make_model(graph), str(path))
    return path


@pytest.mark.parametrize("payload", [b"", b"not an onnx model at all", "truncate"])
def test_corrupt_onnx_is_refused(exports, tmp_path, payload):
    path = tmp_path / "bad.onnx"
    data = exports["onnx"].read_bytes()
    path.write_bytes(data[: len(data) // 2] if payload == "truncate" else payload)
    with pytest.raises(ValueError, match="bad.onnx: not a readable ONNX model"):
        wsdeploy.load(path, device="cpu")


def test_bad_pt2_files_are_refused(exports, tmp_path):
    garbage = tmp_path / "garbage.pt2"
    garbage.write_bytes(b"PK\x03\x04 nonsense")
    with pytest.raises(ValueError, match="garbage.pt2: not a"):
        wsdeploy.load(garbage, device="cpu")
    foreign = tmp_path / "foreign.pt2"
    program = torch.export.export(torch.nn.ReLU(), (torch.randn(2, 3),))
    torch.export.save(program, foreign)
    with pytest.raises(ValueError, match="no wsdeploy model card"):
        wsdeploy.load(foreign, device="cpu")


def test_backend_choice_is_checked(checkpoint, exports):
    assert type(wsdeploy.load(exports["onnx"], device="cpu", backend="onnxruntime").backend).__name__ == "OnnxRuntimeBackend"
    with pytest.raises(ValueError, match="backend 'pt2' reads .pt2 files"):
        wsdeploy.load(exports["onnx"], backend="pt2")
    with pytest.raises(ValueError, match="unknown backend 'onnx'"):
        wsdeploy.load(exports["onnx"], backend="onnx")
    with pytest.raises(ValueError, match="torch backend options"):
        wsdeploy.load(exports["onnx"], device="cpu", precision="fp16")
    with pytest.raises(ValueError, match="unsupported model file"):
        wsdeploy.load(checkpoint.with_suffix(".h5"))
    assert set(BACKEND_NAMES) == {"torch", "onnxruntime", "onnxruntime-trt", "pt2", "tensorrt"}


def test_onnxruntime_cuda_without_gpu_is_a_clear_error(exports):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ValueError, match="CUDA is not available|no CUDA provider"):
        wsdeploy.load(exports["onnx"], device="cuda")


def test_tensorrt_engine_needs_its_side_file_and_tensorrt(checkpoint, tmp_path):
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"not really an engine")
    with pytest.raises(ValueError, match="no model card side file 'model.engine.json'"):
        wsdeploy.load(engine)
    card, _ = read_checkpoint(checkpoint)
    runtime = {"format_version": 1, "input_multiple": 32, "logit_stride": 8, "precision": "fp16"}
    (tmp_path / "model.engine.json").write_text(json.dumps({"wsdeploy.card": card.to_dict(), "wsdeploy.runtime": runtime}))
    from wsdeploy.backends.tensorrt_backend import read_engine_info

    info = read_engine_info(engine)
    assert info.card == card and info.precision == "fp16"
    from wsdeploy.backends.tensorrt_backend import import_tensorrt

    try:
        import_tensorrt()  # a stub-only `tensorrt` (tensorrt-stubs) counts as missing
    except ImportError:
        with pytest.raises(ImportError, match=r"wsdeploy\[gpu\]"):
            wsdeploy.load(engine)
    else:  # pragma: no cover - machines with TensorRT
        with pytest.raises(ValueError):
            wsdeploy.load(engine, device="cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("options", [{"channels_last": True}, {"precision": "bf16"}])
def test_torch_fast_paths_follow_eager(checkpoint, options):
    model, card = load_checkpoint(checkpoint)
    x = torch.randn(2, 3, 64, 96)
    expected = TorchBackend(model, device="cpu")(x)
    got = TorchBackend(model, device="cpu", **options)(x)
    assert got.dtype == torch.float32 and got.is_contiguous()
    tol = 1e-5 if options.get("precision", "fp32") == "fp32" else 0.1
    torch.testing.assert_close(got, expected, atol=tol * (1 + float(expected.abs().max())), rtol=0)
    with pytest.raises(ValueError, match="precision must be one of"):
        TorchBackend(model, precision="int4")
    with pytest.raises(ValueError, match="compile must be None or one of"):
        TorchBackend(model, compile="fast")


def _hammer(call, inputs: list, threads: int = 4, rounds: int = 2) -> list:
    """Every input through `call` from `threads` threads at once (each thread walks all inputs,
    starting at a different one, `rounds` times); returns [(index, output), ...]."""
    barrier = threading.Barrier(threads)

    def worker(offset: int) -> list:
        barrier.wait()  # all threads start together, so calls overlap
        out = []
        for r in range(rounds):
            for k in range(len(inputs)):
                i = (k + offset + r) % len(inputs)
                out.append((i, call(inputs[i])))
        return out

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        return [item for part in pool.map(worker, range(threads)) for item in part]


@pytest.mark.parametrize("kind", ["torch", "onnx", "pt2"])
def test_backends_give_single_threaded_results_under_concurrent_calls(checkpoint, exports, kind):
    from wsdeploy.backends import OnnxRuntimeBackend

    if kind == "torch":
        backend = TorchBackend(load_checkpoint(checkpoint)[0], device="cpu")
    elif kind == "onnx":
        backend = OnnxRuntimeBackend(exports["onnx"], device="cpu", threads=1)
    else:
        backend = Pt2Backend(exports["pt2"], device="cpu")
    gen = torch.Generator().manual_seed(0)
    shapes = [(1, 64, 96), (2, 32, 64), (1, 96, 64), (3, 64, 32)]  # different shapes, so a mixed-up call shows
    inputs = [torch.randn(b, 3, h, w, generator=gen) for b, h, w in shapes]
    expected = [backend(x) for x in inputs]
    results = _hammer(backend, inputs)
    assert len(results) == 4 * 2 * len(inputs)
    for i, got in results:
        torch.testing.assert_close(got, expected[i], rtol=0, atol=1e-6)


def test_segmenter_is_thread_safe(exports):
    model = wsdeploy.load(exports["onnx"], device="cpu")
    images = _images() + [np.ascontiguousarray(img[::-1]) for img in _images()]
    expected = [model.segment(img, return_probs=True) for img in images]
    for i, seg in _hammer(lambda img: model.segment(img, return_probs=True), images, rounds=2):
        np.testing.assert_array_equal(seg.labels, expected[i].labels)
        np.testing.assert_allclose(seg.probs, expected[i].probs, rtol=0, atol=1e-6)


def test_tensorrt_backend_keeps_one_context_per_thread():
    from wsdeploy.backends.tensorrt_backend import TensorRTBackend

    class FakeEngine:  # stands in for an ICudaEngine: counts the contexts it hands out
        def __init__(self) -> None:
            self.made = 0

        def create_execution_context(self) -> object:
            self.made += 1
            return object()

    backend = TensorRTBackend.__new__(TensorRTBackend)
    backend.engine, backend.device = FakeEngine(), torch.device("cpu")
    backend._local, backend._create_lock = threading.local(), threading.Lock()
    torch_cuda_device = torch.cuda.device
    try:
        torch.cuda.device = lambda device: contextlib.nullcontext()  # type: ignore[assignment]
        mine = backend._context()
        assert backend._context() is mine  # the same thread reuses its context
        others = _hammer(lambda _: backend._context(), [None], threads=3, rounds=2)
    finally:
        torch.cuda.device = torch_cuda_device  # type: ignore[assignment]
    per_thread = {id(ctx) for _, ctx in others}
    assert len(per_thread) == 3 and id(mine) not in per_thread and backend.engine.made == 4
