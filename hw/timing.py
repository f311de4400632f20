"""Timing estimate of a synthesized design: its longest register-to-register path, without
place-and-route.

Yosys' ``sta`` walks the ``synth_xilinx`` netlist with the per-pin cell delays that Yosys ships
for the Xilinx primitives (``+/xilinx/cells_sim.v``: LUT1-6 by input pin, 127-642 ps; MUXF7/F8;
CARRY4 by pin, 114 ps carry-in to carry-out; FDRE clock-to-Q 303 ps; block RAM clock-to-out
2,454 ps without its output register). Those figures are Vivado's timing model of an Artix-7 -1,
extracted by Project X-Ray (``prjxray-db/artix7/timings``), the same 28 nm fabric and speed grade
as the Zynq-7020 of the Pynq-Z1/Z2. ``sta`` leaves out what place-and-route decides, so the
estimate adds it back along the path it reports:

    t = (arrival at the endpoint - clock arrival) + n_routed * t_net + t_setup(endpoint pin)

* ``n_routed``: hops between cells on the path that leave the slice (every hop except carry-in
  from the previous CARRY4, a LUT into its slice's MUXF7/F8 or carry chain);
* ``t_net`` = :data:`NET_NS` per routed hop: **our assumption** for a typical local route (data
  sheets publish no routing delays; Vivado's reports on 7-series -1 parts show 0.3-0.9 ns);
* ``t_setup``: the endpoint pin's setup time from the same cell library (FDRE.D 0, CE 109 ps,
  block RAM address 566 ps, data in 737 ps).

Zynq UltraScale+ (16 nm): Yosys ships no delays for it and DS925 publishes none for the CLB, so
the 7-series figures are scaled by :data:`ULTRASCALE_SCALE` (**our assumption**, a 16 nm fabric
about 1.4x faster per level) and, for the -2 speed grade at 0.85 V (ZCU104), by 645/775, the
ratio of DS925's DSP48 maximum frequencies with all registers at -1 and -2 (the -2LV of the KV260
at 0.72 V is rated as the -1, 644 MHz). The verdict compares ``t`` with the clock period; it is an
estimate of where a design stands, not timing closure: only Vivado's implementation can say that.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

#: assumed routing delay per hop between slices on a 7-series -1 part (ns)
NET_NS = 0.45
#: 7-series -> UltraScale+ delay scale (our assumption, see the module docstring)
ULTRASCALE_SCALE = 0.7
#: speed grade -> delay scale within UltraScale+ (DS925 DSP48 FMAX with all registers)
ULTRASCALE_GRADE = {"-1": 1.0, "-2": 645 / 775, "-2LV": 645 / 644}
#: setup time (ns) of an endpoint pin, by cell type prefix and pin (Yosys' xilinx cells_sim.v)
SETUP_NS = {("FD", "D"): 0.0, ("FD", "CE"): 0.109, ("FD", "R"): 0.404, ("FD", "S"): 0.404,
            ("RAMB", "ADDR"): 0.566, ("RAMB", "WE"): 0.532, ("RAMB", "DI"): 0.737,
            ("RAMB", "EN"): 0.566, ("RAM", "WE"): 0.654, ("RAM", "D"): 0.453,
            ("RAM", "A"): 0.362, ("SRL", "D"): 0.173, ("SRL", "CE"): 0.109}
#: setup assumed where the table has no entry (ns)
DEFAULT_SETUP_NS = 0.2
#: cells whose output starts a path (their clock-to-out is part of the arrival)
_SEQUENTIAL = re.compile(r"^(FD\w*|RAMB\w+|SRL\w+|RAM\d+\w*|DSP48\w*)$")
#: the celltype of an endpoint that is an output bit nothing reads: the delay is then taken at
#: the latest recognised endpoint (the histogram's top), the levels from this path (at most)
UNUSED = "(unused output)"
_STEP = re.compile(r"^\s*(\d+)\s+(\S+)\s+\((\w+)\.([\w\[\]]+)(?:->([\w\[\]]+))?\)\s*$")


@dataclass
class Step:
    """One cell on the path: arrival (ps) at its output, cell type, input and output pin."""

    arrival_ps: int
    cell: str
    celltype: str
    pin_in: str
    pin_out: str | None


@dataclass
class Path:
    """The longest path ``sta`` reports, from its launching element to its endpoint."""

    steps: list[Step] = field(default_factory=list)
    #: the latest arrival (ps) at a recognised endpoint, from the report's histogram
    endpoints_ps: int | None = None

    @property
    def endpoint(self) -> Step:
        return self.steps[0]

    def logic(self) -> list[Step]:
        """Cells between the launching element and the endpoint, launch first."""
        out = []
        for s in reversed(self.steps[1:]):
            if _SEQUENTIAL.match(s.celltype) and s.pin_out is not None:
                out = [s]  # the last sequential element before the endpoint launches the path
            elif out:
                out.append(s)
        return out


def parse_sta(text: str) -> Path:
    """The path of a Yosys ``sta`` report (endpoint first, as Yosys prints it)."""
    if "Latest arrival time" not in text:
        raise ValueError("no 'Latest arrival time' in the sta report: no timed path")
    body = text[text.index("Latest arrival time"):].splitlines()[1:]
    path = Path()
    for line in body:
        if not line.strip() or line.startswith("Arrival histogram"):
            break
        m = _STEP.match(line)
        if m:
            path.steps.append(Step(int(m.group(1)), m.group(2), m.group(3), m.group(4),
                                   m.group(5)))
        elif not path.steps and re.match(r"^\s*\d+\s+\(<unknown>\)\s*$", line):
            # an output bit nothing reads: the arrival there bounds the real endpoints' from
            # above (Yosys: "Critical-path does not terminate in a recognised endpoint")
            path.steps.append(Step(int(line.split()[0]), "", UNUSED, "", None))
    if not path.steps:
        raise ValueError("the sta report names no cells on its path")
    hist = re.search(r"Arrival histogram:.*?\n\(\s*(\d+),", text, re.S)
    path.endpoints_ps = int(hist.group(1)) if hist else None
    return path


def _routed(prev: Step, nxt: Step) -> bool:
    """Does the hop from ``prev`` into ``nxt`` leave the slice (a routed net)?"""
    if nxt.celltype == "CARRY4" and nxt.pin_in == "CI" and prev.celltype == "CARRY4":
        return False
    if nxt.celltype.startswith("MUXF") and nxt.pin_in.startswith("I"):
        return not (prev.celltype.startswith("LUT") or prev.celltype.startswith("MUXF"))
    if nxt.celltype.startswith("CARRY") and nxt.pin_in.split("[")[0] in ("S", "DI"):
        return not prev.celltype.startswith("LUT")
    return True


def _setup(step: Step) -> float:
    if step.celltype == UNUSED:
        return 0.0
    pin = step.pin_in.split("[")[0]
    for (prefix, name), ns in SETUP_NS.items():
        if step.celltype.startswith(prefix) and pin.startswith(name):
            return ns
    return DEFAULT_SETUP_NS


def unit_of(cell: str) -> str:
    """The stitched design's unit instance a flattened cell name belongs to (``top`` if none):
    ``$flatten\\MVAU_hls_1.$auto$...`` and ``MVAU_hls_1.g_bram.wmem.0.0`` -> ``MVAU_hls_1``."""
    name = cell.split("$flatten\\", 1)[1] if "$flatten\\" in cell else cell
    head = name.split(".", 1)[0]
    return head if "." in name and not head.startswith(("$", "g_")) else "top"


def grade_scale(family: str, part: str | None) -> float:
    """Delay scale of ``family``/``part`` relative to the 7-series -1 figures."""
    if family != "zynquplus":
        return 1.0
    grade = "-1"
    if part:
        m = re.search(r"-(\d)(LV)?(?:-\w)?$", part)
        if m:
            grade = f"-{m.group(1)}{m.group(2) or ''}"
    return ULTRASCALE_SCALE * ULTRASCALE_GRADE.get(grade, 1.0)


def estimate(path: Path, family: str = "zynq7", part: str | None = None,
             clock_ns: float | None = None) -> dict[str, Any]:
    """The path as logic levels and an estimated delay (ns), with a verdict against
    ``clock_ns``: ``t = scale * (cells + n_routed * NET_NS + setup)``."""
    logic = path.logic()
    end = path.endpoint
    if logic:
        launch = logic[0]
        below = path.steps[path.steps.index(launch) + 1:]
        clock_ps = below[0].arrival_ps if below else 0
        arrival = end.arrival_ps
        if end.celltype == UNUSED and path.endpoints_ps is not None:
            arrival = min(arrival, path.endpoints_ps)  # the worst real endpoint's arrival
        cells_ns = (arrival - clock_ps) / 1000
        chain = [*logic, end] if end.celltype != UNUSED else logic
        routed = sum(_routed(a, b) for a, b in zip(chain, chain[1:]))
    else:  # a path from a primary input
        launch, cells_ns, routed = None, end.arrival_ps / 1000, 1
    luts = sum(s.celltype.startswith(("LUT", "RAM32", "RAM64", "RAM128", "SRL")) and s is not launch
               for s in logic)
    carries = sum(s.celltype.startswith("CARRY") for s in logic)
    muxes = sum(s.celltype.startswith("MUXF") for s in logic)
    scale = grade_scale(family, part)
    delay = scale * (cells_ns + routed * NET_NS + _setup(end))
    out: dict[str, Any] = {
        "delay_ns": round(delay, 3), "fmax_mhz": round(1000 / delay, 1),
        "lut_levels": luts, "carry_length": carries, "muxf": muxes, "routed_nets": routed,
        "cells_ns": round(cells_ns, 3), "scale": round(scale, 3),
        "from_unit": unit_of(launch.cell) if launch else "input",
        "to_unit": unit_of(end.cell) if end.celltype != UNUSED else "none",
        "from": f"{launch.celltype} {launch.cell}" if launch else "a primary input",
        "to": end.celltype if end.celltype == UNUSED else f"{end.celltype}.{end.pin_in} {end.cell}",
    }
    if clock_ns:
        out.update(clock_ns=clock_ns, slack_ns=round(clock_ns - delay, 3),
                   meets=bool(delay <= clock_ns))
    return out


def describe(est: dict[str, Any]) -> str:
    """One line: levels, delay, Fmax and the verdict."""
    verdict = ""
    if "meets" in est:
        verdict = (f"; meets {est['clock_ns']:g} ns" if est["meets"] else
                   f"; misses {est['clock_ns']:g} ns by {-est['slack_ns']:.2f} ns")
    return (f"{est['lut_levels']} LUT levels, carry chain {est['carry_length']}, "
            f"{est['routed_nets']} routed nets: ~{est['delay_ns']:.2f} ns "
            f"(~{est['fmax_mhz']:.0f} MHz){verdict}")
