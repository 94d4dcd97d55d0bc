"""Every GPU measurement the project claims, in one call, into one JSON.

Sections (in this order; see `gpu_sections.py` for what each times):

    crf             dense CRF 500x375, 21 classes, 10 iterations: GPU fp32/fp16 vs the CPU engine
                    (1 and all threads) and pydensecrf (when importable)
    crf_loss        training-step overhead of the dense-CRF loss, DeepLabV3+-ResNet-101, 513^2 crops
                    (padded to the input multiple), batch 8, bf16 autocast, scale 0.5 and 1.0
    cam             multi-scale + flip CAMs at 512 px (ResNet-50 classifier), fp32 and bf16, and the
                    random-walk propagation (wsdeploy.training.tags.random_walk) when present
    inference       the bundled model at 512^2, batch 1 and 16: eager fp32, bf16 + channels_last,
                    onnxruntime's CUDA provider when onnxruntime-gpu is installed; label agreement
    annotate        wsdeploy.training.annotate per photograph (demo photos and scribbles)
    compiled        torch.compile (bf16 + channels_last) and the AOTInductor .pt2, same rows as
                    `inference` (last: the compiles take the longest)

Timing: CUDA events after warm-up, medians (`wsdeploy.bench.time_calls`); annotate by the
synchronised wall clock. A section that raises is recorded as an error and the suite goes on; a
section that would start after `--budget-s` is recorded as skipped. The JSON is rewritten
(atomically) after every section, so a run cut short still leaves what it measured. It holds
the device, driver, CUDA, cuDNN, library versions, threads, the command and provenance.

    python benchmarks/gpu_suite.py --out gpu_suite.json                # on a CUDA machine
    python benchmarks/gpu_suite.py --dry-run --out /tmp/dry.json       # every section, tiny, CPU

`--dry-run` runs every section at toy size on the CPU (torch.compile with the "eager" backend
and the exported-program .pt2 instead of AOTInductor, which would compile C++), so the suite
cannot rot: tests/benchmarks/test_gpu_suite.py runs it. Its figures mean nothing.
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

import gpu_sections as sections
from wsdeploy.atomic import atomic_write_text
from wsdeploy.environment import library_versions, machine_info

SECTIONS: dict[str, Callable[[sections.Plan, torch.device], dict[str, Any]]] = {
    "crf": sections.crf,
    "crf_loss": sections.crf_loss,
    "cam": sections.cam,
    "inference": lambda plan, dev: sections.inference(plan, dev, compiled=False),
    "annotate": sections.annotate,
    "compiled": lambda plan, dev: sections.inference(plan, dev, compiled=True),
}
# seconds a section needs at least on an H200 (a guess, used only to skip it near the budget)
MIN_SECONDS = {"crf": 15, "crf_loss": 30, "cam": 20, "inference": 20, "annotate": 30, "compiled": 150}
EXTRA_VERSIONS = ("torchvision", "triton", "onnxruntime-gpu", "onnxscript", "tensorrt", "pydensecrf2")


def device_info(dev: torch.device) -> dict[str, Any]:
    """GPU name, capability, memory, driver, CUDA and cuDNN versions (CPU: just 'cpu')."""
    if dev.type != "cuda":
        return {"type": "cpu"}
    props = torch.cuda.get_device_properties(dev)
    driver = None
    try:
        driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=20).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    return {
        "type": "cuda", "name": props.name, "capability": f"{props.major}.{props.minor}",
        "multiprocessors": props.multi_processor_count, "memory_gib": round(props.total_memory / 2**30, 1),
        "driver": driver, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
        "cudnn_benchmark": torch.backends.cudnn.benchmark, "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32,
    }


def targets(results: dict[str, Any]) -> dict[str, Any]:
    """The project's GPU targets, checked against what ran (None where it did not)."""
    def get(*keys: str) -> Any:
        node: Any = results
        for k in keys:
            node = node.get(k) if isinstance(node, dict) else None
        return node

    crf_ms = get("crf", "cuda_fp32", "median_ms")
    overheads = [v["overhead"] for k, v in (get("crf_loss") or {}).items() if k.startswith("pce_plus_crf")]
    eager16 = get("inference", "variants", "eager_fp32", "batch_16", "images_per_s")
    best = None
    for part in ("inference", "compiled"):
        for name, row in (get(part, "variants") or {}).items():
            ips = (row.get("batch_16") or {}).get("images_per_s")
            agree = row.get("label_agreement_vs_eager_fp32")
            if name != "eager_fp32" and ips and agree is not None and agree >= 0.995 and (best is None or ips > best[1]):
                best = (name, ips)
    return {
        "crf_500x375x21x10_le_5ms": None if crf_ms is None else {"ms": crf_ms, "met": crf_ms <= 5.0},
        "crf_loss_overhead_le_10pct": None if not overheads else {"overheads": overheads, "met": max(overheads) <= 0.10},
        "best_torch_path_ge_3x_eager_fp32_b16": None if not (eager16 and best) else
        {"variant": best[0], "speedup": round(best[1] / eager16, 2), "met": best[1] / eager16 >= 3.0},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="the JSON to write (rewritten after every section)")
    parser.add_argument("--dry-run", action="store_true", help="every section at toy size on the CPU")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--budget-s", type=float, default=420.0, help="start no section after this many seconds (420)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: 1 for --dry-run, all cores on the GPU machine)")
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {list(SECTIONS)}")
    plan = sections.DRY if args.dry_run else sections.FULL
    if plan.device == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device: run on a GPU machine, or use --dry-run")
    torch.set_num_threads(args.threads or (1 if args.dry_run else torch.get_num_threads()))
    dev = torch.device(plan.device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    t_start = time.perf_counter()
    record: dict[str, Any] = {
        "suite": "gpu_suite", "dry_run": args.dry_run,
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]) if argv is None else
        " ".join(shlex.quote(a) for a in [sys.executable, str(Path(__file__)), *argv]),
        "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(), "versions": library_versions(EXTRA_VERSIONS), "device": device_info(dev),
        "threads": torch.get_num_threads(), "budget_s": args.budget_s, "plan": _plan_dict(plan), "sections": {},
    }
    try:
        from wsdeploy.provenance import provenance

        record["provenance"] = provenance(repo=sections.ROOT)
    except Exception as exc:  # noqa: BLE001 -- provenance is a bonus; never lose the measurements over it
        record["provenance"] = {"error": f"{type(exc).__name__}: {exc}"}
    for name in chosen:
        elapsed = time.perf_counter() - t_start
        if not args.dry_run and elapsed + MIN_SECONDS[name] > args.budget_s:
            record["sections"][name] = {"status": "skipped", "reason": f"budget: {elapsed:.0f} s of {args.budget_s:.0f} used"}
            continue
        print(f"[{elapsed:6.1f} s] {name} ...", flush=True)
        t0 = time.perf_counter()
        try:
            result = {"status": "ok", **SECTIONS[name](plan, dev)}
        except Exception as exc:  # noqa: BLE001 -- one failing section must not cost the others' figures
            result = {"status": "error", "error": f"{type(exc).__name__}: {exc}",
                      "traceback": traceback.format_exc().splitlines()[-8:]}
        result["seconds"] = round(time.perf_counter() - t0, 1)
        record["sections"][name] = result
        record["targets"] = targets({k: v for k, v in record["sections"].items() if v.get("status") == "ok"})
        record["seconds"] = round(time.perf_counter() - t_start, 1)
        atomic_write_text(args.out, json.dumps(record, indent=1, default=str))
        print(f"[{time.perf_counter() - t_start:6.1f} s] {name}: {result['status']} ({result['seconds']} s)", flush=True)
    record["seconds"] = round(time.perf_counter() - t_start, 1)
    record["targets"] = targets({k: v for k, v in record["sections"].items() if v.get("status") == "ok"})
    atomic_write_text(args.out, json.dumps(record, indent=1, default=str))
    failed = [k for k, v in record["sections"].items() if v["status"] == "error"]
    print(json.dumps({"out": args.out, "seconds": record["seconds"], "errors": failed, "targets": record["targets"]}))
    return 1 if failed else 0


def _plan_dict(plan: sections.Plan) -> dict[str, Any]:
    import dataclasses

    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(plan).items()}


if __name__ == "__main__":
    sys.exit(main())
