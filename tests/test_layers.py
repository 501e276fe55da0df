"""The layers import one way: base <- ingest <- schemas -> populate (core) -> export, and the app layer on top.

- base: ``brainobs`` itself, settings, database (the connection, so DataJoint), checksums, partials; imports
  no other brainobs layer.
- ingest and populate (the processing core) import no DataJoint and no schemas; the core may read raw files
  through ingest.
- export writes files from plain data bundles: no DataJoint, no schemas (collecting a bundle from the tables is
  ``brainobs.schemas.collect``).
- app: every other module of ``brainobs/`` (cli, api, pipeline, worker, publish, pages, ...); nothing below imports it.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FOLDERS = {"brainobs": "brainobs", "schemas": "schemas", "populate": "populate", "ingest": "ingest", "export": "export"}
BASE = {"brainobs", "brainobs.settings", "brainobs.database", "brainobs.checksums", "brainobs.partials"}
LOWER = ("schemas", "populate", "ingest", "export")

# importer layer -> layers it must not import
FORBIDDEN = {
    "base": {"schemas", "populate", "ingest", "export", "app"},
    "ingest": {"datajoint", "schemas", "populate", "export", "app"},
    "populate": {"datajoint", "schemas", "export", "app"},
    "export": {"datajoint", "schemas", "app"},
    "schemas": {"app"},
}


def layer_of(module: str) -> str | None:
    """The layer of an imported module name, or None for third-party modules other than DataJoint."""
    if module == "datajoint" or module.startswith("datajoint."):
        return "datajoint"
    if module in BASE:
        return "base"
    for layer in LOWER:
        prefix = f"brainobs.{layer}"
        if module == prefix or module.startswith(prefix + "."):
            return layer
    if module.startswith("brainobs."):
        return "app"
    return None


def module_name(path: Path) -> str:
    relative = path.relative_to(REPO)
    folder, *rest = relative.with_suffix("").parts
    parts = ["brainobs"] + ([] if folder == "brainobs" else [folder]) + [p for p in rest if p != "__init__"]
    return ".".join(parts)


def _is_module(name: str) -> bool:
    """Whether ``brainobs.<name>`` is a module or package rather than a name defined in ``brainobs/__init__.py``."""
    return name in LOWER or (REPO / "brainobs" / f"{name}.py").exists() or (REPO / "brainobs" / name).is_dir()


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every absolute import, including ``from brainobs import api`` as ``brainobs.api``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            if node.module == "brainobs":  # from brainobs import api: the module, not the package
                found += [(node.lineno, f"brainobs.{alias.name}") for alias in node.names if _is_module(alias.name)]
    return found


def wrong_way_imports() -> list[str]:
    wrong = []
    for folder in FOLDERS:
        for path in sorted((REPO / folder).rglob("*.py")):
            importer = layer_of(module_name(path))
            for line, module in imported_modules(path):
                target = layer_of(module)
                if target is not None and target in FORBIDDEN.get(importer, set()):
                    wrong.append(f"{path.relative_to(REPO)}:{line} ({importer}) imports {module} ({target})")
    return wrong


def test_layers_import_one_way():
    assert wrong_way_imports() == []


@pytest.mark.parametrize(
    ("module", "layer"),
    [
        ("brainobs.settings", "base"),
        ("brainobs.cli", "app"),
        ("brainobs.worker.queue", "app"),
        ("brainobs.schemas.collect", "schemas"),
        ("brainobs.populate.ophys.dff", "populate"),
        ("datajoint.jobs", "datajoint"),
        ("numpy", None),
    ],
)
def test_layer_of_names_each_layer(module, layer):
    assert layer_of(module) == layer


def test_a_wrong_way_import_is_found(tmp_path, monkeypatch):
    """The rule is live: an export module that reads a table is reported with its file and line."""
    export = tmp_path / "export"
    export.mkdir()
    (export / "reads_tables.py").write_text("import numpy\nfrom brainobs.schemas.ophys import Segmentation\n")
    for folder in FOLDERS:
        if folder != "export":
            (tmp_path / folder).mkdir()
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    assert wrong_way_imports() == ["export/reads_tables.py:2 (export) imports brainobs.schemas.ophys (schemas)"]
