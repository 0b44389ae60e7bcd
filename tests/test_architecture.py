"""The import rules of docs/architecture.md, checked from the code's own imports.

Every module of the package is parsed (nothing is imported); each ``import`` and
``from ... import`` -- at module level or inside a function -- is resolved to the
cup4soil module or the third-party distribution it names.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cup4soil"

#: Stage -> the stages (and infrastructure) it may import. Anything else is forbidden.
#: Infrastructure: errors (the exception hierarchy), _compat (private imports of
#: dependencies) and _limits (the size guard every stage that plans work applies) import
#: no stage.
INFRA = {"errors", "_compat", "_version", "_xrutil", "_limits"}
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "_compat": set(),
    "_version": set(),
    "_xrutil": set(),
    "_limits": set(),
    "runtime": set(),
    "sources": set(),
    "cube": {"sources", "runtime"},  # runtime: the captured GDAL environment
    "scmap": {"cube", "sources", "covariates", "runtime"},  # land cover (WorldCover) is an input
    "covariates": {"cube", "sources"},
    "models": set(),
    "soilmap": {"models", "covariates"},
    "products": {"runtime"},
    "tiling": {"sources", "cube", "scmap", "covariates", "products", "runtime"},
    "openeo": {"sources", "cube", "scmap", "products"},
    "sample": {"sources"},
    "cli": {"sources", "cube", "scmap", "covariates", "models", "soilmap", "products",
            "runtime", "tiling", "openeo", "sample", "__init__"},
    "__init__": {"sources", "cube", "scmap", "covariates", "models", "soilmap", "products",
                 "runtime", "tiling", "openeo", "sample"},
    "__main__": {"cli"},
}
#: Stages that know no storage: no Zarr, no fsspec/s3fs, no products.
NO_STORAGE = {"scmap", "models", "soilmap", "sources", "cube", "covariates"}
STORAGE_LIBS = {"zarr", "fsspec", "s3fs"}
#: Stages that know no science (search and metadata): no array or model libraries.
NO_SCIENCE = {"sources"}
SCIENCE_LIBS = {"numba", "sklearn", "quantile_forest", "scipy"}
#: Kernel modules: pure array code.
KERNEL_LIBS = {"numpy", "scipy", "numba", "math", "__future__", "collections", "dataclasses",
               "typing", "functools", "itertools"}


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _stage(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def _is_kernel(path: Path) -> bool:
    return path.name in {"kernels.py", "forest.py"} or path.stem.endswith("_kernels")


def _imports(path: Path) -> list[tuple[str, int]]:
    """Fully qualified module names imported by ``path`` (cup4soil.x.y or a distribution)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    package = list(rel.parts[:-1])  # the folder holding the module (also for __init__)
    out: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                mod = ".".join([*base, *([node.module] if node.module else [])])
                if node.module is None:  # from . import a, b: each name may be a module
                    out += [(f"{mod}.{alias.name}", node.lineno) for alias in node.names]
                    continue
                out.append((mod, node.lineno))
            else:
                out.append((node.module or "", node.lineno))
    return out


def _target_stage(name: str) -> str | None:
    parts = name.split(".")
    if parts[0] != "cup4soil":
        return None
    if len(parts) == 1:
        return "__init__"
    first = parts[1]
    # ``from cup4soil import search``: a name the package re-exports, not a module of its own.
    if not ((PACKAGE / first).is_dir() or (PACKAGE / f"{first}.py").is_file()):
        return "__init__"
    return first


def _violations() -> list[str]:
    found = []
    for path in _modules():
        stage = _stage(path)
        rel = path.relative_to(PACKAGE.parent)
        allowed = ALLOWED.get(stage)
        if allowed is None:
            found.append(f"{rel}: stage {stage!r} is not in docs/architecture.md's table")
            continue
        for name, line in _imports(path):
            target = _target_stage(name)
            top = name.split(".")[0]
            if target is not None:
                if target == stage or target in INFRA:
                    # Infrastructure imports no other infrastructure but the errors.
                    if (stage in INFRA and target != stage and stage != "_compat"
                            and target != "errors"):
                        found.append(f"{rel}:{line} infrastructure imports {name}")
                    continue
                if target not in allowed and not (stage == "cli" and target == "__init__"):
                    found.append(f"{rel}:{line} {stage} may not import {name}")
            else:
                if stage in NO_STORAGE and top in STORAGE_LIBS:
                    found.append(f"{rel}:{line} {stage} knows no storage but imports {name}")
                if stage in NO_SCIENCE and top in SCIENCE_LIBS:
                    found.append(f"{rel}:{line} {stage} knows no science but imports {name}")
            if _is_kernel(path):
                if target is not None and target not in INFRA and target != stage:
                    found.append(f"{rel}:{line} kernel imports {name}")
                if target is None and top not in KERNEL_LIBS:
                    found.append(f"{rel}:{line} kernel imports {name} (array libraries only)")
    return found


def test_imports_follow_the_architecture() -> None:
    assert _violations() == []


def test_private_dependency_imports_live_in_compat() -> None:
    bad = []
    for path in _modules():
        if path.name == "_compat.py":
            continue
        for name, line in _imports(path):
            parts = name.split(".")
            if parts[0] != "cup4soil" and any(p.startswith("_") and p != "__future__"
                                              for p in parts[1:]):
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}")
    assert bad == []


def test_no_stage_imports_the_cli() -> None:
    bad = [
        f"{path.relative_to(PACKAGE.parent)}:{line}"
        for path in _modules() if _stage(path) not in {"cli", "__main__"}
        for name, line in _imports(path) if _target_stage(name) == "cli"
    ]
    assert bad == []


@pytest.mark.parametrize("source, expected", [
    ("from ..products import store\n", "scmap may not import cup4soil.products"),
    ("import zarr\n", "scmap knows no storage but imports zarr"),
    ("from ..cli import main\n", "scmap may not import cup4soil.cli"),
])
def test_the_rules_catch_a_forbidden_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            source: str, expected: str) -> None:
    # A planted module in a copy of the tree: the checker must report it.
    import shutil

    copy = tmp_path / "cup4soil"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "scmap" / "planted.py").write_text(source)
    monkeypatch.setattr(__import__(__name__), "PACKAGE", copy)
    assert any(expected in v for v in _violations())
