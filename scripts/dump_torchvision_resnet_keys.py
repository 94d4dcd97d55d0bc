"""Dump torchvision's ResNet-18/50/101 state-dict keys and shapes to JSON.

Provenance: runs torchvision's own ``torchvision/models/resnet.py`` (BSD-3-Clause,
https://github.com/pytorch/vision) so the reference keys come from the real code, not from ours.

Why: ``wsdeploy.models.resnet`` promises torchvision-compatible state-dict keys and shapes, so
a user's downloaded ImageNet ``resnet50-*.pth`` loads with ``strict=True``. torchvision cannot be
installed next to our CPU torch build, so this script runs its ``resnet.py`` alone, with minimal
stubs for the torchvision-internal modules it imports (weights enums, transforms presets, the
model registry, usage logging); none of them affects the layers that are built.

Procedure (done once; the output is committed and the test suite never runs this script):

    .venv/bin/pip download torchvision --no-deps -d /tmp/tv
    .venv/bin/python scripts/dump_torchvision_resnet_keys.py /tmp/tv/torchvision-*.whl \\
        tests/wsdeploy/models/torchvision_resnet_keys.json

The first argument is a torchvision wheel (``resnet.py`` is read from inside it) or a path to an
extracted ``resnet.py``. The JSON is ``{"source": ..., "models": {"resnet18": [[key, shape],
...], ...}}`` with every state-dict entry in order, ``fc.*`` included, shapes as lists of ints.
"""

from __future__ import annotations

import argparse
import enum
import importlib.util
import json
import sys
import tempfile
import types
import zipfile
from pathlib import Path

import torch

__all__ = ["dump_keys", "main"]

_ARCHS = ("resnet18", "resnet50", "resnet101")


def _install_stubs() -> None:
    """Register stand-ins for the torchvision modules that ``resnet.py`` imports relatively."""

    def package(name: str) -> types.ModuleType:
        module = types.ModuleType(name)
        module.__path__ = []  # marks it as a package so relative imports resolve
        sys.modules[name] = module
        return module

    def module(name: str, **attrs: object) -> None:
        mod = types.ModuleType(name)
        mod.__dict__.update(attrs)
        sys.modules[name] = mod

    class Weights:  # stands in for torchvision.models._api.Weights (url, transforms, meta)
        def __init__(self, **kwargs: object) -> None:
            self.__dict__.update(kwargs)

    class WeightsEnum(enum.Enum):
        @classmethod
        def verify(cls, obj: object) -> object:
            return obj

    package("torchvision")
    package("torchvision.models")
    package("torchvision.transforms")
    module("torchvision.transforms._presets", ImageClassification=object)
    module("torchvision.utils", _log_api_usage_once=lambda obj: None)
    module(
        "torchvision.models._api",
        register_model=lambda *a, **k: (lambda fn: fn),
        Weights=Weights,
        WeightsEnum=WeightsEnum,
    )
    module("torchvision.models._meta", _IMAGENET_CATEGORIES=[str(i) for i in range(1000)])
    module(
        "torchvision.models._utils",
        _ovewrite_named_param=lambda kwargs, name, value: kwargs.__setitem__(name, value),
        handle_legacy_interface=lambda **k: (lambda fn: fn),
    )


def dump_keys(resnet_py: Path) -> dict[str, list[list[object]]]:
    """Instantiate torchvision's resnet18/50/101 from ``resnet_py``; return keys and shapes."""
    _install_stubs()
    spec = importlib.util.spec_from_file_location("torchvision.models.resnet", resnet_py)
    if spec is None or spec.loader is None:
        raise ValueError(f"cannot load {resnet_py!s} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules["torchvision.models.resnet"] = module
    spec.loader.exec_module(module)
    out: dict[str, list[list[object]]] = {}
    for arch in _ARCHS:
        model = getattr(module, arch)(weights=None)
        out[arch] = [[key, list(value.shape)] for key, value in model.state_dict().items()]
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="torchvision wheel or extracted resnet.py")
    parser.add_argument("output", type=Path, help="JSON file to write")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        resnet_py = args.source
        if args.source.suffix == ".whl":
            with zipfile.ZipFile(args.source) as wheel:
                resnet_py = Path(wheel.extract("torchvision/models/resnet.py", tmp))
        models = dump_keys(resnet_py)
    payload = {
        "source": f"{args.source.name} torchvision/models/resnet.py, torch {torch.__version__}",
        "models": models,
    }
    # one [key, shape] entry per line: small, diff-friendly, still plain JSON
    lines = [f'{{"source": {json.dumps(payload["source"])},', ' "models": {']
    for i, (arch, entries) in enumerate(models.items()):
        lines.append(f"  {json.dumps(arch)}: [")
        lines += [f"   {json.dumps(e)}," for e in entries[:-1]] + [f"   {json.dumps(entries[-1])}"]
        lines.append("  ]" + ("," if i < len(models) - 1 else ""))
    lines += [" }", "}"]
    text = "\n".join(lines) + "\n"
    if json.loads(text) != payload:
        raise RuntimeError("formatted JSON does not round-trip")  # guards the hand formatting
    args.output.write_text(text)


if __name__ == "__main__":
    main()
