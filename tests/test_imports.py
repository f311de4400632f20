"""Imports run one way: no import cycles inside ``models``, ``build_flows`` and ``hw`` (imports inside
functions count too), no module-level import below a definition (the way to hide a cycle), and
``build_flows``' layers: CLI -> pipeline -> deploy -> backend -> shared modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "build_flows", "hw")

#: build_flows' layers, highest first: a module imports from its own layer or a lower one
LAYERS = [
    ("cli", ("build_flows.build", "build_flows.bench", "build_flows.explore",
             "build_flows.streamline_check")),
    ("pipeline", ("build_flows.pipeline",)),
    ("deploy", ("build_flows.deploy",)),
    ("backend", ("build_flows.backend",)),
    ("shared", ("build_flows",)),
]


def modules(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every module of ``package`` under ``root``."""
    out = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of ``known`` that module ``name`` imports, anywhere in its body."""
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package
                pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                pkg = pkg[:len(pkg) - node.level + 1]
                base = ".".join([*pkg, base] if base else pkg)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                       for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in known and t != name}
    return found


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    known = modules(root, package)
    return {name: imports(name, path, known) for name, path in known.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def late_imports(path: Path) -> list[str]:
    """Module-level imports that come after a function or class definition."""
    tree = ast.parse(path.read_text(), str(path))
    seen_def, late = False, []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            seen_def = True
        elif seen_def and isinstance(node, (ast.Import, ast.ImportFrom)):
            late.append(f"{path.name}:{node.lineno}")
    return late


def layer(module: str) -> int:
    return next(i for i, (_, prefixes) in enumerate(LAYERS)
                if any(module == p or module.startswith(p + ".") for p in prefixes))


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycles(package: str) -> None:
    found = cycles(import_graph(REPO, package))
    assert not found, f"import cycles in {package}: {found}"


@pytest.mark.parametrize("package", PACKAGES)
def test_no_imports_below_definitions(package: str) -> None:
    late = [hit for path in modules(REPO, package).values() for hit in late_imports(path)]
    assert not late, f"module-level imports after a definition: {late}"


def test_build_flows_layers() -> None:
    """CLI -> pipeline -> deploy -> backend -> shared modules (checks, boards, finn_env, ...)."""
    graph = import_graph(REPO, "build_flows")
    up = [f"{m} ({LAYERS[layer(m)][0]}) imports {t} ({LAYERS[layer(t)][0]})"
          for m, targets in graph.items() for t in sorted(targets)
          if layer(t) < layer(m)]
    assert not up, "imports against the layering:\n" + "\n".join(up)
    assert {"build_flows.pipeline", "build_flows.backend.mapping"} <= set(graph)


def test_checks_catch_a_synthetic_cycle(tmp_path: Path) -> None:
    """The checks can fail: a cycle through an import inside a function, an import at the bottom
    of a module, and a relative import, in a small package written here."""
    pkg = tmp_path / "toy"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from toy import b\n\n\ndef f():\n    return b.g()\n")
    (pkg / "b.py").write_text("def g():\n    from toy.sub import c\n    return c.h()\n")
    (pkg / "sub" / "c.py").write_text("def h():\n    return a.f\n\n\nfrom .. import a\n")
    (pkg / "d.py").write_text("import toy.a\n")
    graph = import_graph(tmp_path, "toy")
    assert graph["toy.sub.c"] == {"toy.a"} and graph["toy.d"] == {"toy.a"}
    assert cycles(graph) == [["toy.a", "toy.b", "toy.sub.c"]]
    assert late_imports(pkg / "sub" / "c.py") == ["c.py:5"]
    (pkg / "sub" / "c.py").write_text("def h():\n    return 1\n")
    assert cycles(import_graph(tmp_path, "toy")) == []
