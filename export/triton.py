"""`to_triton`: a Triton Inference Server model repository for scale-out serving.

Layout written (Triton's model repository convention)::

    REPO/
      NAME/
        config.pbtxt        backend "onnxruntime", dynamic batching, instance groups,
                            input/output names, dims and dtypes read from the ONNX graph
        wsdeploy.json       the model card and runtime facts (also inside the ONNX metadata)
        1/model.onnx        the ONNX export (card in metadata_props)

Triton runs the network only: the caller normalises with the card's mean/std, pads H and W to a
multiple of `input_multiple`, and upsamples / argmaxes the logits, as `wsdeploy.runtime` does.

Validation (`check_triton_model`, run by `to_triton`): `config.pbtxt` is parsed against Triton's
own `ModelConfig` protobuf (shipped with `tritonclient[grpc]`), its names, dtypes and dims are
compared with the ONNX graph, and the ONNX model runs in onnxruntime at the declared shapes
(batch 1 and `max_batch_size`) with outputs of the declared shape.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from wsdeploy.checkpoint import ModelCard

__all__ = ["TritonExport", "check_triton_model", "to_triton", "triton_config_text"]

logger = logging.getLogger(__name__)

_ONNX_TO_TRITON = {1: "TYPE_FP32", 10: "TYPE_FP16", 16: "TYPE_BF16", 11: "TYPE_FP64", 2: "TYPE_UINT8",
                   3: "TYPE_INT8", 6: "TYPE_INT32", 7: "TYPE_INT64", 9: "TYPE_BOOL"}
_TRITON_TO_NUMPY = {"TYPE_FP32": "float32", "TYPE_FP16": "float16", "TYPE_FP64": "float64", "TYPE_UINT8": "uint8",
                    "TYPE_INT8": "int8", "TYPE_INT32": "int32", "TYPE_INT64": "int64", "TYPE_BOOL": "bool"}
KINDS = {"auto": "KIND_AUTO", "gpu": "KIND_GPU", "cpu": "KIND_CPU"}


@dataclasses.dataclass(frozen=True)
class TritonExport:
    """What `to_triton` wrote."""

    repository: Path
    model_dir: Path  # REPO/NAME
    config_path: Path  # REPO/NAME/config.pbtxt
    onnx_path: Path  # REPO/NAME/VERSION/model.onnx
    config: Any  # the parsed tritonclient ModelConfig message


def to_triton(
    source: str | os.PathLike | Any,
    repository: str | os.PathLike,
    *,
    card: ModelCard | None = None,
    model_name: str = "wsdeploy_segmenter",
    version: int = 1,
    max_batch_size: int = 16,
    max_queue_delay_us: int = 5000,
    instance_count: int = 1,
    kind: str = "auto",
    check: bool = True,
) -> TritonExport:
    """Write a Triton model repository (ONNX Runtime backend) for a segmentation model.

    Args:
        source: a checkpoint (`.pt`) or an `nn.Module` with `card=` (exported with
            `wsdeploy.export.to_onnx`, parity-checked), or an existing wsdeploy `.onnx` export
            (copied as it is, e.g. an fp16 or INT8 one).
        repository: the repository folder (created; other models in it are left alone).
        card: the model card, only with a module `source`.
        model_name: the model's folder and Triton name.
        version: the version folder.
        max_batch_size: Triton's batch limit (0 disables batching; forced to 0 for a fixed-shape export).
        max_queue_delay_us: how long Triton's dynamic batcher waits to fill a batch.
        instance_count: model instances per device.
        kind: 'auto', 'gpu' or 'cpu' (instance_group kind).
        check: validate the result with `check_triton_model` (needs `tritonclient[grpc]`).

    Raises:
        ValueError: bad arguments, a foreign ONNX file, or a failed validation.
        ImportError: `check=True` without tritonclient's protobuf definitions.
    """
    if not model_name or any(c in model_name for c in "/\\ ") or model_name.startswith("."):
        raise ValueError(f"model_name must be a plain folder name, got {model_name!r}")
    if not isinstance(version, int) or version < 1:
        raise ValueError(f"version must be an integer >= 1, got {version!r}")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
    if not isinstance(instance_count, int) or instance_count < 1:
        raise ValueError(f"instance_count must be an integer >= 1, got {instance_count!r}")
    if not isinstance(max_batch_size, int) or max_batch_size < 0:
        raise ValueError(f"max_batch_size must be an integer >= 0, got {max_batch_size!r}")
    if not isinstance(max_queue_delay_us, int) or max_queue_delay_us < 0:
        raise ValueError(f"max_queue_delay_us must be an integer >= 0, got {max_queue_delay_us!r}")
    from wsdeploy.export.onnx_export import read_onnx_info, to_onnx

    model_dir = Path(repository) / model_name
    onnx_path = model_dir / str(version) / "model.onnx"
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(source, (str, os.PathLike)) and Path(source).suffix.lower() == ".onnx":
        if card is not None:
            raise ValueError("pass card= only with a model; an ONNX export carries its own card")
        read_onnx_info(source)  # refuses foreign files
        with tempfile.NamedTemporaryFile(dir=onnx_path.parent, suffix=".tmp", delete=False) as tmp:
            shutil.copyfile(source, tmp.name)
        os.replace(tmp.name, onnx_path)
    else:
        to_onnx(source, onnx_path, card=card)
    info = read_onnx_info(onnx_path)
    text = triton_config_text(
        onnx_path, model_name=model_name, max_batch_size=max_batch_size,
        max_queue_delay_us=max_queue_delay_us, instance_count=instance_count, kind=kind,
    )
    config_path = model_dir / "config.pbtxt"
    config_path.write_text(text, encoding="utf-8")
    side = {"card": info.card.to_dict(), "input_multiple": info.input_multiple, "logit_stride": info.logit_stride,
            "precision": info.precision}
    (model_dir / "wsdeploy.json").write_text(json.dumps(side, indent=2), encoding="utf-8")
    config = check_triton_model(model_dir) if check else None
    logger.info("wrote the Triton model %s (max batch %d)", model_dir, max_batch_size)
    return TritonExport(Path(repository), model_dir, config_path, onnx_path, config)


def _graph_io(onnx_path: Path) -> tuple[list[tuple[str, str, list[int | str]]], list[tuple[str, str, list[int | str]]]]:
    """[(name, Triton dtype, dims with str for symbolic)] for the graph's inputs and outputs."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}

    def describe(values: Any) -> list[tuple[str, str, list[int | str]]]:
        out = []
        for v in values:
            if v.name in initializers:
                continue
            t = v.type.tensor_type
            if t.elem_type not in _ONNX_TO_TRITON:
                raise ValueError(f"{onnx_path}: tensor {v.name!r} has an ONNX type Triton config does not map ({t.elem_type})")
            dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim]
            out.append((v.name, _ONNX_TO_TRITON[t.elem_type], dims))
        return out

    return describe(graph.input), describe(graph.output)


