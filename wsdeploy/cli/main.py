"""The `wsdeploy` command: one entry point, a sub-command per job, `--help` everywhere.

Each sub-command lives in its own module with `add_arguments(parser)` and `run(args) -> int`, and
is imported only when chosen, so `wsdeploy --help` is fast and training, export or serving
dependencies load only for their commands.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from wsdeploy.cli import errors, tiny

__all__ = ["main"]

# name -> (module, one-line help).
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("wsdeploy.cli.demo", "train briefly from the bundled scribbles, evaluate on dense masks, segment the samples"),
    "segment": ("wsdeploy.cli.segment", "segment images with a model; write mask and overlay PNGs"),
    "eval": ("wsdeploy.cli.evaluate", "score a model on a dataset split: mIoU, per-class IoU, confusion matrix (JSON + PNG)"),
    "make-dataset": ("wsdeploy.cli.make_dataset", "generate the synthetic benchmark dataset"),
    "annotate": ("wsdeploy.cli.annotate", "scribbles -> dense masks, for one image or a dataset folder (pseudo-masks for --supervision full)"),
    "export": ("wsdeploy.cli.export", "export a checkpoint to ONNX (fp16/int8), .pt2, a TensorRT engine or a Triton repository, parity-checked"),
    "bench": ("wsdeploy.cli.bench", "latency/throughput of backends side by side; JSON under benchmarks/results/"),
    "serve": ("wsdeploy.cli.serve", "HTTP segmentation service with dynamic batching, health, readiness and metrics"),
    "cam": ("wsdeploy.cli.cam", "class activation maps of a tags classifier; threshold sweep; seed PNGs for --supervision tags"),
    "train": ("wsdeploy.cli.train", "train a segmenter from scribbles, masks or CAM seeds, or a CAM classifier from tags (DDP: torchrun -m wsdeploy train)"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wsdeploy",
        description="Weakly-supervised semantic segmentation: train from scribbles or tags, "
        "export, segment, serve.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:  # only the chosen command's module is imported
            importlib.import_module(module_name).add_arguments(p)
            parser.set_defaults(_subparser=p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if a in COMMANDS), None)
    try:
        parser = build_parser(command)
    except ImportError as exc:  # the command's options need an extra that is not installed
        print(f"wsdeploy {command}: error: {errors.one_line(exc)}", file=sys.stderr)
        return 2
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # a bad flag after the command: that command's usage, not the top-level one
        getattr(args, "_subparser", parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command is None:
        parser.print_help()
        return 2
    # our INFO lines; other libraries' only from WARNING up (onnxscript, uvicorn, ... are chatty)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("wsdeploy").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        if tiny.enabled():
            tiny.apply(args)
        return int(module.run(args))
    except KeyboardInterrupt:
        print(f"wsdeploy {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 -- the CLI's last line of defence: one line, never a traceback
        code, message = errors.describe(exc)
        if args.verbose:
            logging.getLogger(__name__).debug("traceback", exc_info=exc)
        print(f"wsdeploy {args.command}: error: {message}", file=sys.stderr)
        return code


def _version() -> str:
    from wsdeploy import __version__

    return __version__


if __name__ == "__main__":
    sys.exit(main())
