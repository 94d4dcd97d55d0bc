"""`wsdeploy bench MODEL... [--backend torch,onnxruntime] [--batch 1,4,16] [--size 512] [--crf]`.

Compares backends side by side in one run. Each MODEL is a file: a `.pt` checkpoint is run with
every variant named in `--backend` (exports made on the fly into a temporary folder and
parity-checked, their export time recorded); an `.onnx`, `.pt2` or `.engine` file runs as it is.

Variants of a checkpoint: torch, torch-bf16, torch-fp16, torch-channels_last, torch-compile,
torch-cudagraphs (compile mode reduce-overhead), onnxruntime, onnxruntime-fp16, onnxruntime-int8
(needs --calibration), pt2, pt2-aoti, tensorrt, tensorrt-int8 (GPU with TensorRT).

Writes a JSON (machine, versions, command, settings, one row per measurement) and prints a table
and a bar plot of latency.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["VARIANTS", "add_arguments", "run"]

# variant -> (backend, export kind or None, load options)
VARIANTS: dict[str, tuple[str, str | None, dict[str, Any]]] = {
    "torch": ("torch", None, {}),
    "torch-bf16": ("torch", None, {"precision": "bf16"}),
    "torch-fp16": ("torch", None, {"precision": "fp16"}),
    "torch-channels_last": ("torch", None, {"channels_last": True}),
    "torch-compile": ("torch", None, {"compile": "default"}),
    "torch-cudagraphs": ("torch", None, {"compile": "reduce-overhead"}),
    "onnxruntime": ("onnxruntime", "onnx", {}),
    "onnxruntime-fp16": ("onnxruntime", "onnx-fp16", {}),
    "onnxruntime-int8": ("onnxruntime", "onnx-int8", {}),
    "onnxruntime-trt": ("onnxruntime-trt", "onnx", {}),
    "pt2": ("pt2", "pt2", {}),
    "pt2-aoti": ("pt2", "pt2-aoti", {}),
    "tensorrt": ("tensorrt", "engine-fp16", {}),
    "tensorrt-int8": ("tensorrt", "engine-int8", {}),
}


def _size(text: str) -> tuple[int, int]:
    """`--size`: "S" (square) or "WxH" (e.g. 480x360, width first) -> (H, W)."""
    parts = text.lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected S or WxH (e.g. 512 or 480x360), got {text!r}") from None
    if len(values) == 1:
        return values[0], values[0]
    if len(values) == 2:
        return values[1], values[0]
    raise argparse.ArgumentTypeError(f"expected S or WxH (e.g. 512 or 480x360), got {text!r}")


def _size_text(size: tuple[int, int]) -> str:
    """(H, W) -> "S" for a square, else "WxH"."""
    return str(size[0]) if size[0] == size[1] else f"{size[1]}x{size[0]}"


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="+", metavar="MODEL", help=".pt checkpoint(s) and/or .onnx/.pt2/.engine files")
    parser.add_argument("--backend", default="torch,onnxruntime",
                        help=f"variants for .pt models, comma-separated (default torch,onnxruntime); one of {', '.join(VARIANTS)}")
    parser.add_argument("--batch", type=_int_list, default=[1], help="batch sizes, e.g. 1,4,16 (default 1)")
    parser.add_argument("--size", type=_size, default=(512, 512),
                        help="image size in pixels: S (square) or WxH, e.g. 480x360 (default 512)")
    parser.add_argument("--crf", action="store_true", help="also time end-to-end with the dense CRF")
    parser.add_argument("--device", default="auto", help="'auto', 'cpu' or 'cuda[:N]'")
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per measurement (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls first (default 3)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch and onnxruntime (default: torch's)")
    parser.add_argument("--calibration", metavar="DIR", help="images for the int8 variants' calibration")
    parser.add_argument("--out", help="JSON file (default benchmarks/results/bench_<device>_<time>.json)")
    parser.add_argument("--no-plot", action="store_true", help="print the table only")


def run(args: argparse.Namespace) -> int:
    import torch

    from wsdeploy.bench import bench_images, bench_segmenter
    from wsdeploy.environment import library_versions, machine_info

    if min(args.size) < 32 or args.repeats < 1 or args.warmup < 0:
        raise ValueError(
            f"need --size >= 32, --repeats >= 1, --warmup >= 0; got {_size_text(args.size)}, {args.repeats}, {args.warmup}"
        )
    if args.threads is not None:
        torch.set_num_threads(args.threads)  # the CLI owns the process: fine to set globally here
    threads = torch.get_num_threads()
    variants = [v.strip() for v in args.backend.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown --backend variant(s) {unknown}; choose from {list(VARIANTS)}")
    if any(v.endswith("int8") for v in variants) and not args.calibration:
        raise ValueError("the int8 variants need --calibration DIR, a folder of images like yours (e.g. "
                         "--calibration wsdeploy/assets/demo_data/images for the bundled model)")
    images = bench_images(args.size, min(max(args.batch), 4))
    rows: list[dict[str, Any]] = []
    exports: dict[str, Any] = {}
    crf = (False, True) if args.crf else (False,)
    with tempfile.TemporaryDirectory(prefix="wsdeploy-bench-") as tmp:
        for model_path in args.models:
            for name, path, load_options, export_info in _prepare(model_path, variants, Path(tmp), args):
                segmenter = _load(path, name, load_options, args.device, threads)
                if export_info:
                    exports[f"{Path(model_path).name}:{name}"] = export_info
                backend = segmenter.backend
                precision = load_options.get("precision") or getattr(getattr(backend, "info", None), "precision", "fp32")
                fixed = {"model": Path(model_path).name, "variant": name, "backend": type(backend).__name__,
                         "precision": precision, "device": str(backend.device), "size": _size_text(args.size)}
                measured = bench_segmenter(segmenter, images, batches=args.batch, crf=crf, warmup=args.warmup,
                                           repeats=args.repeats)
                rows.extend({**fixed, **row} for row in measured)
                print(f"done: {Path(model_path).name} {name}", file=sys.stderr)
    device = rows[0]["device"] if rows else "cpu"
    report = {
        "command": _command(args),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "versions": library_versions(("onnxslim", "onnxruntime-gpu", "tensorrt", "onnxscript")),
        "settings": {"size": _size_text(args.size), "batches": args.batch, "repeats": args.repeats, "warmup": args.warmup,
                     "threads": threads, "crf": args.crf, "variants": variants,
                     "images": "synthetic scenes (render_scene seeds 0..3), JPEG q95"},
        "model_sha256": {Path(m).name: _sha256(m) for m in args.models},
        "exports": exports, "results": rows,
    }
    out = Path(args.out) if args.out else Path("benchmarks/results") / (
        f"bench_{device.split(':')[0]}_{_dt.datetime.now():%Y%m%d-%H%M%S}.json")
    from wsdeploy.atomic import atomic_write_text

    atomic_write_text(out, json.dumps(report, indent=1) + "\n")
    print(format_table(rows))
    if not args.no_plot:
        print(format_plot(rows))
    print(f"wrote {out}")
    return 0


def _sha256(path: str) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _command(args: argparse.Namespace) -> str:
    """The command line that reproduces this run (rebuilt from the parsed arguments)."""
    parts = ["wsdeploy", "bench", *args.models, "--backend", args.backend, "--batch", ",".join(map(str, args.batch)),
             "--size", _size_text(args.size), "--device", args.device, "--repeats", str(args.repeats), "--warmup", str(args.warmup)]
    if args.crf:
        parts.append("--crf")
    if args.threads is not None:
        parts += ["--threads", str(args.threads)]
    if args.calibration:
        parts += ["--calibration", args.calibration]
    if args.out:
        parts += ["--out", args.out]
    return shlex.join(parts)


def _load(path: Path, name: str, options: dict[str, Any], device: str, threads: int) -> Any:
    import wsdeploy

    backend = VARIANTS[name][0] if name in VARIANTS else "auto"
    if backend in ("onnxruntime", "onnxruntime-trt") and device in ("auto", "cpu"):
        from wsdeploy.backends.onnxruntime_backend import OnnxRuntimeBackend
        from wsdeploy.runtime import Segmenter

        runner = OnnxRuntimeBackend(path, device=device, threads=threads)  # same thread count as torch
        return Segmenter(runner, runner.info.card)
    return wsdeploy.load(path, device=device, backend=backend, **options)


def _prepare(model: str, variants: list[str], tmp: Path, args: argparse.Namespace):
    """Yield (variant name, file, load options, export info) for one MODEL argument."""
    path = Path(model)
    if not path.is_file():
        raise ValueError(f"model file not found: {model!r}")
    suffix = path.suffix.lower()
    if suffix not in (".pt", ".pth"):
        from wsdeploy.backends.dispatch import SUFFIX_BACKENDS

        if suffix not in SUFFIX_BACKENDS:
            raise ValueError(f"unsupported model file {model!r}")
        yield SUFFIX_BACKENDS[suffix], path, {}, None
        return
    made: dict[str, tuple[Path, dict[str, Any]]] = {}
    for name in variants:
        _, kind, options = VARIANTS[name]
        if kind is None:
            yield name, path, options, None
            continue
        if kind not in made:
            made[kind] = _export(path, kind, tmp / f"{path.stem}-{kind}", args)
        file, info = made[kind]
        yield name, file, options, info


def _export(checkpoint: Path, kind: str, stem: Path, args: argparse.Namespace) -> tuple[Path, dict[str, Any]]:
    from wsdeploy.export import to_onnx, to_pt2, to_tensorrt

    if kind.startswith("onnx"):
        precision = kind.split("-")[1] if "-" in kind else "fp32"
        result = to_onnx(checkpoint, stem.with_suffix(".onnx"), fp16=precision == "fp16", int8=precision == "int8",
                         calibration=args.calibration if precision == "int8" else None)
        return result.path, {"seconds": round(result.seconds, 1), "parity": result.parity.to_dict()}
    if kind.startswith("pt2"):
        result = to_pt2(checkpoint, stem.with_suffix(".pt2"), aoti=kind == "pt2-aoti")
        return result.path, {"seconds": round(result.seconds, 1), "parity": result.parity.to_dict()}
    # TensorRT engines take their precision from the ONNX (strongly typed): fp16, or symmetric INT8 QDQ
    int8 = kind == "engine-int8"
    onnx_path = to_onnx(checkpoint, stem.with_suffix(".onnx"), fp16=not int8, int8=int8, int8_symmetric=int8,
                        calibration=args.calibration if int8 else None).path
    engine = to_tensorrt(onnx_path, stem.with_suffix(".engine"),
                         min_shape=(1, 3, *args.size), opt_shape=(1, 3, *args.size),
                         max_shape=(max(args.batch), 3, *args.size))
    return engine.path, {"seconds": round(engine.seconds, 1), "precision": engine.precision,
                         "parity": engine.parity.to_dict() if engine.parity else None}


def format_table(rows: list[dict[str, Any]]) -> str:
    """A fixed-width table of the measurements."""
    header = f"{'model':<18} {'variant':<20} {'prec':<5} {'mode':<12} {'crf':<4} {'B':>3} {'p50 ms':>9} {'p90 ms':>9} {'p99 ms':>9} {'img/s':>8}"
    lines = [header, "-" * len(header)]
    for r in rows:
        crf = "" if r["crf"] is None else ("on" if r["crf"] else "off")
        lines.append(
            f"{r['model'][:18]:<18} {r['variant'][:20]:<20} {r['precision']:<5} {r['mode']:<12} {crf:<4} {r['batch']:>3} "
            f"{r['p50_ms']:>9.1f} {r['p90_ms']:>9.1f} {r['p99_ms']:>9.1f} {r['throughput_ips']:>8.2f}"
        )
    return "\n".join(lines)


def format_plot(rows: list[dict[str, Any]], width: int = 50) -> str:
    """Horizontal bars of p50 latency per image (ms / B), one per measurement without CRF."""
    picked = [r for r in rows if not r["crf"]]
    if not picked:
        return ""
    per_image = [r["p50_ms"] / r["batch"] for r in picked]
    scale = width / max(per_image)
    lines = ["p50 latency per image (ms), shorter is faster:"]
    for r, v in zip(picked, per_image):
        label = f"{r['model']} {r['variant']} {r['mode']} B={r['batch']}"
        lines.append(f"{label[:52]:<52} {'#' * max(1, round(v * scale)):<{width}} {v:.1f}")
    return "\n".join(lines)
