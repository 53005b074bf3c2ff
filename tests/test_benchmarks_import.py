"""Every benchmark module imports: a benchmark runs on request only, so nothing else would notice one broken."""

import importlib
from pathlib import Path

import pytest

MODULES = sorted(p.stem for p in (Path(__file__).parents[1] / "benchmarks").glob("*.py") if p.stem != "__init__")


@pytest.mark.parametrize("module", MODULES)
def test_the_benchmark_module_imports_and_says_how_to_run_it(module):
    loaded = importlib.import_module(f"benchmarks.{module}")
    if hasattr(loaded, "main"):  # an entry point, not a helper module
        assert f"python -m benchmarks.{module}" in (loaded.__doc__ or "")
