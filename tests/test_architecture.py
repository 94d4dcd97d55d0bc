"""The house rules of the package layout (DESIGN.md, issue 13), checked on the source:

- no module-level import cycle between our modules;
- no module imports a `_private` name (module or attribute) from another package;
- `wsdeploy/` (the runtime) never imports `training`, `export` or `serving` at module level;
- imports of our own modules are absolute.

The source is parsed, not imported, so the checks are fast and see every module.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = {"wsdeploy": ROOT / "wsdeploy", "wsdeploy.training": ROOT / "training",
                "wsdeploy.export": ROOT / "export", "wsdeploy.serving": ROOT / "serving"}


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the distribution."""
    found: dict[str, Path] = {}
    for prefix, folder in PACKAGE_DIRS.items():
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            name = ".".join([prefix, *parts])
            if prefix == "wsdeploy" and parts and parts[0] in ("training", "export", "serving"):
                continue
            found[name] = path
    return found


MODULES = _modules()


def _package_of(module: str, path: Path) -> str:
    return module if path.name == "__init__.py" else module.rsplit(".", 1)[0]


def _top_level_imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(module, imported names, level) of the imports that run at import time: module level,
    outside functions, `if TYPE_CHECKING:` blocks excluded."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: list[tuple[str, list[str], int]] = []

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                out.extend((alias.name, [], 0) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                out.append((node.module or "", [a.name for a in node.names], node.level))
            elif isinstance(node, ast.If):
                test = ast.unparse(node.test)
                if "TYPE_CHECKING" not in test:
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)
                visit(node.orelse)
                visit(node.finalbody)

    visit(tree.body)
    return out


def _resolve(name: str) -> str | None:
    """The longest prefix of `name` that is one of our modules."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _edges() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        for target, names, _level in _top_level_imports(path):
            for candidate in [f"{target}.{n}" for n in names] + [target]:
                resolved = _resolve(candidate)
                if resolved and resolved != module:
                    edges[module].add(resolved)
                    break
    return edges


def test_no_relative_imports_of_our_modules() -> None:
    offenders = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level > 0:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, f"relative imports (use absolute `from wsdeploy.x import y`): {offenders}"


def test_no_module_level_import_cycle() -> None:
    edges = _edges()
    # a package importing its own sub-modules from __init__ is how re-exports work, not a cycle
    for module, path in MODULES.items():
        if path.name == "__init__.py":
            edges[module] = {t for t in edges[module] if not t.startswith(module + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def dfs(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                dfs(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            dfs(node)
    assert not cycles, "module-level import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_no_private_name_imported_across_packages() -> None:
    offenders = []
    for module, path in MODULES.items():
        own = _package_of(module, path)
        for target, names, level in _all_imports(path):
            if level or not target.startswith("wsdeploy"):
                continue
            parts = target.split(".")
            private_at = next((i for i, p in enumerate(parts) if p.startswith("_")), None)
            if private_at is not None:
                owner = ".".join(parts[:private_at])
                if not own.startswith(owner) or owner == "":
                    offenders.append(f"{module} imports {target}")
                continue
            target_package = target if (_resolve(target) and MODULES[_resolve(target)].name == "__init__.py") else target.rpartition(".")[0]
            for name in names:
                if name.startswith("_") and not own.startswith(target_package):
                    offenders.append(f"{module} imports {name} from {target}")
    assert not offenders, f"private names imported across packages: {offenders}"


def _all_imports(path: Path) -> list[tuple[str, list[str], int]]:
    """Every `from ... import` of the file, inside functions too."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            out.append((node.module or "", [a.name for a in node.names], node.level))
    return out


@pytest.mark.parametrize("room", ["training", "export", "serving"])
def test_runtime_never_imports_outer_rooms_at_module_level(room: str) -> None:
    offenders = []
    for module, path in MODULES.items():
        if not module.startswith("wsdeploy.") or module.split(".")[1] in ("training", "export", "serving"):
            continue
        if path.is_relative_to(PACKAGE_DIRS["wsdeploy"]):
            for target, _names, _level in _top_level_imports(path):
                if target.startswith(f"wsdeploy.{room}"):
                    offenders.append(f"{module} imports {target}")
    assert not offenders, f"the runtime must import {room} lazily (inside a function): {offenders}"
