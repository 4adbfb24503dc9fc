"""Every third-party module the package imports is a declared distribution in pyproject.toml.

Imports are read from the source with ``ast`` (function-local imports included), mapped to their
distributions with ``importlib.metadata.packages_distributions()``, and checked against
``[project].dependencies``; modules of an optional feature count against that feature's extra.
"""
from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ohgw_bench"
# module -> the extra that must declare it (imported only by the feature that needs it)
OPTIONAL = {"ray": "ray"}


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _req_name(req: str) -> str:
    return _canon(re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req).group(1))


def _declared() -> tuple[set[str], dict[str, set[str]]]:
    try:
        import tomllib
    except ImportError:   # Python 3.10: the installed metadata says the same as pyproject.toml
        from importlib.metadata import requires
        core, extras = set(), {}
        for r in requires("ohgw-bench") or []:
            m = re.search(r"extra\s*==\s*['\"]([^'\"]+)['\"]", r)
            (extras.setdefault(m.group(1), set()) if m else core).add(_req_name(r))
        return core, extras
    proj = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {_req_name(r) for r in proj.get("dependencies", [])}
    extras = {k: {_req_name(r) for r in v} for k, v in proj.get("optional-dependencies", {}).items()}
    return core, extras


def imported_modules(package: Path) -> dict[str, set[str]]:
    """Top-level module name -> the files that import it (absolute imports only)."""
    out: dict[str, set[str]] = {}
    for f in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text(), filename=str(f))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for n in names:
                out.setdefault(n.split(".")[0], set()).add(str(f.relative_to(package.parent)))
    return out


def undeclared(package: Path, core: set[str], extras: dict[str, set[str]]) -> list[str]:
    dists = packages_distributions()
    problems = []
    for mod, files in sorted(imported_modules(package).items()):
        if mod in sys.stdlib_module_names or mod == package.name:
            continue
        provided = {_canon(d) for d in dists.get(mod, [])}
        if not provided:
            problems.append(f"{mod} (imported by {sorted(files)}) is not installed by any distribution")
            continue
        allowed = extras.get(OPTIONAL[mod], set()) if mod in OPTIONAL else core
        if not provided & allowed:
            where = f"extra {OPTIONAL[mod]!r}" if mod in OPTIONAL else "[project].dependencies"
            problems.append(f"{mod} (from {sorted(provided)}, imported by {sorted(files)}) is not in {where}")
    return problems


def test_every_imported_module_is_declared():
    core, extras = _declared()
    assert undeclared(PACKAGE, core, extras) == []


def test_the_check_catches_a_missing_declaration():
    core, extras = _declared()
    assert "pydantic" in core
    problems = undeclared(PACKAGE, core - {"pydantic"}, extras)
    assert len(problems) == 1 and problems[0].startswith("pydantic ")
    problems = undeclared(PACKAGE, core, {**extras, "ray": set()})
    assert [p.split()[0] for p in problems] == ["ray"]


def test_optional_feature_is_not_a_core_import(tmp_path):
    """An optional module imported outside its extra's declaration is reported."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "m.py").write_text("def f():\n    import ray\n")
    pytest.importorskip("ray")
    assert undeclared(pkg, {"numpy"}, {"ray": {"ray"}}) == []
    assert len(undeclared(pkg, {"ray"}, {"ray": set()})) == 1
