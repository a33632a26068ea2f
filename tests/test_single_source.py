"""Facts defined once: engine names live in runtime/engines/__init__.py and the default model in the
registry (original_model/registry.toml); the rest of the code imports them instead of spelling them."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from runtime.acquire import twin_of
from runtime.engines import ENGINE_NAMES
from runtime.registry import registry

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("runtime", "tuning", "benchmark", "bot")
HOME = ROOT / "runtime" / "engines" / "__init__.py"
# Files still spelling these facts whose fixes are on other branches of issue 17. Each entry must still
# need its exemption (the test says when one can go), so the list can only shrink.
PENDING: set[str] = set()


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def spelled_facts(source: str, engines: set[str], models: set[str]) -> list[str]:
    """String literals (not docstrings) that are an engine name, a list of them, an engine name built
    from a `tvm-` prefix, or the default model's (or its twin's) name."""
    tree = ast.parse(source)
    docstrings = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            tokens = [t for t in re.split(r"[,\s]+", node.value) if t]
            if tokens and all(t in engines for t in tokens):
                found.append(f"line {node.lineno}: engine name {node.value!r}")
            elif node.value in models:
                found.append(f"line {node.lineno}: model name {node.value!r}")
        elif isinstance(node, ast.JoinedStr):
            parts = [v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str)]
            if any(p.endswith("tvm-") for p in parts):
                found.append(f"line {node.lineno}: engine name built from 'tvm-'")
    return found


def _facts() -> tuple[set[str], set[str]]:
    default = registry().default
    twin = twin_of(default)
    return set(ENGINE_NAMES), {default, *([twin.name] if twin else [])}


def test_engine_names_and_the_default_model_are_spelled_in_one_place():
    engines, models = _facts()
    offenders, stale = {}, []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == HOME:
                continue
            name = path.relative_to(ROOT).as_posix()
            found = spelled_facts(path.read_text(), engines, models)
            if found and name not in PENDING:
                offenders[name] = found
            elif not found and name in PENDING:
                stale.append(name)
    assert not offenders, ("import engine names from runtime.engines (LITERT, TVM_DEFAULT, TVM_TUNED, tvm_engine) "
                           f"and the default model from the registry (runtime.acquire.AUTO): {offenders}")
    assert not stale, f"these no longer spell engine or model names: remove them from PENDING: {stale}"


def test_the_scan_finds_what_it_looks_for():
    engines, models = _facts()
    default = registry().default
    source = f'''"""litert is fine in a docstring."""
ENGINE = "litert"
ENGINES = "tvm-tuned,litert"
KIND = f"tvm-{{kind}}"
MODEL = "{default}"
HELP = "e.g. litert or tvm-tuned"
'''
    assert [f.split(":")[0] for f in spelled_facts(source, engines, models)] == [
        "line 2", "line 3", "line 4", "line 5"]


def test_every_library_kind_has_its_engine():
    from runtime.artifacts import KINDS
    from runtime.engines import ENGINES, tvm_engine

    assert {kind: ENGINES[tvm_engine(kind)].target.rsplit(":", 1)[1] for kind in KINDS} == {
        "default": "TVMDefaultEngine", "tuned": "TVMTunedEngine"}
    with pytest.raises(ValueError, match="kind must be one of"):
        tvm_engine("fast")
