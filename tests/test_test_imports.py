"""The tests' own layout: a test module never imports another (shared helpers live in tests/helpers.py,
tests/browser.py, tests/vdev.py, tests/loopback.py), so running one test file never collects or runs another's code."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def imported_test_modules(path: Path) -> list[str]:
    """The test modules of tests/ that ``path`` imports (at any depth, ``tests.test_x`` or ``test_x``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
        for name in names:
            module = name.removeprefix("tests.").split(".")[0]
            if module.startswith("test_") and (TESTS / f"{module}.py").exists():
                found.append(module)
    return found


def test_no_test_module_imports_another():
    offenders = {p.name: imported_test_modules(p) for p in sorted(TESTS.glob("*.py"))}
    assert {name: mods for name, mods in offenders.items() if mods} == {}


def test_the_check_sees_both_spellings(tmp_path: Path):
    probe = tmp_path / "probe.py"
    probe.write_text("from tests.test_gate import x\nimport test_soak\ndef f():\n    from test_cli import y\n")
    assert imported_test_modules(probe) == ["test_gate", "test_soak", "test_cli"]