def triton_config_text(
    onnx_path: str | os.PathLike,
    *,
    model_name: str,
    max_batch_size: int = 16,
    max_queue_delay_us: int = 5000,
    instance_count: int = 1,
    kind: str = "auto",
) -> str:
    """`config.pbtxt` text for an ONNX model; the batch dimension is implicit when batching."""
    inputs, outputs = _graph_io(Path(onnx_path))
    batched = max_batch_size > 0 and all(isinstance(d[0], str) for _, _, d in inputs + outputs if d)
    if max_batch_size > 0 and not batched:
        logger.warning("%s has a fixed batch dimension: writing max_batch_size 0 (no batching)", onnx_path)
    lines = [f'name: "{model_name}"', 'backend: "onnxruntime"', f"max_batch_size: {max_batch_size if batched else 0}"]
    for section, tensors in (("input", inputs), ("output", outputs)):
        lines.append(f"{section} [")
        entries = []
        for name, dtype, dims in tensors:
            shown = dims[1:] if batched else dims
            dims_text = ", ".join(str(d) if isinstance(d, int) else "-1" for d in shown)
            entries.append(f'  {{\n    name: "{name}"\n    data_type: {dtype}\n    dims: [ {dims_text} ]\n  }}')
        lines.append(",\n".join(entries))
        lines.append("]")
    if batched:
        lines.append(f"dynamic_batching {{\n  max_queue_delay_microseconds: {max_queue_delay_us}\n}}")
    lines.append(f"instance_group [\n  {{\n    count: {instance_count}\n    kind: {KINDS[kind]}\n  }}\n]")
    return "\n".join(lines) + "\n"


def _model_config_pb2() -> Any:
    try:
        from tritonclient.grpc import model_config_pb2
    except (ImportError, RuntimeError) as exc:  # tritonclient without its grpc extra raises RuntimeError
        raise ImportError(
            'validating a Triton config needs tritonclient\'s protobuf definitions: pip install "tritonclient[grpc]"'
        ) from exc
    return model_config_pb2


