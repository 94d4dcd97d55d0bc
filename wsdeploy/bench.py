"""Latency benchmarks of a loaded `Segmenter`: model-only and end-to-end, per batch size.

- model-only: `backend(x)` on an already pre-processed (B, 3, S, S) batch on the backend's device;
- end-to-end: `segmenter.segment([jpeg bytes] * B)`: decode, pre-processing, the model,
  post-processing (upsampling, argmax), with or without the dense CRF.

Each measurement: `warmup` untimed calls, then `repeats` timed ones; p50/p90/p99 and mean latency
of one call, and throughput = B / mean. On CUDA, model-only calls are timed with CUDA events
(`torch.cuda.Event(enable_timing=True)`) and end-to-end calls with a synchronised wall clock; on
the CPU with `time.perf_counter`. The 1-minute load average is recorded before and after, because
on a shared machine it explains more variance than anything else.

Inputs are synthetic scenes (`wsdeploy.data.synthetic.render_scene`) of S x S (or H x W) pixels
encoded as quality-95 JPEG, so decoding costs what a photograph of that size costs.
"""
from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import cv2
import numpy as np
import torch

from wsdeploy.data.image_io import read_image
from wsdeploy.runtime import Segmenter, preprocess

__all__ = ["Timing", "bench_images", "bench_segmenter", "time_calls"]


@dataclasses.dataclass(frozen=True)
class Timing:
    """Latency of one call in milliseconds, and images per second."""

    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    repeats: int
    throughput_ips: float


def time_calls(
    fn: Callable[[], Any], *, batch: int, warmup: int = 3, repeats: int = 20, device: torch.device | None = None
) -> Timing:
    """Time `fn()`; `batch` images per call. CUDA events when `device` is a CUDA device."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    cuda = device is not None and device.type == "cuda"
    for _ in range(warmup):
        fn()
    if cuda:
        torch.cuda.synchronize(device)
    times = []
    for _ in range(repeats):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1000.0)
    ms = np.asarray(times)
    mean = float(ms.mean())
    return Timing(
        p50_ms=float(np.percentile(ms, 50)), p90_ms=float(np.percentile(ms, 90)), p99_ms=float(np.percentile(ms, 99)),
        mean_ms=mean, repeats=repeats, throughput_ips=batch * 1000.0 / mean,
    )


def bench_images(size: int | tuple[int, int], count: int, *, seed: int = 0) -> list[bytes]:
    """`count` synthetic scenes of S x S pixels (`size` an int) or H x W (`size` a pair: the
    centre of a square scene of the longer side) as quality-95 JPEG bytes."""
    from wsdeploy.data.synthetic import SyntheticConfig, render_scene

    height, width = (size, size) if isinstance(size, int) else size
    config = SyntheticConfig(size=max(height, width))
    out = []
    for i in range(count):
        image = render_scene(seed + i, config=config).image
        top, left = (image.shape[0] - height) // 2, (image.shape[1] - width) // 2
        image = image[top : top + height, left : left + width]
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(image[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 95])
        if not ok:
            raise ValueError("could not encode a benchmark image as JPEG")
        out.append(buf.tobytes())
    return out


def bench_segmenter(
    segmenter: Segmenter,
    images: Sequence[bytes],
    *,
    batches: Sequence[int] = (1,),
    crf: Sequence[bool] = (False,),
    warmup: int = 3,
    repeats: int = 20,
) -> list[dict[str, Any]]:
    """Model-only and end-to-end timings for each batch size (and CRF setting, end-to-end).

    Args:
        segmenter: from `wsdeploy.load`.
        images: encoded images, all the same size (see `bench_images`); cycled to fill a batch.
        batches: batch sizes B.
        crf: end-to-end with the dense CRF off and/or on; with it on, only at the smallest
            batch size and with a quarter of the repeats (at least 2).

    Returns:
        one dict per measurement: mode ('model' | 'end_to_end'), batch, crf, the `Timing`
        fields and the load average before and after.
    """
    if not images:
        raise ValueError("bench_segmenter needs at least one image")
    backend = segmenter.backend
    decoded = [read_image(b) for b in images]
    rows = []
    for batch in batches:
        if batch < 1:
            raise ValueError(f"batch sizes must be >= 1, got {batch}")
        encoded = [images[i % len(images)] for i in range(batch)]
        arrays = np.stack([decoded[i % len(decoded)] for i in range(batch)])  # (B, S, S, 3)
        card = segmenter.card
        x = preprocess(arrays, mean=card["mean"], std=card["std"], multiple=backend.input_multiple)
        x = x.to(backend.device)
        rows.append(_row("model", batch, None, lambda: backend(x), segmenter, warmup, repeats))
        for use_crf in crf:
            if use_crf and batch != min(batches):
                continue  # the CRF costs the same per image at any batch size: time it once
            run = lambda c=use_crf: _synced(segmenter.segment(encoded, crf=c), backend.device)  # noqa: E731
            # the CRF is slow on CPUs (seconds per 512x512 image): fewer repeats for it
            n, w = (max(2, repeats // 4), min(warmup, 1)) if use_crf else (repeats, warmup)
            rows.append(_row("end_to_end", batch, use_crf, run, segmenter, w, n))
    return rows


def _synced(result: Any, device: torch.device) -> Any:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return result


def _row(
    mode: str, batch: int, crf: bool | None, fn: Callable[[], Any], segmenter: Segmenter, warmup: int, repeats: int
) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    device = segmenter.backend.device if mode == "model" else None  # events time the model only
    timing = time_calls(fn, batch=batch, warmup=warmup, repeats=repeats, device=device)
    return {
        "mode": mode, "batch": batch, "crf": crf, **{k: round(v, 3) if isinstance(v, float) else v
                                                     for k, v in dataclasses.asdict(timing).items()},
        "loadavg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
