"""The layering rule as a test: a lower layer never imports a higher one.

Every `import` and `from ... import` in `surrogate/` (at module level or inside functions)
is resolved to the package it names and checked against the table below.
"""

from __future__ import annotations

import ast
from pathlib import Path

import surrogate

# The generic base every layer may use.
BASE = {"_version", "_atomic", "_resources", "_serialization", "fields", "metrics"}
# Generic core packages and what each may import besides BASE and itself: no problem, no
# application, no model family it does not own.
CORE = {
    "operators": set(),
    "ssm": set(),
    "nde": set(),
    "solvers": {"coupling"},
    "data": set(),
    "training": {"data"},
    "coupling": set(),
    "export": set(),
}
EDGE = {"cli", "__main__", "__init__", "evaluation", "hpc", "_train", "_models", "_config"}


def _unit(module: str) -> str:
    """'surrogate.applications.ignition._pnode' -> 'applications.ignition';
    'surrogate.operators.fno' -> 'operators'."""
    parts = module.split(".")[1:]
    if not parts:
        return "__init__"
    if parts[0] == "applications" and len(parts) > 1:
        return f"applications.{parts[1]}"
    return parts[0]


def _allowed(src: str, dst: str) -> bool:
    if src == dst or dst in BASE or src in EDGE:
        return True
    if src in BASE:
        return False  # the base imports nothing of the package but itself
    if src in CORE:
        return dst in CORE[src]
    if src == "problems":
        return dst in CORE
    if src.startswith("applications."):
        return dst in CORE or dst == "problems"
    if src == "applications":
        return False
    raise AssertionError(f"module unit {src!r} is in no layer: add it to the table")


def _imports(path: Path, module: str) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names if a.name.split(".")[0] == "surrogate"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "surrogate":
                continue
            if target in ("surrogate", "surrogate.applications") or node.module is None:
                # `from . import data` / `from surrogate import x`: each name is a unit
                out += [f"{target}.{a.name}" for a in node.names]
            else:
                out.append(target)
    return out


def violations(root: Path) -> list[str]:
    bad = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).with_suffix("")
        module = ".".join(rel.parts)
        if module.endswith(".__init__"):
            module = module[: -len(".__init__")]
        src = _unit(module)
        for target in _imports(path, module):
            dst = _unit(target)
            if not _allowed(src, dst):
                bad.append(f"{path.relative_to(root.parent)}: {src} imports {target}")
    return bad


def test_no_lower_layer_imports_a_higher_one():
    root = Path(surrogate.__file__).parent
    assert violations(root) == []


def test_data_and_problems_do_not_import_each_other_and_training_knows_no_family():
    root = Path(surrogate.__file__).parent
    for unit, forbidden in (
        ("data", ("problems", "applications", "operators", "ssm", "nde")),
        ("training", ("problems", "applications", "operators", "ssm", "nde", "_models")),
    ):
        for path in (root / unit).rglob("*.py"):
            module = "surrogate." + ".".join(path.relative_to(root).with_suffix("").parts)
            for target in _imports(path, module):
                assert _unit(target) not in forbidden, f"{path}: imports {target}"


def test_the_checker_finds_a_violation(tmp_path):
    """A fake package whose core imports its applications and whose problems import an
    application is caught, with relative imports and imports inside functions."""
    pkg = tmp_path / "surrogate"
    for sub in ("training", "problems", "applications/ignition", "operators"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "training" / "_run.py").write_text(
        "def f():\n    from ..applications.ignition import PNODE\n"
    )
    (pkg / "problems" / "x.py").write_text("import surrogate.applications.ignition\n")
    (pkg / "operators" / "y.py").write_text("from ..metrics import rmse\nfrom . import z\n")
    (pkg / "applications" / "ignition" / "z.py").write_text("from ...problems import x\n")
    bad = violations(pkg)
    assert len(bad) == 2
    assert any("training imports surrogate.applications.ignition" in b for b in bad)
    assert any("problems imports surrogate.applications.ignition" in b for b in bad)
