"""`wsdeploy export CKPT --format onnx|tensorrt|pt2|triton --out PATH [--fp16 | --int8 --calibration DIR]`,
and `wsdeploy export --check-only MODEL REFERENCE` (parity of two model files, nothing written).

Each format is one function in `FORMATS` (name -> exporter(args) -> summary dict), so adding
one is a line. The export functions live in `wsdeploy.export`, imported when the command runs.
TensorRT engines are strongly typed: `--format tensorrt` writes the fp16 ONNX (default, or fp32
with `--fp32`, or symmetric INT8 QDQ with `--int8 --calibration DIR`) next to the engine and builds
the engine from it, checked against that ONNX before it is written.
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["FORMATS", "add_arguments", "run"]


def _shape(text: str) -> tuple[int, int, int, int]:
    try:
        dims = tuple(int(d) for d in text.lower().replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected B,3,H,W (e.g. 1,3,512,512), got {text!r}") from None
    if len(dims) != 4:
        raise argparse.ArgumentTypeError(f"expected 4 numbers B,3,H,W, got {text!r}")
    return dims  # type: ignore[return-value]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="MODEL", help="wsdeploy checkpoint (.pt); for tensorrt also a .onnx; "
                        "with --check-only any model file")
    parser.add_argument("reference", metavar="REFERENCE", nargs="?", help="--check-only: the model file to compare with")
    parser.add_argument("--check-only", action="store_true",
                        help="compare MODEL with REFERENCE (any .pt/.onnx/.pt2/.engine) on the check images; write nothing")
    parser.add_argument("--format", choices=sorted(FORMATS), help="what to write (required unless --check-only)")
    parser.add_argument("--out", help="output file (.onnx, .pt2, .engine) or, for triton, the repository folder")
    precision = parser.add_mutually_exclusive_group()
    precision.add_argument("--fp16", action="store_true", help="fp16 (onnx: fp16 weights; tensorrt: the default)")
    precision.add_argument("--int8", action="store_true", help="INT8 QDQ static quantisation (tensorrt: symmetric int8)")
    precision.add_argument("--fp32", action="store_true", help="tensorrt: an fp32 engine (TF32) instead of fp16")
    parser.add_argument("--calibration", metavar="DIR", help="folder of representative images for --int8")
    parser.add_argument("--calibration-limit", type=int, default=32, help="at most this many calibration images (32)")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default 20)")
    parser.add_argument("--static", type=_shape, metavar="B,3,H,W", help="onnx: one fixed input shape instead of dynamic")
    parser.add_argument("--no-simplify", action="store_true", help="onnx: skip onnxslim")
    parser.add_argument("--no-check", action="store_true", help="skip the parity check against torch (not advised)")
    parser.add_argument("--check-images", metavar="DIR", help="images for the parity check (default: bundled demo images)")
    parser.add_argument("--aoti", action="store_true", help="pt2: compile with AOTInductor (needs a C++ compiler; slow)")
    parser.add_argument("--device", default=None,
                        help="pt2 --aoti: target device (cpu); tensorrt: build device (cuda); --check-only: where MODEL runs (auto)")
    parser.add_argument("--min-shape", type=_shape, default=(1, 3, 256, 256), help="tensorrt profile (1,3,256,256)")
    parser.add_argument("--opt-shape", type=_shape, default=(1, 3, 512, 512), help="tensorrt profile (1,3,512,512)")
    parser.add_argument("--max-shape", type=_shape, default=(8, 3, 1024, 1024), help="tensorrt profile (8,3,1024,1024)")
    parser.add_argument("--timing-cache", help="tensorrt: timing cache file to reuse and update")
    parser.add_argument("--triton-max-batch", type=int, default=16, help="triton: max_batch_size of the config (16)")
    parser.add_argument("--triton-instances", type=int, default=1, help="triton: model instances per device (1)")
    parser.add_argument("--triton-kind", default="auto", choices=("auto", "gpu", "cpu"), help="triton: instance group kind")


def _onnx(args: argparse.Namespace) -> dict[str, Any]:
    from wsdeploy.export import DEFAULT_OPSET, to_onnx

    result = to_onnx(
        args.checkpoint, args.out, opset=args.opset or DEFAULT_OPSET, dynamic=args.static is None,
        input_shape=args.static, fp16=args.fp16, int8=args.int8, calibration=args.calibration,
        calibration_limit=args.calibration_limit, simplify=not args.no_simplify, check=not args.no_check,
        check_images=args.check_images,
    )
    return {"path": str(result.path), "precision": result.precision, "simplified": result.simplified,
            "seconds": round(result.seconds, 1), "parity": result.parity.to_dict() if result.parity else None}


def _pt2(args: argparse.Namespace) -> dict[str, Any]:
    from wsdeploy.export import to_pt2

    if args.fp16 or args.int8:
        raise ValueError("--format pt2 exports fp32; use --format onnx or tensorrt for fp16/int8")
    result = to_pt2(args.checkpoint, args.out, aoti=args.aoti, device=args.device or "cpu", check=not args.no_check,
                    check_images=args.check_images)
    return {"path": str(result.path), "kind": result.kind, "seconds": round(result.seconds, 1),
            "parity": result.parity.to_dict() if result.parity else None}


def _tensorrt(args: argparse.Namespace) -> dict[str, Any]:
    from wsdeploy.backends.tensorrt_backend import import_tensorrt
    from wsdeploy.export import to_onnx, to_tensorrt

    import_tensorrt()  # fail before a long ONNX export when TensorRT is missing
    source = Path(args.checkpoint)
    if source.suffix.lower() != ".onnx":  # a checkpoint: the ONNX that sets the engine's precision
        if args.int8 and not args.calibration:
            raise ValueError("--format tensorrt --int8 needs --calibration DIR (the INT8 ONNX's calibration images)")
        fp16 = not (args.fp32 or args.int8)
        tag = "fp16" if fp16 else "int8" if args.int8 else "fp32"
        onnx_path = Path(args.out).with_suffix(f".{tag}.onnx")
        to_onnx(source, onnx_path, fp16=fp16, int8=args.int8, int8_symmetric=args.int8, calibration=args.calibration,
                calibration_limit=args.calibration_limit, check=not args.no_check, check_images=args.check_images)
        source = onnx_path
    elif args.fp16 or args.int8 or args.fp32:
        raise ValueError(f"{source} is an ONNX file: the engine takes its precision from it; drop --fp16/--int8/--fp32")
    result = to_tensorrt(
        source, args.out, min_shape=args.min_shape, opt_shape=args.opt_shape, max_shape=args.max_shape,
        timing_cache=args.timing_cache, device=args.device or "cuda", check=not args.no_check,
        check_images=args.check_images,
    )
    return {"path": str(result.path), "side_file": str(result.side_file), "onnx": str(source),
            "precision": result.precision, "profile": [list(s) for s in result.profile],
            "seconds": round(result.seconds, 1), "parity": result.parity.to_dict() if result.parity else None}


def _triton(args: argparse.Namespace) -> dict[str, Any]:
    from wsdeploy.export.triton import to_triton

    if args.fp16 or args.int8:
        raise ValueError("--format triton exports the fp32 ONNX model; quantise with --format onnx first")
    result = to_triton(args.checkpoint, args.out, max_batch_size=args.triton_max_batch,
                       instance_count=args.triton_instances, kind=args.triton_kind)
    return {"repository": str(result.repository), "config": str(result.config_path), "onnx": str(result.onnx_path)}


# format name -> exporter
FORMATS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "onnx": _onnx,
    "pt2": _pt2,
    "tensorrt": _tensorrt,
    "triton": _triton,
}


def _check_only(args: argparse.Namespace) -> int:
    from wsdeploy.export.parity import check_files

    if args.reference is None:
        raise ValueError("--check-only needs two files: wsdeploy export --check-only MODEL REFERENCE")
    if args.format or args.out:
        raise ValueError("--check-only writes nothing: drop --format/--out")
    report = check_files(args.checkpoint, args.reference, images=args.check_images, device=args.device or "auto")
    print(json.dumps({"model": args.checkpoint, "reference": args.reference, "passed": True, **report.to_dict()}, indent=1))
    return 0


def run(args: argparse.Namespace) -> int:
    if args.check_only:
        return _check_only(args)
    if args.reference is not None:
        raise ValueError(f"unexpected second file {args.reference!r} (only --check-only takes MODEL REFERENCE)")
    if not args.format or not args.out:
        raise ValueError("wsdeploy export needs --format and --out (or --check-only MODEL REFERENCE)")
    if args.fp32 and args.format != "tensorrt":
        raise ValueError("--fp32 is for --format tensorrt (the other formats are fp32 unless --fp16/--int8)")
    if args.int8 and args.format == "onnx" and not args.calibration:
        raise ValueError("--int8 needs --calibration DIR (a folder of representative images)")
    summary = FORMATS[args.format](args)
    print(json.dumps(summary, indent=1))
    return 0
