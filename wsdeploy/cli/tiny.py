"""`WSDEPLOY_TINY=1`: run any `wsdeploy` command at toy size, as a smoke test of a pipeline.

The README test (`tests/test_readme.py`) runs every README command this way, so a command that
fails as written breaks the build. Users can do the same with their own scripts:

    WSDEPLOY_TINY=1 bash my_pipeline.sh      # every step runs, in seconds, nothing is meaningful

`wsdeploy.cli.main` reads the variable once and calls `apply(args)` on the parsed arguments:
the command's expensive knobs are clamped (never raised), and one line on stderr says what
changed. The library below the CLI never reads it. Add a command's clamps to `_CLAMPS`.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["ENV_VAR", "apply", "enabled"]

ENV_VAR = "WSDEPLOY_TINY"


def enabled(environ: dict[str, str] | None = None) -> bool:
    """True when WSDEPLOY_TINY is set to anything but '', '0', 'false' or 'no'."""
    value = (os.environ if environ is None else environ).get(ENV_VAR, "")
    return value.strip().lower() not in ("", "0", "false", "no")


def _at_most(args: argparse.Namespace, name: str, limit: Any, changed: dict[str, Any], *, default: Any = None) -> None:
    """Lower args.<name> to `limit`; a missing/None value counts as `default` (None: set to limit)."""
    current = getattr(args, name, None)
    if current is None:
        current = default
    if current is None or current > limit:
        setattr(args, name, limit)
        changed[name] = limit


def _set(args: argparse.Namespace, name: str, value: Any, changed: dict[str, Any]) -> None:
    if getattr(args, name, None) != value:
        setattr(args, name, value)
        changed[name] = value


def _train(args: argparse.Namespace, changed: dict[str, Any]) -> None:
    # train's flags are SUPPRESSed unless given: set attributes so they override YAML and resume
    _set(args, "steps", 2, changed)
    _at_most(args, "crop_size", 64, changed)
    _at_most(args, "batch_size", 2, changed)
    if getattr(args, "backbone_weights", None) is None:
        _at_most(args, "width", 16, changed)
    _set(args, "workers", 0, changed)
    _set(args, "tensorboard", False, changed)
    _set(args, "log_every", 1, changed)
    _set(args, "eval_every", 0, changed)
    _set(args, "checkpoint_every", 0, changed)
    _set(args, "progress", False, changed)


def _make_dataset(args: argparse.Namespace, changed: dict[str, Any]) -> None:
    _at_most(args, "num_images", 12, changed)
    _at_most(args, "size", 64, changed)
    _set(args, "workers", 0, changed)


def _annotate(args: argparse.Namespace, changed: dict[str, Any]) -> None:
    if getattr(args, "method", "network") not in ("network",):  # the graph cut has no such knobs
        return
    _at_most(args, "steps", 3, changed)
    _at_most(args, "size", 64, changed)
    _at_most(args, "crf_iterations", 1, changed)


def _demo(args: argparse.Namespace, changed: dict[str, Any]) -> None:
    _at_most(args, "train_steps", 2, changed)


def _bench(args: argparse.Namespace, changed: dict[str, Any]) -> None:
    _at_most(args, "repeats", 1, changed)
    _at_most(args, "warmup", 0, changed)
    size = getattr(args, "size", None)
    if isinstance(size, tuple):  # (W, H) since bench --size WxH
        if max(size) > 64:
            _set(args, "size", tuple(min(s, 64) for s in size), changed)
    else:
        _at_most(args, "size", 64, changed)
    if getattr(args, "batch", None) and max(args.batch) > 2:
        _set(args, "batch", sorted({min(b, 2) for b in args.batch}), changed)


def _cam(args: argparse.Namespace, changed: dict[str, Any]) -> None:
    _set(args, "scales", "1", changed)
    _set(args, "no_flip", True, changed)
    _at_most(args, "crf_iterations", 1, changed)


def _eval(args: argparse.Namespace, changed: dict[str, Any]) -> None:
    _at_most(args, "limit", 4, changed)


_CLAMPS: dict[str, Callable[[argparse.Namespace, dict[str, Any]], None]] = {
    "train": _train,
    "make-dataset": _make_dataset,
    "annotate": _annotate,
    "demo": _demo,
    "bench": _bench,
    # export: nothing to clamp; the parity check must still pass (an INT8 model calibrated on 2
    # images does not) and torch.export's cost (~9 s of CPU) does not shrink with the model
    "cam": _cam,
    "eval": _eval,  # wsdeploy/cli/evaluate.py
}


def apply(args: argparse.Namespace) -> dict[str, Any]:
    """Clamp the parsed arguments of `args.command` in place; return {name: new value}.

    Prints one line on stderr naming what changed (nothing when the command has no clamps).
    """
    clamp = _CLAMPS.get(getattr(args, "command", None) or "")
    changed: dict[str, Any] = {}
    if clamp is not None:
        clamp(args, changed)
    if changed:
        shown = ", ".join(f"{k}={v}" for k, v in changed.items())
        print(f"wsdeploy {args.command}: {ENV_VAR} is set: toy sizes ({shown}); results are not meaningful",
              file=sys.stderr)
    return changed
