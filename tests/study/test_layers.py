"""The three layers: ``core`` (the method) imports neither ``benchmarks`` nor ``study``,
``benchmarks`` does not import ``study``, and no module imports itself through others
(every import, also those inside functions, read with :mod:`ast`; cycles by networkx)."""
import ast
from pathlib import Path

import networkx as nx
import pytest

import autobuild_lib

PKG = Path(autobuild_lib.__file__).parent
LAYERS = ("core", "benchmarks", "study")


def _module(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    p = PKG.parent.joinpath(*name.split("."))
    return p.with_suffix(".py").is_file() or (p / "__init__.py").is_file()


def _imports(path: Path) -> set[str]:
    here = _module(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("autobuild_lib")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if not mod.startswith("autobuild_lib"):
                continue
            subs = {f"{mod}.{a.name}" for a in node.names if _is_module(f"{mod}.{a.name}")}
            found |= subs or {mod}
            if len(subs) < len(node.names):
                found.add(mod)
    return {m for m in found if m != here}


@pytest.fixture(scope="module")
def graph() -> nx.DiGraph:
    g = nx.DiGraph()
    for path in PKG.rglob("*.py"):
        g.add_node(_module(path))
        for target in _imports(path):
            # importing ``a.b.c`` runs the package ``__init__`` files too, which hold no imports here
            g.add_edge(_module(path), target)
    return g


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


@pytest.mark.parametrize("lower, upper", [("core", "benchmarks"), ("core", "study"), ("benchmarks", "study")])
def test_lower_layer_does_not_import_upper(graph, lower, upper):
    bad = sorted((a, b) for a, b in graph.edges if _layer(a) == lower and _layer(b) == upper)
    assert not bad, f"{lower} imports {upper}: {bad}"


def test_no_import_cycles(graph):
    cycles = list(nx.simple_cycles(graph))
    assert not cycles, f"import cycles: {cycles[:5]}"


def test_the_layer_check_sees_imports():
    """The check reads relative, absolute and function-level imports (else it could not fail)."""
    edges = _imports(PKG / "study" / "data.py")
    assert any(e.startswith("autobuild_lib.benchmarks") for e in edges)
    assert "autobuild_lib.core.scoring" in _imports(PKG / "core" / "training.py") | _imports(PKG / "core" / "interpret.py")
