"""Repository rules: package layering, and an idempotent, quiet `make setup`."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: package -> top-level modules it must never import
FORBIDDEN = {
    "models": {"finn", "build_flows", "hw"},
    "build_flows": {"models"},
    "hw": {"torch", "brevitas", "finn", "models", "build_flows"},
}


#: the modules of a forbidden package that a package may import: ``hw.contract``, the
#: commands' option checks (standard library only), shared by every command, and ``hw.jobs``,
#: the sweeps' executor on Ray (standard library and Ray), shared by models.benchmark and
#: build_flows.explore
SHARED = {"hw.contract", "hw.jobs"}


def imported_modules(path: Path) -> set[str]:
    """The absolute module names ``path`` imports (``from a.b import c``: ``a.b``)."""
    tree = ast.parse(path.read_text(), str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def imported_roots(path: Path) -> set[str]:
    return {name.split(".")[0] for name in imported_modules(path)}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layering(package: str) -> None:
    bad = []
    for path in sorted((REPO / package).rglob("*.py")):
        hits = {n.split(".")[0] for n in imported_modules(path) - SHARED} & FORBIDDEN[package]
        if hits:
            bad.append(f"{path.relative_to(REPO)} imports {sorted(hits)}")
    assert not bad, "\n".join(bad)


def test_shipped_driver_imports_only_what_a_board_has() -> None:
    """The files a deployment package ships run on the board's Python: numpy, PYNQ and
    finn-plus-driver (with qonnx); ``hw`` only for the simulation backend."""
    allowed = set(sys.stdlib_module_names) | {"numpy", "pynq", "finn_plus_driver", "qonnx",
                                              "matplotlib", "driver", "contract", "hw"}
    for name in ("driver.py", "validate.py", "throughput.py", "contract.py"):
        hits = imported_roots(REPO / "build_flows" / "deploy" / name) - allowed
        assert not hits, f"build_flows/deploy/{name} imports {sorted(hits)}"


def test_modules_stay_small() -> None:
    big = [f"{p.relative_to(REPO)}: {n} lines" for pkg in FORBIDDEN
           for p in (REPO / pkg).rglob("*.py") if (n := len(p.read_text().splitlines())) > 450]
    assert not big, big


@pytest.mark.skipif(not (REPO / ".venv" / ".bnnforge-setup").is_file()
                    or Path(sys.prefix).resolve() != (REPO / ".venv").resolve(),
                    reason="runs only inside the venv made by `make setup`")
def test_setup_is_idempotent_and_quiet() -> None:
    start = time.time()
    proc = subprocess.run(["bash", "scripts/setup.sh"], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "VENV": ".venv"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and proc.stderr == ""
    assert time.time() - start < 10
