"""The house's floors, held by reading every module's imports (the code is not run):
clients (ground) → server (the kit) → authority, discharger, verifier (the services) → cli (top).
A module imports only from its own floor or below; the two services import nothing of each
other; only storage backends speak SQLite."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FLOOR = {"clients": 0, "server": 1, "authority": 2, "discharger": 2, "verifier": 2, "cli": 3}
SQLITE_BACKENDS = {"server/sqlite.py", "authority/store/sqlite.py", "discharger/store/sqlite.py"}


def modules() -> list[Path]:
    return sorted(p for package in FLOOR for p in (ROOT / package).rglob("*.py"))


def imported(path: Path) -> set[str]:
    """Every module name the file imports, at its top or inside functions."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_down(path):
    package = path.relative_to(ROOT).parts[0]
    for name in imported(path):
        top = name.split(".")[0]
        if top not in FLOOR:
            continue
        assert FLOOR[top] <= FLOOR[package], f"{path.relative_to(ROOT)} imports {name}, a floor above it"
        assert top == package or FLOOR[top] < FLOOR[package], \
            f"{path.relative_to(ROOT)} imports {name}: the services import nothing of each other"


def test_only_storage_backends_speak_sqlite():
    speaking = {str(p.relative_to(ROOT)) for p in modules() if "sqlite3" in imported(p)}
    assert speaking <= SQLITE_BACKENDS, sorted(speaking - SQLITE_BACKENDS)


def test_the_sable_entry_point_is_the_top_floor():
    text = (ROOT / "pyproject.toml").read_text()
    assert 'sable = "cli.main:main"' in text


def test_storage_backends_import_the_seam_never_each_other():
    """`server.store` is the seam (StoreError, open_backend, the shared Protocol); a SQLite
    backend never imports a PostgreSQL one, nor the other way round."""
    backends = {"sqlite": ["server/sqlite.py", "authority/store/sqlite.py", "discharger/store/sqlite.py"],
                "postgres": ["server/postgres.py", "authority/store/postgres.py", "discharger/store/postgres.py"]}
    for kind, other in (("sqlite", "postgres"), ("postgres", "sqlite")):
        for path in backends[kind]:
            names = imported(ROOT / path)
            wrong = {n for n in names if n.split(".")[-1] == other or n == f"server.{other}"}
            assert not wrong, f"{path} imports {sorted(wrong)}"
