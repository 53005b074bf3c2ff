"""Import boundaries: each module imports only what its idea needs.

Checked on the source (AST), so a violation fails here before it costs
anyone a slow start-up.  To see it fail: add `import torch` to tiling.py.
"""

import ast
import importlib
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pipeline"

PURE = {"torch", "ray", "zarr", "tifffile", "fsspec", "numpy"}
RULES = {
    # module: top-level packages it must never import (at any depth of the file)
    "tiling": {"torch", "ray", "zarr", "tifffile", "fsspec"},
    "model/geometry": {"torch", "ray", "zarr", "tifffile", "fsspec"},
    "model/config": {"torch", "ray", "zarr"},
    "plan": {"torch", "ray", "zarr", "tifffile"},
    "spec": {"torch", "ray"},
    "outputspec": {"torch", "ray", "zarr", "tifffile", "fsspec", "numpy", "pipeline.io"},
    "outputkinds": {"torch", "ray", "zarr", "tifffile", "fsspec", "pipeline.io"},  # settings in, blocks out
    "manifest": {"torch", "ray", "zarr"},
    "changes": {"torch", "ray", "zarr", "tifffile", "fsspec", "pipeline.io"},  # stamps in, units out
    "io/stamps": {"torch", "ray", "tifffile"},  # listings only: never a pixel
    "io/pyramid": {"torch", "ray", "tifffile", "fsspec"},
    "io/ngff": {"torch", "ray", "tifffile", "fsspec", "numpy"},
    "errors": {"torch", "ray", "zarr", "numpy"},
    "model/unet": {"ray", "zarr", "tifffile", "fsspec", "pipeline.io"},
    "model/parts": {"ray", "zarr", "tifffile", "fsspec", "pipeline.io"},
    "model/checkpoint": {"ray", "zarr", "tifffile", "pipeline.io"},
    "predict": {"ray", "zarr", "tifffile", "pipeline.io"},
    "stages": {"ray"},
    "windows": {"torch", "ray", "zarr", "tifffile", "fsspec"},  # packing and unpacking: the model normalises
    "planner": {"ray"},
    "driver": {"ray", "torch"},
    "netpass": {"ray", "torch"},  # passes see streams of rows; pipeline.run is the Ray boundary
    "passes": {"ray", "torch", "zarr"},
    "committer": {"ray", "torch", "zarr"},  # the driver sees rows; the Ray boundary is pipeline.run
    "rows": {"torch", "ray", "zarr", "tifffile"},
    "outcome": {"torch", "ray", "zarr", "numpy"},
    # Instance geometry and merging are pure: blocks in, ids and tables out.
    "instances/merge": {"torch", "ray", "zarr", "tifffile", "fsspec", "pipeline.io"},
    "instances/fragments": {"torch", "ray", "zarr", "tifffile", "fsspec", "pipeline.io"},
    "instances/objects": {"torch", "ray", "zarr", "tifffile", "fsspec", "pipeline.io"},
    "instances/instancepass": {"torch", "ray"},
    "axes": {"torch", "ray", "zarr", "tifffile", "fsspec", "numpy"},
    "names": {"torch", "ray", "zarr", "tifffile", "fsspec", "numpy"},
    "joblock": {"torch", "ray", "zarr", "numpy"},
    "outputplace": {"torch", "ray", "zarr"},
    "verify": {"torch", "ray", "tifffile"},  # listings and metadata: never the model, never the input
    # The edge: parse, validate, call.  The CLI reaches the model and Ray only through the library.
    "cli": {"torch", "ray", "zarr", "tifffile", "fsspec", "numpy"},
    "settings": PURE,
    "yamlfile": PURE,
    "jobdoc": PURE,
    "faults": PURE,  # hook points only: the faults themselves are test code
    "atomic": {"torch", "ray", "zarr", "tifffile", "numpy"},
    "cpumemory": {"torch", "ray", "zarr", "numpy"},
    "jobrecords": {"torch", "ray", "zarr", "numpy"},
    "progress": {"torch", "ray", "zarr", "numpy"},
    "report": {"torch", "ray", "zarr"},
    "htmlreport": {"torch", "ray"},
    "preview": {"torch", "ray"},
    "evaluate": {"torch", "ray"},  # stores and masks: never the model
    "metrics": {"torch", "ray", "zarr", "tifffile", "fsspec", "pipeline.io"},
    "run": {"torch"},  # the Ray boundary moves rows; the model lives in stages and runtime
    "runtime": {"ray", "zarr", "tifffile", "fsspec"},
    "io/archive": {"torch", "ray"},
    "io/formats": {"torch", "ray"},
    "io/image": {"torch", "ray"},
    "io/blockcache": {"torch", "ray", "tifffile", "fsspec"},
    "io/maskstore": {"torch", "ray", "tifffile"},
    "io/normalize": {"torch", "ray", "zarr", "tifffile", "fsspec"},
    "model/describe": {"ray", "zarr", "tifffile", "fsspec", "pipeline.io"},
    "train/spec": {"torch", "ray", "zarr"},
    "train/augment": {"ray", "zarr", "tifffile", "fsspec", "pipeline.io"},
    "train/weights": {"ray", "zarr", "tifffile", "fsspec", "pipeline.io"},
    "train/data": {"ray"},
    "train/loop": {"ray"},  # one process's loop; train/distributed launches it on Ray
    "train/distributed": {"zarr", "tifffile"},
}
RAY_ALLOWED = {"run", "train/distributed"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def violations(module: str, forbidden: set[str]) -> list[str]:
    found = imported_modules(PACKAGE / f"{module}.py")
    return sorted(n for n in found for f in forbidden if n == f or n.startswith(f + "."))


@pytest.mark.parametrize("module", sorted(RULES))
def test_module_respects_its_import_boundary(module):
    assert violations(module, RULES[module]) == []


def test_every_module_has_an_import_rule():
    assert sorted(code_modules() - set(RULES)) == [], "give these modules a rule in RULES"


def test_only_the_runner_and_the_training_launcher_import_ray():
    importers = sorted(
        str(p.relative_to(PACKAGE).with_suffix(""))
        for p in PACKAGE.rglob("*.py")
        if any(n == "ray" or n.startswith("ray.") for n in imported_modules(p))
    )
    assert set(importers) <= RAY_ALLOWED, importers


def test_the_boundary_check_can_fail(tmp_path, monkeypatch):
    fake = tmp_path / "tiling.py"
    fake.write_text("import numpy\nimport torch\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path)
    assert violations("tiling", RULES["tiling"]) == ["torch"]


def test_cli_help_imports_no_torch_and_answers_quickly():
    code = "import sys, pipeline.cli; pipeline.cli.main(['--help'], standalone_mode=False); print(sorted(m for m in ('torch', 'ray', 'zarr') if m in sys.modules))"
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    elapsed = time.perf_counter() - start
    assert out.strip().endswith("[]"), out
    assert elapsed < 5, elapsed  # generous: catches a torch import (seconds), not jitter


def documented_modules() -> set[str]:
    """Modules named in docs/architecture.md's module table (`train/*` stands for the folder's modules)."""
    text = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    table = text[text.index("## Modules") : text.index("## Invariants")]
    names = set()
    for line in table.splitlines():
        if line.startswith("| `"):
            names |= set(re.findall(r"`([\w/*]+)`", line.split("|")[1]))
    return names


def code_modules() -> set[str]:
    return {
        str(p.relative_to(PACKAGE).with_suffix(""))
        for p in PACKAGE.rglob("*.py")
        if p.name != "__init__.py" and p.name != "__main__.py"
    }


def test_the_architecture_page_names_every_module_and_no_other():
    documented = documented_modules()
    folders = {name.removesuffix("/*") for name in documented if name.endswith("/*")}
    covered = {m for m in code_modules() if m in documented or m.rsplit("/", 1)[0] in folders}
    assert sorted(code_modules() - covered) == [], "modules missing from docs/architecture.md"
    named = {m for m in documented if not m.endswith("/*")}
    assert sorted(named - code_modules()) == [], "docs/architecture.md names modules that do not exist"


def diagram_names() -> set[str]:
    """Dotted names in docs/architecture.md's data-flow diagram that start with one of our modules."""
    text = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    start = text.index("```mermaid")
    diagram = text[start : text.index("```", start + 3)]
    ours = {p.stem for p in PACKAGE.iterdir() if p.suffix == ".py" or p.is_dir()}
    found = re.findall(r"(?<![\w/-])[a-z_]+(?:\.[A-Za-z_]+)+", diagram)
    return {n for n in found if n.split(".")[0] in ours and n.rsplit(".", 1)[1] not in ("json", "html", "yaml")}


def resolves(name: str) -> bool:
    """Whether `name` (below pipeline) is a module, or an attribute of one, in the code."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found = importlib.import_module("pipeline." + ".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            if not hasattr(found, attr):
                return False
            found = getattr(found, attr)
        return True
    return False


def test_the_data_flow_diagram_names_only_what_the_code_has():
    names = diagram_names()
    assert len(names) >= 10, names  # the parse found the diagram
    assert sorted(n for n in names if not resolves(n)) == [], "docs/architecture.md's diagram names these"
    assert not resolves("driver.prepare") and not resolves("nowhere.at_all")  # the check can fail
