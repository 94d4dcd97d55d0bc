"""`to_pt2`: a checkpoint to a `.pt2` package that runs without the model's Python code.

Default: the `torch.export` program (dynamic batch/H/W), saved in the PT2 archive format of
`torch.export.save`, loaded back as an ATen graph. `aoti=True` compiles it ahead of time with
AOTInductor into a shared library inside the package (needs a C++ compiler; ~50 s for a small
ResNet-18 model on 2 CPU cores), which then runs only on the device type it was compiled for.
Both carry the model card as extra files and are parity-checked against eager torch.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from wsdeploy.atomic import atomic_path
from wsdeploy.backends.metadata import metadata_strings, runtime_info
from wsdeploy.backends.pt2_backend import MODEL_NAME, PT2_CARD_FILE, PT2_RUNTIME_FILE, Pt2Backend
from wsdeploy.backends.torch_backend import TorchBackend, resolve_device
from wsdeploy.checkpoint import ModelCard

from wsdeploy.export.images import load_images
from wsdeploy.export.parity import ParityReport, Tolerance, check_parity
from wsdeploy.export.source import ExportSource, resolve_source

__all__ = ["Pt2Export", "to_pt2"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Pt2Export:
    """What `to_pt2` wrote and measured."""

    path: Path
    kind: str  # 'exported_program' | 'aoti'
    parity: ParityReport | None
    seconds: float


def to_pt2(
    source: ExportSource,
    path: str | os.PathLike,
    *,
    card: ModelCard | None = None,
    aoti: bool = False,
    device: str = "cpu",
    check: bool = True,
    check_images: str | os.PathLike | Sequence[Any] | None = None,
    tolerance: Tolerance | None = None,
) -> Pt2Export:
    """Export to a `.pt2` package with dynamic batch, height and width.

    Args:
        source: a checkpoint path, or an `nn.Module` together with `card=`.
        path: the `.pt2` file to write (atomically).
        aoti: compile with AOTInductor (slow to build, faster to run) instead of storing the
            exported program.
        device: AOTInductor's target device ('cpu' or 'cuda[:N]'); the exported program is
            device-independent and moved at load time.
        check, check_images, tolerance: the parity check against eager torch (see `to_onnx`).

    Raises:
        ValueError: bad arguments, or `ParityError` past the tolerance (nothing written).
    """
    t0 = time.perf_counter()
    if Path(path).suffix != ".pt2":
        raise ValueError(f"a .pt2 package must be named *.pt2 (torch's loader insists), got {str(path)!r}")
    model, card = resolve_source(source, card)
    dev = resolve_device(device)
    m = int(model.input_multiple)
    dim = torch.export.Dim.DYNAMIC
    example = torch.randn(2, 3, 2 * m, 3 * m)  # batch 2, H != W: no specialisation on 0/1
    model = model.to(dev)
    program = torch.export.export(model, (example.to(dev),), dynamic_shapes=({0: dim, 2: dim, 3: dim},))
    runtime = runtime_info(input_multiple=m, logit_stride=int(model.logit_stride), precision="fp32")
    if aoti:
        runtime["aoti_device"] = dev.type
    strings = metadata_strings(card, runtime)
    extra = {PT2_CARD_FILE: strings["wsdeploy.card"], PT2_RUNTIME_FILE: strings["wsdeploy.runtime"]}
    from torch.export.pt2_archive._package import package_pt2  # what torch.export.save calls

    check_arrays = load_images(check_images) if check else []
    with atomic_path(path) as tmp:
        final = tmp.with_suffix(".pt2")  # torch's loader wants the suffix
        try:
            if aoti:
                files = torch._inductor.aot_compile(
                    program.module(), (example.to(dev),), options={"aot_inductor.package": True}
                )
                package_pt2(str(final), aoti_files={MODEL_NAME: files}, extra_files=extra)
            else:
                package_pt2(str(final), exported_programs={MODEL_NAME: program}, extra_files=extra)
            report = None
            if check:
                reference = TorchBackend(model, device=dev)
                candidate = Pt2Backend(final, device=str(dev))
                report = check_parity(
                    reference, candidate, check_arrays, card=card, tolerance=tolerance or "fp32", name=Path(path).name
                )
            os.replace(final, tmp)
        finally:
            final.unlink(missing_ok=True)
    seconds = time.perf_counter() - t0
    kind = "aoti" if aoti else "exported_program"
    logger.info("wrote %s (%s, %.1f s)", path, kind, seconds)
    return Pt2Export(path=Path(path), kind=kind, parity=report, seconds=seconds)


