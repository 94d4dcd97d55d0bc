"""The TensorRT code against the real API, as far as a machine without TensorRT allows.

1. Every TensorRT name `export/tensorrt.py` and the TensorRT backend use exists in TensorRT 11:
   read from the string table of the 11.x bindings module (`tensorrt_bindings/tensorrt.so` of the
   `tensorrt-cu13-bindings` wheel, which installs but cannot be imported without NVIDIA's
   libraries) and its `__init__.py`; or with `getattr` where TensorRT really imports. The names
   TensorRT 11 removed (`BuilderFlag.FP16`, the INT8 calibrator) must be absent, which shows the
   string check can tell.
2. Both modules type-check with mypy against the `tensorrt-stubs` package (TensorRT 10.13).

Each part skips with the reason when its package is missing. What this does NOT show: that the
calls behave as expected at run time (shapes, a successful build, parity) - that needs a machine
with TensorRT and a GPU (`test_tensorrt.py::test_engine_build_and_parity`).
"""
from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULES = [ROOT / "export" / "tensorrt.py", ROOT / "wsdeploy" / "backends" / "tensorrt_backend.py"]
# variables holding TensorRT objects in those modules; attributes read from them are TensorRT names
TRT_ROOTS = {"trt", "builder", "network", "parser", "config", "trt_profile", "cache", "context", "dims"}
TRT_SELF_ATTRS = {"engine", "_runtime"}
NOT_TRT = {"__version__"}  # checked in the bindings' __init__.py instead
REMOVED_IN_11 = ["FP16", "INT8", "IInt8EntropyCalibrator2", "int8_calibrator", "set_calibration_profile"]


def _chain(node: ast.expr) -> list[str]:
    """`a.b.c` -> ['a', 'b', 'c'] (empty unless the chain starts at a plain name)."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return [node.id, *reversed(parts)] if isinstance(node, ast.Name) else []


def used_trt_names() -> set[str]:
    """Attribute names read from TensorRT objects in MODULES (recognised by variable name)."""
    names: set[str] = set()
    for path in MODULES:
        for node in ast.walk(ast.parse(path.read_text())):
            chain = _chain(node) if isinstance(node, ast.Attribute) else []
            if chain and chain[0] in TRT_ROOTS:
                names.update(chain[1:])
            elif len(chain) > 2 and chain[0] == "self" and chain[1] in TRT_SELF_ATTRS:
                names.update(chain[2:])
    return names


def test_the_name_scan_finds_the_calls_that_matter():
    names = used_trt_names()
    expected = {
        "Builder", "create_network", "NetworkDefinitionCreationFlag", "STRONGLY_TYPED", "OnnxParser", "parse",
        "num_errors", "get_error", "set_memory_pool_limit", "MemoryPoolType", "WORKSPACE",
        "create_optimization_profile", "set_shape", "add_optimization_profile", "create_timing_cache",
        "set_timing_cache", "get_timing_cache", "serialize", "build_serialized_network", "Runtime",
        "deserialize_cuda_engine", "create_execution_context", "get_tensor_profile_shape", "set_input_shape",
        "get_tensor_shape", "set_tensor_address", "execute_async_v3", "get_tensor_dtype", "nptype",
    }
    assert expected <= names, sorted(expected - names)
    assert not names & set(REMOVED_IN_11)


def _bindings_11() -> Path:
    for name in ("tensorrt-cu13-bindings", "tensorrt-cu12-bindings", "tensorrt-bindings"):
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        if int(dist.version.split(".")[0]) >= 11:
            return Path(str(dist.locate_file("tensorrt_bindings")))
    pytest.skip("the TensorRT 11 bindings wheel is not installed (pip install tensorrt-cu13-bindings==11.4.0.106)")


def _strings(binary: bytes) -> tuple[set[str], str]:
    """(NUL-separated printable strings, all of them joined) of a shared library."""
    tokens = {t.decode("ascii") for t in re.findall(rb"[\x20-\x7e\t\n]{2,}", binary)}
    return tokens, "\n".join(tokens)


def test_every_tensorrt_name_used_exists_in_the_11_bindings():
    folder = _bindings_11()
    tokens, text = _strings((folder / "tensorrt.so").read_bytes())
    init = (folder / "__init__.py").read_text()

    suffixes = {t.rsplit("_", 1)[-1] for t in tokens if "_" in t}

    def present(name: str) -> bool:
        """The name as a string literal of its own; or cross-referenced in a docstring; or, as the
        linker merges a literal into the tail of a longer one, after a '_' at the end of one
        ('serialize' in 'get_fields_to_serialize'); or defined, or patched at import time
        ('Logger.Severity = ...'), in the bindings' __init__.py."""
        return (
            name in tokens or name in suffixes
            or f":ivar {name}:" in text
            or any(f"{tag}{name}`" in text for tag in (":class:`", ":func:`", ":attr:`"))
            or re.search(rf"^def {name}\(", init, re.M) is not None
            or re.search(rf"^{name}\.\w+ = ", init, re.M) is not None  # patched at import: it exists
        )

    names = used_trt_names() - NOT_TRT
    missing = sorted(n for n in names if not present(n))
    assert not missing, f"not in the TensorRT 11 bindings: {missing}"
    assert re.search(r'^__version__ = "11\.', init, re.M)
    assert "Logger.Severity = ILogger.Severity" in init and "setattr(Logger, attr, value)" in init  # Logger.WARNING
    still_there = [n for n in REMOVED_IN_11 if present(n)]
    assert not still_there, f"removed in TensorRT 11 but found: {still_there} (the string check cannot tell)"


