"""edge_sdk's imports point down the data path only: a layer imports its own and lower layers, never
one above it, and no two parts import each other. Every import counts, including those inside
functions (a lazy import is still a dependency). The base-install test proves the other rule: no
torch, TensorFlow, NNCF or ``export`` import anywhere in ``edge_sdk``."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

PACKAGE = REPO / "edge_sdk"

# Lowest first. A part is a subpackage or top-level module of edge_sdk.
LAYERS: list[set[str]] = [
    {"version", "errors", "cpu", "targets", "contract", "capture", "privacy", "plotting"},  # what everything may use
    {"backend"},  # runs a model file, given its card
    {"model", "models_registry"},  # FaceModel and model names; pulled public models
    {"face"},  # detection and alignment
    {"pipeline"},  # the runtime loop: pain state, sinks interface
    {"store"},  # the encrypted private log (a sink)
    {"forward"},  # store-and-forward of events to a ward station (MQTT, webhook, FHIR), from the log's outbox
    {"station"},  # the ward station: subscribes to the beds, serves the ward page
    {"analysis"},  # offline analysis of recordings and image folders into per-face tables (analyze)
    {"assembly", "bench", "cli", "__main__", "__init__"},  # composition root, tools and the front door
]
LAYER_OF = {part: level for level, parts in enumerate(LAYERS) for part in parts}


def part_of(module: str) -> str:
    """``edge_sdk.store.db`` -> ``store``; ``edge_sdk`` itself -> ``__init__``."""
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else "__init__"


def module_name(path: Path) -> str:
    relative = path.relative_to(REPO).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_module(name: str) -> bool:
    path = REPO.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imported_modules(path: Path) -> set[tuple[str, int]]:
    """Every edge_sdk module ``path`` imports, anywhere in the file, with the line."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found: set[tuple[str, int]] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {(alias.name, node.lineno) for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:  # `from edge_sdk import contract` imports the module edge_sdk.contract
                submodule = f"{base}.{alias.name}"
                found.add((submodule if is_module(submodule) else base, node.lineno))
    return {(name, line) for name, line in found if name == "edge_sdk" or name.startswith("edge_sdk.")}


def import_edges() -> list[tuple[str, str, str]]:
    """(importing part, imported part, 'file:line') for every import that crosses parts."""
    edges = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = part_of(module_name(path))
        for name, line in imported_modules(path):
            target = part_of(name)
            if target != source:
                edges.append((source, target, f"{path.relative_to(REPO)}:{line}"))
    return edges


def test_every_part_has_a_layer():
    parts = {part_of(module_name(p)) for p in PACKAGE.rglob("*.py")}
    assert parts <= set(LAYER_OF), f"add these to LAYERS: {sorted(parts - set(LAYER_OF))}"


def test_no_import_points_up():
    upward = [f"{where}: {a} imports {b}" for a, b, where in import_edges() if LAYER_OF[b] > LAYER_OF[a]]
    assert not upward, "imports that point up a layer:\n" + "\n".join(upward)


def test_no_two_parts_import_each_other():
    pairs = {(a, b) for a, b, _ in import_edges()}
    cycles = sorted(f"{a} <-> {b}" for a, b in pairs if (b, a) in pairs and a < b)
    assert not cycles, cycles


def test_no_comment_mentions_avoiding_a_cycle():
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text(encoding="utf-8").lower()
        assert "avoid a cycle" not in text and "avoids a cycle" not in text, path
