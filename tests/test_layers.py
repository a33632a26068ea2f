"""Dependencies point one way: runtime <- tuning, benchmark; runtime <- bot; tests use them all, and no
product module imports tests. Checked statically.

Every module of every package is parsed (ast) and each import, including function-local ones and
relative ones, is resolved to the top-level package it names.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("runtime", "tuning", "benchmark", "bot")
# package -> project packages it must never import; no product module imports the tests (not packaged).
FORBIDDEN = {
    "runtime": {"tuning", "benchmark", "bot", "tests"},
    "tuning": {"benchmark", "bot", "tests"},
    "bot": {"tuning", "benchmark", "tests"},
    "benchmark": {"bot", "tests"},
}


def imported_modules(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in a file, wherever it appears."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package_parts = module.split(".")[:-1] if path.name != "__init__.py" else module.split(".")
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_parts[: len(package_parts) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((node.lineno, name))
            # `from package import submodule` names the submodule too
            found += [(node.lineno, f"{name}.{alias.name}") for alias in node.names]
    return found


def _modules(package: str):
    for path in sorted((ROOT / package).rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts[:-1]) if rel.name == "__init__" else list(rel.parts)
        yield path, ".".join(parts)


def violations(package: str) -> list[str]:
    bad = []
    for path, module in _modules(package):
        for line, name in imported_modules(path, module):
            if name.split(".")[0] in FORBIDDEN[package]:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    return bad


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_point_one_way(package):
    assert list(_modules(package)), f"no modules found in {package}/"
    assert violations(package) == []


def test_the_scan_sees_local_and_relative_imports(tmp_path):
    """The checker itself: a function-local import and a relative import are both found."""
    pkg = tmp_path / "runtime" / "sub"
    pkg.mkdir(parents=True)
    source = pkg / "mod.py"
    source.write_text("def f():\n    import tuning.tune\n    from ..x import y\n    from . import z\n")
    names = [name for _, name in imported_modules(source, "runtime.sub.mod")]
    assert "tuning.tune" in names and "runtime.x" in names and "runtime.sub.z" in names


def test_engine_classes_live_in_the_runtime():
    from runtime.engines import ENGINES

    assert all(info.target.startswith("runtime.") for info in ENGINES.values())


def test_cli_verbs_of_other_packages_come_from_entry_points():
    """runtime.cli lists only its own verbs; tuning's arrive through the selfie_tvm.commands group."""
    from runtime.cli import BUILTIN, commands

    found = commands()
    assert set(BUILTIN) == {"segment", "hair", "background", "models"}
    assert found["compile"].__name__ == "tuning.cli.compile" and found["tune"].__name__ == "tuning.cli.tune"
    assert found["records"].__name__ == "tuning.cli.records"