def check_triton_model(model_dir: str | os.PathLike, *, sizes: tuple[int, int] | None = None) -> Any:
    """Validate one model folder of a Triton repository; returns the parsed `ModelConfig`.

    Checks: `config.pbtxt` parses as Triton's `ModelConfig`; the name matches the folder; each
    declared input / output exists in `<version>/model.onnx` with the same dtype and compatible
    dims; the model runs in onnxruntime at batch 1 and `max_batch_size` with an (H, W) that is a
    multiple of the card's `input_multiple`, giving outputs of the declared shape.

    Args:
        model_dir: REPO/NAME.
        sizes: (H, W) to run at (default: twice `input_multiple` by three times).

    Raises:
        ValueError: the first mismatch found, quoted.
        ImportError: tritonclient's protobuf definitions or onnxruntime are missing.
    """
    import numpy as np
    from google.protobuf import text_format
    from wsdeploy.export.onnx_export import read_onnx_info

    pb2 = _model_config_pb2()
    model_dir = Path(model_dir)
    config_path = model_dir / "config.pbtxt"
    if not config_path.is_file():
        raise ValueError(f"no config.pbtxt in {model_dir}")
    try:
        config = text_format.Parse(config_path.read_text(encoding="utf-8"), pb2.ModelConfig())
    except text_format.ParseError as exc:
        raise ValueError(f"{config_path}: not a valid Triton ModelConfig: {exc}") from None
    if config.name and config.name != model_dir.name:
        raise ValueError(f"{config_path}: name {config.name!r} differs from the folder name {model_dir.name!r}")
    versions = sorted(p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())
    if not versions or not (versions[-1] / "model.onnx").is_file():
        raise ValueError(f"{model_dir}: expected a numeric version folder with model.onnx")
    onnx_path = versions[-1] / "model.onnx"
    inputs, outputs = _graph_io(onnx_path)
    batched = config.max_batch_size > 0
    for section, declared, actual in (("input", config.input, inputs), ("output", config.output, outputs)):
        graph = {name: (dtype, dims[1:] if batched else dims) for name, dtype, dims in actual}
        if sorted(t.name for t in declared) != sorted(graph):
            raise ValueError(f"{config_path}: {section} names {[t.name for t in declared]} != ONNX {sorted(graph)}")
        for t in declared:
            dtype, dims = graph[t.name]
            declared_type = pb2.DataType.Name(t.data_type)
            if declared_type != dtype:
                raise ValueError(f"{config_path}: {section} {t.name!r} is {declared_type}, the ONNX graph has {dtype}")
            ok = len(t.dims) == len(dims) and all(d == -1 or d == g for d, g in zip(t.dims, dims))
            if not ok:
                raise ValueError(f"{config_path}: {section} {t.name!r} dims {list(t.dims)} do not fit ONNX dims {dims}")
    info = read_onnx_info(onnx_path)
    try:
        import onnxruntime as ort
    except ImportError as exc:  # pragma: no cover - a wsdeploy dependency
        raise ImportError("checking a Triton model needs onnxruntime: pip install onnxruntime") from exc
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    m = info.input_multiple
    height, width = sizes or (2 * m, 3 * m)
    for batch in sorted({1, config.max_batch_size}) if batched else [None]:
        feeds = {}
        for t in config.input:
            dims = [batch] + list(t.dims) if batched else list(t.dims)
            shape = [d if d != -1 else s for d, s in zip(dims, _fill(dims, height, width))]
            feeds[t.name] = np.zeros(shape, dtype=_TRITON_TO_NUMPY[pb2.DataType.Name(t.data_type)])
        results = session.run([t.name for t in config.output], feeds)
        for t, value in zip(config.output, results):
            dims = [batch] + list(t.dims) if batched else list(t.dims)
            if value.ndim != len(dims) or any(d not in (-1, s) for d, s in zip(dims, value.shape)):
                raise ValueError(f"{onnx_path}: output {t.name!r} came out {value.shape}, declared {dims}")
    return config


def _fill(dims: list[int], height: int, width: int) -> list[int]:
    """Concrete sizes for -1 dims of an (N, C, H, W)-like shape: H and W from the arguments."""
    out = list(dims)
    if len(out) >= 2:
        out[-2], out[-1] = height, width
    return [d if d != -1 else 1 for d in out[:-2]] + out[-2:]
