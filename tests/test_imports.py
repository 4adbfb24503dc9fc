"""Every module imports (catches syntax errors and missing dependencies in modules no other test touches)."""
import importlib
import pkgutil

import pytest

import ohgw_bench

MODULES = sorted(m.name for m in pkgutil.walk_packages(ohgw_bench.__path__, "ohgw_bench."))


@pytest.mark.parametrize("name", MODULES)
def test_import(name):
    if name == "ohgw_bench.sweeps.executors.ray":
        pytest.importorskip("ray")
    importlib.import_module(name)
