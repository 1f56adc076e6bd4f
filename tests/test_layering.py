"""Layers one way: stbn (model, streaming algorithm, training, evaluation) imports nothing from
engines, pipeline or cluster; engines nothing from pipeline or cluster; pipeline nothing from the
cluster layer above it; none of them from bench, scripts or tests; the
engines and the pipeline nothing from the training code (test-time adaptation, stbn.adapt, loads it
when it runs). Imports inside functions count too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "stbn": ("engines", "pipeline", "cluster", "bench", "scripts", "tests"),
    "engines": ("pipeline", "cluster", "bench", "scripts", "tests"),
    "pipeline": ("cluster", "bench", "scripts", "tests"),
    "cluster": ("bench", "scripts", "tests"),
}


# modules (not whole packages) a layer may not import
FORBIDDEN_MODULES = {"engines": ("stbn.training",), "pipeline": ("stbn.training",), "cluster": ("stbn.training",)}


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def imported_packages(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layers_import_one_way(package: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) & set(FORBIDDEN[package]))
        for path in sorted((ROOT / package).rglob("*.py"))
    }
    assert {k: v for k, v in offenders.items() if v} == {}


@pytest.mark.parametrize("package", sorted(FORBIDDEN_MODULES))
def test_the_live_layers_import_no_training_code(package: str) -> None:
    banned = FORBIDDEN_MODULES[package]
    offenders = {
        str(path.relative_to(ROOT)): sorted(m for m in imported_modules(path) if m.startswith(banned))
        for path in sorted((ROOT / package).rglob("*.py"))
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_benchmarks_run_against_the_installed_packages() -> None:
    """A script's own folder comes first on sys.path: a bench/ file named like a project package
    would shadow it, and a sys.path edit would run the checkout instead of what is installed."""
    for script in sorted((ROOT / "bench").glob("*.py")):
        assert script.stem not in FORBIDDEN, f"{script.name} shadows the {script.stem} package"
        assert "sys.path.insert" not in script.read_text(), f"{script.name} edits sys.path"
