"""Export parity and INT8 trade-off of a checkpoint, on real photographs and labelled images.

For the checkpoint (default: the bundled model) this exports fp32, fp16 and INT8 ONNX files
(INT8 calibrated on --calibration images through the runtime's pre-processing), then records:

- parity with eager torch (label agreement, max abs/rel logit error) on the GrabCut-13
  photographs and on the validation images of --val (each image at its own size);
- mIoU on the labelled --val split for torch fp32, onnxruntime fp32 and INT8 (the INT8 change);
- model-only latency at --size x --size, batch 1, for torch eager, onnxruntime fp32 and INT8
  (CPU; the load average is recorded with each timing).

    python benchmarks/export_parity.py --val wsdeploy/assets/demo_data \
        --calibration wsdeploy/assets/demo_data/images --out benchmarks/results/export_parity_cpu.json
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

from wsdeploy.atomic import atomic_write_text
from wsdeploy.backends import OnnxRuntimeBackend, TorchBackend
from wsdeploy.bench import bench_images, time_calls
from wsdeploy.checkpoint import load_checkpoint
from wsdeploy.data.datasets import SegmentationDataset
from wsdeploy.data.image_io import read_image
from wsdeploy.environment import library_versions, machine_info
from wsdeploy.export import compare_backends, to_onnx
from wsdeploy.export.images import image_files
from wsdeploy.metrics import SegmentationMetric
from wsdeploy.runtime import DEFAULT_MODEL_PATH, Segmenter, preprocess

GRABCUT = Path(__file__).resolve().parents[2] / "shared" / "data" / "grabcut13" / "images"  # shared/ beside the checkout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=str(DEFAULT_MODEL_PATH))
    parser.add_argument("--grabcut", default=str(GRABCUT), help="folder of real photographs")
    parser.add_argument("--val", required=True, help="labelled dataset folder (its val split is used)")
    parser.add_argument("--calibration", required=True, help="INT8 calibration images (not the val images)")
    parser.add_argument("--calibration-limit", type=int, default=32)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default="benchmarks/results/export_parity_cpu.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    model, card = load_checkpoint(args.checkpoint)
    torch_backend = TorchBackend(model, device="cpu")
    photos = [read_image(p) for p in image_files(args.grabcut)]
    val = SegmentationDataset(args.val, split="val", labels="masks")
    val_images = [val[i]["image"] for i in range(len(val))]
    result: dict = {
        "command": shlex.join(["python", *sys.argv]), "machine": machine_info(),
        "versions": library_versions(("onnxslim", "onnxscript")), "checkpoint": args.checkpoint,
        "checkpoint_sha256": hashlib.sha256(Path(args.checkpoint).read_bytes()).hexdigest(),
        "arch": card.arch, "arch_kwargs": card.arch_kwargs, "threads": threads,
        "images": {"grabcut13": len(photos), "val": len(val_images)}, "variants": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for precision in ("fp32", "fp16", "int8"):
            t0 = time.perf_counter()
            export = to_onnx(
                args.checkpoint, Path(tmp) / f"{precision}.onnx", fp16=precision == "fp16", int8=precision == "int8",
                calibration=args.calibration if precision == "int8" else None,
                calibration_limit=args.calibration_limit, check=False,
            )
            files[precision] = export.path
            backend = OnnxRuntimeBackend(export.path, device="cpu", threads=threads)
            entry = {"export_seconds": round(time.perf_counter() - t0, 1)}
            with torch.inference_mode():
                entry["parity_grabcut13"] = compare_backends(torch_backend, backend, photos, card=card).to_dict()
                entry["parity_val"] = compare_backends(torch_backend, backend, val_images, card=card).to_dict()
            entry["miou_val"] = _miou(Segmenter(backend, card), val)
            result["variants"][precision] = entry
            logging.info("%s: %s", precision, {k: v for k, v in entry.items() if k == "miou_val"})
        result["variants"]["torch_fp32"] = {"miou_val": _miou(Segmenter(torch_backend, card), val)}
        result["latency_model_only"] = _latency(torch_backend, files, card, args, threads)
    result["int8_miou_change_points"] = round(
        100 * (result["variants"]["int8"]["miou_val"] - result["variants"]["torch_fp32"]["miou_val"]), 2)
    atomic_write_text(args.out, json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("int8_miou_change_points", "latency_model_only")}, indent=1))
    print(f"wrote {args.out}")
    return 0


def _miou(segmenter: Segmenter, dataset: SegmentationDataset) -> float:
    metric = SegmentationMetric(len(dataset.classes))
    for i in range(len(dataset)):
        item = dataset[i]
        metric.update(segmenter.segment(item["image"]).labels, item["label"])
    return round(float(metric.miou()), 5)


def _latency(torch_backend: TorchBackend, files: dict, card, args, threads: int) -> dict:
    image = read_image(bench_images(args.size, 1)[0])
    x = preprocess(image[None], mean=card.mean, std=card.std, multiple=torch_backend.input_multiple)
    backends = {"torch_eager_fp32": torch_backend}
    for precision in ("fp32", "int8"):
        backends[f"onnxruntime_{precision}"] = OnnxRuntimeBackend(files[precision], device="cpu", threads=threads)
    out = {}
    for _round in range(2):  # interleave: load on a shared machine drifts
        for name, backend in backends.items():
            with torch.inference_mode():
                timing = time_calls(lambda b=backend: b(x), batch=1, warmup=2, repeats=args.repeats)
            out.setdefault(name, []).append({"p50_ms": round(timing.p50_ms, 1), "p90_ms": round(timing.p90_ms, 1),
                                             "loadavg_1m": round(os.getloadavg()[0], 2)})
    return {"size": args.size, "batch": 1, "threads": threads, "rounds": out}


if __name__ == "__main__":
    sys.exit(main())
