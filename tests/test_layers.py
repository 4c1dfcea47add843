"""The package's import layers, read from the source with `ast` (nothing is imported).

DESIGN.md: arrows point down only (cli -> backends/folding -> finetuning -> core), pt and tf never
import each other, the core imports no backend and no folding, no cycles (function-level imports
count too: a lazy import is still a dependency), and no module uses another module's `_private`
names.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "protein_lm"
CORE = {"errors", "sequences", "tokenization", "batching", "data", "metrics", "models",
        "distributed", "files", "limits"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, ast.Module]:
    return {_module_name(p): ast.parse(p.read_text(), str(p)) for p in sorted(PACKAGE.rglob("*.py"))}


MODULES = _modules()


def _imports(name: str, tree: ast.Module) -> list[tuple[str, list[str]]]:
    """(imported module, names taken from it) for every import statement, at any depth."""
    is_pkg = (PACKAGE.parent / name.replace(".", "/") / "__init__.py").exists()
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import: resolve against this module's package
                pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                pkg = pkg[: len(pkg) - node.level + 1]
                base = ".".join(pkg + ([base] if base else []))
            names = [a.name for a in node.names]
            out.append((base, names))
            # `from protein_lm.folding import runtime` imports the submodule protein_lm.folding.runtime
            out += [(f"{base}.{n}", []) for n in names if f"{base}.{n}" in MODULES]
    return out


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, tree in MODULES.items():
        deps = set()
        for target, _ in _imports(name, tree):
            if target in MODULES and target != name:
                deps.add(target)
        # a package's __init__ is not a dependency edge back from its own children
        graph[name] = {d for d in deps if not name.startswith(d + ".")}
    return graph


def _part(module: str) -> str:
    """'core', a sub-package name (finetuning, pt, tf, folding, cli) or the top-level module."""
    parts = module.split(".")
    if len(parts) == 1:
        return "package"
    return "core" if parts[1] in CORE else parts[1]


def test_no_import_cycles() -> None:
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


# What each part must never import (protein_lm parts by name, third-party modules by top-level name).
FORBIDDEN = {
    # The core may convert to torch/TF tensors on request (`return_tensors=`), lazily inside a
    # function; it never imports a protein_lm backend, folding or anything above it.
    "core": {"pt", "tf", "folding", "finetuning", "cli", "package-level"},
    "finetuning": {"pt", "tf", "folding", "cli", "torch", "tensorflow", "keras"},
    "pt": {"tf", "folding", "cli", "tensorflow", "keras"},
    "tf": {"pt", "folding", "cli", "torch"},
    "folding": {"pt", "tf", "finetuning", "cli", "tensorflow", "keras"},
}


def _target_part(target: str) -> str | None:
    parts = target.split(".")
    if parts[0] != "protein_lm":
        return parts[0]
    if len(parts) == 1:
        return "package-level"
    if parts[1] in CORE:
        return "core"
    if (PACKAGE / parts[1]).is_dir():
        return parts[1]
    return "package-level"  # embeddings, variants, viz, ...: above the core


def test_layers_point_down_only() -> None:
    bad = []
    for name, tree in MODULES.items():
        forbidden = FORBIDDEN.get(_part(name), set())
        for target, _ in _imports(name, tree):
            if _target_part(target) in forbidden:
                bad.append(f"{name} imports {target}")
    assert not bad, "layer violations:\n" + "\n".join(sorted(set(bad)))


def test_no_module_uses_another_modules_private_names() -> None:
    bad = []
    for name, tree in MODULES.items():
        aliases: dict[str, str] = {}  # local name -> protein_lm module
        for target, names in _imports(name, tree):
            if target.startswith("protein_lm") and target != name:
                bad += [f"{name}: from {target} import {n}" for n in names
                        if n.startswith("_") and not n.startswith("__")]
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("protein_lm"):
                for a in node.names:
                    full = f"{node.module}.{a.name}"
                    if full in MODULES:
                        aliases[a.asname or a.name] = full
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name in MODULES and a.asname:
                        aliases[a.asname] = a.name
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in aliases and node.attr.startswith("_")
                    and not node.attr.startswith("__") and aliases[node.value.id] != name):
                bad.append(f"{name}: {aliases[node.value.id]}.{node.attr}")
    assert not bad, "private names used across modules:\n" + "\n".join(sorted(set(bad)))


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({"a": "import protein_lm.b\n", "b": "from protein_lm import a\n"}, "cycle"),
    ],
    ids=["two-module-cycle"],
)
def test_cycle_detector_finds_a_planted_cycle(source: dict[str, str], message: str) -> None:
    """The checker itself can fail: a planted two-module cycle is reported."""
    global MODULES
    saved = MODULES
    MODULES = {f"protein_lm.{k}": ast.parse(v) for k, v in source.items()}
    try:
        with pytest.raises(AssertionError, match=message):
            test_no_import_cycles()
    finally:
        MODULES = saved