def test_every_tensorrt_name_used_exists_in_the_installed_tensorrt():
    from wsdeploy.backends.tensorrt_backend import import_tensorrt

    try:
        trt = import_tensorrt()
    except ImportError:
        pytest.skip("TensorRT is not importable here (its libraries come from NVIDIA's index)")
    owners = [trt] + [getattr(trt, n) for n in dir(trt) if isinstance(getattr(trt, n), type)]
    missing = sorted(n for n in used_trt_names() if not any(hasattr(o, n) for o in owners))
    assert not missing, f"not in TensorRT {trt.__version__}: {missing}"


def _stub_folder(tmp: Path) -> Path:
    """The tensorrt-stubs .pyi files, copied and repaired: a few methods generated with a
    parameter named `in` or a default-less parameter after defaults (syntax errors) get
    `(*args, **kwargs)` signatures; none of them is used here."""
    try:
        dist = importlib.metadata.distribution("tensorrt-stubs")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("tensorrt-stubs is not installed (pip install --no-deps tensorrt-stubs==10.13.0.35.1)")
    out = tmp / "stubs"
    for file in dist.files or []:
        if file.suffix != ".pyi":
            continue
        lines = Path(str(dist.locate_file(file))).read_text().splitlines()
        for _ in range(200):
            try:
                ast.parse("\n".join(lines))
                break
            except SyntaxError as exc:
                i = (exc.lineno or 1) - 1
                match = re.match(r"^(\s*)def (\w+)\(.*\)( -> .*)?:\s*$", lines[i])
                if not match:
                    raise
                lines[i] = f"{match[1]}def {match[2]}(*args: typing.Any, **kwargs: typing.Any){match[3] or ''}:"
        target = out / str(file)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("\n".join(lines) + "\n")
    return out


@pytest.mark.slow
def test_tensorrt_code_type_checks_against_the_10x_stubs(tmp_path):
    pytest.importorskip("mypy", reason="mypy is not installed (the test extra has it)")
    stubs = _stub_folder(tmp_path)
    config = tmp_path / "mypy.ini"
    config.write_text(
        "[mypy]\nfollow_imports = skip\nignore_missing_imports = True\n"
        f"mypy_path = {stubs}\ncache_dir = {tmp_path / 'cache'}\n"
        "[mypy-tensorrt,tensorrt.*,tensorrt_bindings,tensorrt_bindings.*]\nfollow_imports = normal\nignore_errors = True\n"
    )
    probe = tmp_path / "probe.py"  # the checker must see the stubs, else everything is Any and passes
    probe.write_text("import tensorrt as trt\ntrt.BuilderFlag.NO_SUCH_FLAG\n")
    run = [sys.executable, "-m", "mypy", "--config-file", str(config)]
    seen = subprocess.run([*run, str(probe)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert 'has no attribute "NO_SUCH_FLAG"' in seen.stdout, seen.stdout + seen.stderr
    result = subprocess.run([*run, *map(str, MODULES)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
