"""The package's layers: every import (function-local ones included, read with ``ast``) points to the
importing module's own layer or a lower one, no modules import each other in a cycle, and the numpy-only
simulation path stays clear of torch and of the real-trial package."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ohgw_bench"

# Bottom to top: a module may import modules of its own layer and of the layers below it. A module's
# layer is that of the longest prefix below that names it; the package's top-level modules are leaves.
LAYERS: dict[str, int] = {
    "ohgw_bench": 0,                  # leaves: space seeding tasks config provenance store textfmt atomic
    "ohgw_bench.warmstart": 1,        # warm-start rules, the oracle protocol, calibration
    "ohgw_bench.trial": 2,            # real trials: the only torch users
    "ohgw_bench.surrogate": 3,        # collect real runs, the learned model, its fidelity
    "ohgw_bench.sweeps": 4,           # schedulers, replicates and the store's units
    "ohgw_bench.sweeps.executors": 5,  # run what they are given: no backend below them
    "ohgw_bench.sweeps.backends": 6,   # one replicate: real, persistent, simulated
    "ohgw_bench.sweeps.sweep": 7,      # the driver: hands backends' functions to executors
    "ohgw_bench.analysis": 8,          # statistics, frontier, report, verify
    "ohgw_bench.cli": 9,
    "ohgw_bench.examples": 9,          # user warm-start rules may use anything
}
LEAVES = ("space", "seeding", "tasks", "config", "provenance", "store", "textfmt", "atomic")


# ----------------------------------------------------------------------------- the checks
def modules(package: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module and package of ``package``."""
    out = {}
    for f in sorted(package.rglob("*.py")):
        parts = list(f.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules that module ``name`` imports, anywhere in its body."""
    pkg = name.split(".")[0]
    here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == pkg}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(here[: len(here) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base.split(".")[0] != pkg:
                continue
            for a in node.names:  # `from pkg import module` names a module, `from module import x` an object
                out.add(f"{base}.{a.name}" if f"{base}.{a.name}" in known else base)
    return out - {name}


def graph(package: Path) -> dict[str, set[str]]:
    known = modules(package)
    return {m: imports(m, p, known) for m, p in known.items()}


def layer(mod: str, layers: dict[str, int]) -> int | None:
    hits = [p for p in layers if mod == p or mod.startswith(p + ".")]
    return layers[max(hits, key=len)] if hits else None


def upward_imports(g: dict[str, set[str]], layers: dict[str, int]) -> list[str]:
    problems = []
    for m, deps in sorted(g.items()):
        lm = layer(m, layers)
        if lm is None:
            problems.append(f"{m} has no layer in LAYERS")
            continue
        for d in sorted(deps):
            ld = layer(d, layers)
            if ld is not None and ld > lm:
                problems.append(f"{m} (layer {lm}) imports {d} (layer {ld})")
    return problems


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


# ----------------------------------------------------------------------------- the package
def test_every_import_points_to_the_same_or_a_lower_layer():
    assert upward_imports(graph(PACKAGE), LAYERS) == []


def test_no_import_cycle():
    assert cycles(graph(PACKAGE)) == []


def test_the_checks_catch_an_upward_import_and_a_cycle(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "low").mkdir(parents=True)
    for f, text in {"__init__.py": "", "a.py": "def f():\n    from .low import b\n",
                    "low/__init__.py": "", "low/b.py": "def g():\n    from .. import a\n    from pkg.low import c\n",
                    "low/c.py": "from . import b\n"}.items():
        (pkg / f).write_text(text)
    g = graph(pkg)
    assert g["pkg.low.b"] == {"pkg.a", "pkg.low.c"}
    assert upward_imports(g, {"pkg": 1, "pkg.low": 0}) == ["pkg.low.b (layer 0) imports pkg.a (layer 1)"]
    assert cycles(g) == [["pkg.a", "pkg.low.b", "pkg.low.c"]]


def _loaded_after(code: str) -> list[str]:
    """Modules of torch, Syne Tune and the real-trial package loaded after running ``code`` in a fresh
    interpreter."""
    probe = code + ("\nimport json, sys\nprint(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
                    "('torch', 'torchvision', 'syne_tune') or m.startswith('ohgw_bench.trial'))))")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_leaves_import_neither_torch_nor_syne_tune():
    assert _loaded_after("\n".join(f"import ohgw_bench.{m}" for m in LEAVES)) == []


def test_simulated_backend_imports_neither_torch_nor_the_trial_package():
    assert _loaded_after("import ohgw_bench.sweeps.backends.simulated") == []


def test_a_simulated_replicate_runs_without_the_trial_package(synthetic_surrogate_dir):
    """Syne Tune's legacy schedulers import torch themselves; the project's own simulation path must not
    load any real-trial module."""
    seed = 0
    cfg = dict(name="layout", task="cifar10-mini", backend="surrogate", surrogate=str(synthetic_surrogate_dir),
               variants={"baseline": "none", "ohgw": "hypergradient:eta=1e-3,steps=1,rule=raw"}, budget_s=30,
               seeds=f"{seed}:{seed + 1}")
    code = ("from ohgw_bench.config import SweepConfig\nfrom ohgw_bench.sweeps.backends.simulated import run_chunk\n"
            f"cfg = SweepConfig(**{cfg!r}).model_dump(mode='json')\n"
            f"assert run_chunk(cfg, [('asha', 'baseline', {seed}), ('asha', 'ohgw', {seed})])\n")
    assert not [m for m in _loaded_after(code) if m.startswith("ohgw_bench.trial")]
