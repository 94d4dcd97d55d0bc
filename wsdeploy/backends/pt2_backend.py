"""`.pt2` backend: a torch.export program or an AOTInductor package, no model code needed.

Files written by `wsdeploy.export.to_pt2` are PT2 archives (the format of `torch.export.save`)
holding either the exported program ("model") or AOTInductor's compiled library for it, plus two
extra files with the card and runtime facts (see `wsdeploy.backends.metadata`). The program runs
through `ExportedProgram.module()`: the serialized ATen graph and its weights, not the Python
classes in `wsdeploy.models`.

Thread safety: calls are serialised by a lock. An exported program's module is an FX graph like
any eager module, but an AOTInductor runner holds a fixed pool of model instances whose
behaviour under concurrent calls we have not established on every torch version; one call at a
time is the stated contract for both kinds.
"""
from __future__ import annotations

import os
import pickle
import threading
import zipfile
from pathlib import Path
from typing import Any

import torch

from wsdeploy.backends.metadata import CARD_KEY, RUNTIME_KEY, ExportInfo, parse_metadata
from wsdeploy.backends.torch_backend import resolve_device

__all__ = ["PT2_CARD_FILE", "PT2_RUNTIME_FILE", "Pt2Backend", "load_pt2_archive"]

PT2_CARD_FILE = CARD_KEY + ".json"  # extra-file names inside the archive
PT2_RUNTIME_FILE = RUNTIME_KEY + ".json"
MODEL_NAME = "model"


def load_pt2_archive(path: str | os.PathLike) -> Any:
    """Load a PT2 archive (programs, AOTInductor runners, extra files); ValueError if unreadable.

    Uses `torch.export.pt2_archive._package.load_pt2`, the reader behind `torch.export.load`,
    because it also returns AOTInductor runners and extra files in one pass.
    """
    from torch.export.pt2_archive._package import load_pt2

    path = Path(path)
    if not path.is_file():
        raise ValueError(f".pt2 package not found: {str(path)!r}")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not a .pt2 package (not a zip archive; corrupt or truncated?)")
    try:
        return load_pt2(path)
    except (RuntimeError, ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"{path}: not a readable .pt2 package: {first}") from None


class Pt2Backend:
    """Runs a `.pt2` package exported by wsdeploy; thread-safe (one call at a time, a lock).

    Args:
        path: the `.pt2` file.
        device: 'auto', 'cpu', 'cuda[:N]'. An exported program moves to any device; an
            AOTInductor package runs only on the device type it was compiled for.

    Attributes:
        info: the `ExportInfo` (card, strides) read from the package.
        kind: 'exported_program' or 'aoti'.
    """

    def __init__(self, path: str | os.PathLike, *, device: str = "auto") -> None:
        contents = load_pt2_archive(path)
        extra = {k: v.decode() if isinstance(v, bytes) else v for k, v in contents.extra_files.items()}
        metadata = {CARD_KEY: extra.get(PT2_CARD_FILE), RUNTIME_KEY: extra.get(PT2_RUNTIME_FILE)}
        self.info: ExportInfo = parse_metadata(
            {k: v for k, v in metadata.items() if v is not None}, source=str(path)
        )
        self.device = resolve_device(device)
        self.input_multiple = self.info.input_multiple
        self.logit_stride = self.info.logit_stride
        if MODEL_NAME in contents.aoti_runners:
            self.kind = "aoti"
            compiled_for = _aoti_device(extra)
            if compiled_for != self.device.type:
                raise ValueError(
                    f"{path}: this AOTInductor package was compiled for {compiled_for!r} and cannot run "
                    f"on {str(self.device)!r}; load it with device={compiled_for!r} or re-export"
                )
            self._run = contents.aoti_runners[MODEL_NAME]
        elif MODEL_NAME in contents.exported_programs:
            self.kind = "exported_program"
            program = contents.exported_programs[MODEL_NAME]
            if self.device.type != "cpu":
                from torch.export.passes import move_to_device_pass

                program = move_to_device_pass(program, self.device)
            self._run = program.module()
        else:
            raise ValueError(f"{path}: the package has no program named {MODEL_NAME!r}")
        self._lock = threading.Lock()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, H, W) float32 normalised -> logits (B, K, H/s, W/s) float32."""
        x = x.to(self.device, torch.float32).contiguous()
        with self._lock, torch.inference_mode():
            return self._run(x).float()


def _aoti_device(extra: dict[str, Any]) -> str:
    import json

    runtime = json.loads(extra.get(PT2_RUNTIME_FILE) or "{}")
    return str(runtime.get("aoti_device", "cpu"))
