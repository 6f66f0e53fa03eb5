"""The package's shape, as docs/architecture.md promises it: layers, sizes, no cycles."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "dreamgym"

# Lowest first; a module may import only from its own layer or the layers before it.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("utils",),
    ("runners",),  # the Ray backend: episodes as tasks; knows nothing of worlds or policies
    ("spaces", "preprocessing", "rendering"),
    ("models",),
    ("envs.real",),  # a leaf (gymnasium only) that world.py uses to check envs
    ("world", "world_config", "world_files"),  # world_config: config.json's validator (no torch)
    ("envs", "wrappers", "options"),  # options: the groups composed into every job's config
    ("policies",),
    # the stages, in the data's order: collect → train (V, M) → agents → evaluation
    ("data",),  # collect: real episodes to shards
    ("training", "train", "init_world"),  # a world's V and M (train: the old import path)
    ("agents", "sb3", "play"),  # agents trained in the dream: CMA-ES, SB3 (sb3: the old path)
    ("evaluation",),
    ("demo", "controllers"),  # controllers: the old path, whose train_controller injects evaluation
    ("commands",),
    ("cli",),
)
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).with_suffix("").parts
        out[".".join(rel[:-1] if rel[-1] == "__init__" else rel)] = path
    return out


def _layer(module: str) -> int:
    best = None
    for i, names in enumerate(LAYERS):
        for name in names:
            if module == name or module.startswith(name + "."):
                if best is None or len(name) > best[1]:
                    best = (i, len(name))
    assert best is not None, f"dreamgym.{module} is in no layer of tests/test_layout.py"
    return best[0]


def _top_level_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dreamgym."):
            found.add(node.module.removeprefix("dreamgym."))
        elif isinstance(node, ast.Import):
            found |= {
                a.name.removeprefix("dreamgym.")
                for a in node.names
                if a.name.startswith("dreamgym.")
            }
    return found


def test_imports_flow_down_the_layers() -> None:
    upward = []
    for module, path in _modules().items():
        if not module:
            continue
        for target in _top_level_imports(path):
            if target.startswith(module + ".") or module.startswith(target + "."):
                continue  # a package and its own modules
            if _layer(target) > _layer(module):
                upward.append(f"dreamgym.{module} imports dreamgym.{target}")
    assert not upward, "imports that flow up the layers:\n" + "\n".join(sorted(upward))


def test_no_module_or_function_is_too_long() -> None:
    long_modules, long_functions = [], []
    for module, path in _modules().items():
        source = path.read_text()
        if source.count("\n") > MAX_MODULE_LINES:
            long_modules.append(f"dreamgym.{module}: {source.count(chr(10))} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long_functions.append(f"dreamgym.{module}.{node.name}: {lines} lines")
    assert not long_modules, long_modules
    assert not long_functions, long_functions
