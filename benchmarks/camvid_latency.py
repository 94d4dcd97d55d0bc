"""Latency of a model at CamVid's 480x360 on one CPU thread in onnxruntime, wall and CPU time.

On a shared 2-core machine the wall time of a call measures the neighbours as much as the model
(a 1-minute load of 10 inflates it several times), so each call is timed twice: wall clock
(`time.perf_counter`) and the process's CPU time (`time.process_time`): with one intra-op and
one inter-op thread, the CPU time is what the call costs a core of its own. Both are reported,
with the load average before and after.

- model-only: `session.run` on a pre-processed (1, 3, 368, 480) float32 input (360 padded to the
  model's multiple of 16, as `wsdeploy.segment` pads);
- end to end: `Segmenter.segment(jpeg bytes)` through the ONNX model: decode, pre-processing,
  the model, upsampling and argmax, on the four shipped CamVid frames in turn.

    OMP_NUM_THREADS=1 python benchmarks/camvid_latency.py --model wsdeploy/assets/default_model.pt

Writes benchmarks/results/camvid_latency_cpu_1thread.json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scribble_table import results_header
from wsdeploy.export import to_onnx
from wsdeploy.export.images import CHECK_IMAGES

import wsdeploy
from wsdeploy.atomic import atomic_write_text


def timed(fn, repeats: int, warmup: int) -> dict:
    """p50/p90 and mean of wall and CPU milliseconds per call of `fn`."""
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(1000 * (time.perf_counter() - w0))
        cpu.append(1000 * (time.process_time() - c0))
    return {
        "wall_p50_ms": round(float(np.percentile(wall, 50)), 2), "wall_p90_ms": round(float(np.percentile(wall, 90)), 2),
        "cpu_p50_ms": round(float(np.percentile(cpu, 50)), 2), "cpu_p90_ms": round(float(np.percentile(cpu, 90)), 2),
        "cpu_mean_ms": round(statistics.mean(cpu), 2), "repeats": repeats,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="wsdeploy/assets/default_model.pt", help=".pt checkpoint")
    parser.add_argument("--repeats", type=int, default=50, help="timed calls (default: 50)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls first (default: 5)")
    parser.add_argument("--json", default="benchmarks/results/camvid_latency_cpu_1thread.json", help="results file")
    args = parser.parse_args()
    import onnxruntime as ort

    torch.set_num_threads(1)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="camvid-latency-") as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        to_onnx(args.model, onnx_path, check=False)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        x = np.random.default_rng(0).standard_normal((1, 3, 368, 480)).astype(np.float32)
        model_only = timed(lambda: session.run(None, {name: x}), args.repeats, args.warmup)
        segmenter = wsdeploy.load(onnx_path, device="cpu")
        frames = [p.read_bytes() for p in sorted(CHECK_IMAGES.iterdir())]
        cycle = iter(range(10**9))
        end_to_end = timed(lambda: segmenter.segment(frames[next(cycle) % len(frames)]), args.repeats, args.warmup)
    results = {
        **results_header(),
        "model": args.model,
        "threads": {"torch": 1, "onnxruntime_intra_op": 1, "onnxruntime_inter_op": 1},
        "input": "model-only: (1, 3, 368, 480) float32; end to end: the four shipped 480x360 CamVid JPEGs",
        "loadavg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "model_only": model_only,
        "end_to_end": end_to_end,
    }
    atomic_write_text(args.json, json.dumps(results, indent=2))
    print(f"model only: CPU p50 {model_only['cpu_p50_ms']} ms, wall p50 {model_only['wall_p50_ms']} ms; "
          f"end to end: CPU p50 {end_to_end['cpu_p50_ms']} ms, wall p50 {end_to_end['wall_p50_ms']} ms "
          f"(load {results['loadavg_1m']})")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
