"""The matrix unit's longest path against its SIMD lanes, with and without its popcount
register (``PIPE``), by the timing estimate (:mod:`hw.timing`) on each family; and the widest
SIMD that meets a clock, which the folding search respects (:func:`lanes_meet`).

``python -m hw.timing_report`` synthesizes ``mvtu`` (PE = 2, weights in block RAM; binary and
8-bit integer inputs) at each SIMD of :data:`LANES` and PIPE of :data:`PIPES`, for ``xc7`` and
``xcup``, and writes
``hw/timing_model.json`` plus ``results/timing_mvtu.{json,md,png}``. The delays are estimates
(Yosys ``sta`` with Vivado's 7-series cell delays, an assumed routing delay per net, scaled for
UltraScale+): no place-and-route.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from hw import timing, units, verilator, yosys

log = logging.getLogger(__name__)

#: SIMD lanes of the grid, per datapath
LANES = {"xnor": (8, 16, 32, 64, 128, 256, 512), "int": (1, 3, 9, 27)}
#: the PIPE levels measured per datapath (see hw/rtl/mvtu.sv; 3: XNOR popcount chunks only)
PIPES = {"xnor": (0, 1, 2, 3), "int": (0, 1, 2)}
#: where the lanes table lives (read by the folding search)
MODEL_FILE = Path(__file__).resolve().parent / "timing_model.json"
#: a part per family for the grid (its speed grade's scale is taken out before storing)
PARTS = {"zynq7": "xc7z020clg400-1", "zynquplus": "xczu3eg-sbva484-1-e"}


def measure(simd: int, pipe: int, family: str, work: Path, kind: str = "xnor"
            ) -> dict[str, Any]:
    """Synthesize one mvtu (``xnor``: binary inputs; ``int``: 8-bit signed inputs with +-1
    weights, CNV's first layer) and estimate its longest path (unscaled: 7-series -1 figures
    for zynq7, the UltraScale+ -1 scale for zynquplus)."""
    rng = np.random.default_rng(simd)
    mw, mh, pe = (2 * simd, 8, 2) if kind == "xnor" else (3 * simd, 8, 2)
    w = rng.integers(0, 2, (mh, mw))
    if kind == "xnor":
        u = units.mvtu("m", w, rng.integers(0, mw, mh), pe, simd, pipe=pipe)
    else:
        u = units.mvtu("m", w, rng.integers(-300, 300, mh), pe, simd, xnor=False, in_w=8,
                       in_signed=True, pipe=pipe)
    files = u.write_memories(work)
    res = yosys.synth("mvtu", [verilator.RTL / "mvtu.sv"], {**u.params, **files},
                      family=family, workdir=work, timing=True, part=PARTS[family])
    t = res["timing"]
    return {"kind": kind, "simd": simd, "pipe": pipe, "family": family, "LUT": res["LUT"],
            "FF": res["FF"], **{k: t[k] for k in ("delay_ns", "lut_levels", "carry_length",
                                                  "routed_nets", "untimed_cells")}}


@functools.lru_cache(maxsize=8)
def _table(path: Path, mtime: float) -> dict[str, list[dict[str, Any]]]:
    """The table at ``path`` as of ``mtime`` (the search asks it at every step: read once)."""
    return json.loads(path.read_text())


def _rows(family: str, kind: str, path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [r for r in _table(path, path.stat().st_mtime).get(family, [])
            if r.get("kind", "xnor") == kind]


def lanes_meet(family: str, part: str | None, clock_ns: float, kind: str, simd: int,
               path: Path = MODEL_FILE) -> bool | None:
    """Does a matrix unit of datapath ``kind`` with ``simd`` lanes meet ``clock_ns`` on
    ``part`` by the estimate? Judged by the grid's nearest SIMD at or above ``simd``, with the
    ``PIPE`` that :func:`hw.units.mvtu_pipe` gives ``simd`` with weights in block RAM, as in
    the grid (None: no table for it): 0, or 2, whose popcount path starts at a flip-flop like
    that of PIPE 1 with weights in LUTs (the register after the LUT ROM)."""
    pipe = units.mvtu_pipe(simd, kind == "xnor", "block")
    rows = [r for r in _rows(family, kind, path) if r["pipe"] == pipe]
    if not rows:
        return None
    above = [r for r in rows if r["simd"] >= simd]
    row = min(above, key=lambda r: r["simd"]) if above else max(rows, key=lambda r: r["simd"])
    scale = timing.grade_scale(family, part) / timing.grade_scale(family, PARTS[family])
    return bool(row["delay_ns"] * scale <= clock_ns)


def max_lanes(family: str, part: str | None, clock_ns: float, kind: str = "xnor",
              path: Path = MODEL_FILE) -> int | None:
    """The widest SIMD of the grid up to which every grid point meets ``clock_ns`` (each with
    the PIPE the build gives it; None: no table; 1 where not even the narrowest does)."""
    lanes = sorted({r["simd"] for r in _rows(family, kind, path)})
    if not lanes:
        return None
    best = 1
    for s in lanes:
        if not lanes_meet(family, part, clock_ns, kind, s, path):
            break
        best = s
    return best


def write(rows: list[dict[str, Any]], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "timing_mvtu.json").write_text(json.dumps({"rows": rows}, indent=1) + "\n")
    lines = ["# The matrix unit's longest path by the timing estimate", "",
             "Generated by `python -m hw.timing_report`: Yosys `sta` on the synthesized unit with "
             "Vivado's 7-series cell delays (Project X-Ray's Artix-7 -1 figures, as Yosys ships "
             f"them), {timing.NET_NS} ns per routed net (assumed) and the endpoint's setup; "
             f"UltraScale+ (-1) scaled by {timing.ULTRASCALE_SCALE} (assumed). mvtu with PE = 2, "
             "weights in block RAM: `xnor` (binary inputs, MW = 2 SIMD) and `int` (8-bit signed "
             "inputs, +-1 weights, MW = 3 SIMD: CNV's first layer). PIPE 0: none; 1: the dot "
             "products registered; 2: the memories' read data as well (what the build gives "
             "pipelined units with weights in block RAM); 3: the XNOR popcount's 24-lane chunk "
             "counts as well (what the build gives XNOR units from 128 lanes). An estimate "
             "without place-and-route.",
             "",
             "| family | datapath | SIMD | PIPE | LUT levels | carry chain | routed nets | "
             "delay (ns) | Fmax (MHz) | LUT | FF |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['family']} | {r['kind']} | {r['simd']} | {r['pipe']} | {r['lut_levels']} | "
              f"{r['carry_length']} | {r['routed_nets']} | {r['delay_ns']:.2f} | "
              f"{1000 / r['delay_ns']:.0f} | {r['LUT']:,} | {r['FF']:,} |" for r in rows]
    (out / "timing_mvtu.md").write_text("\n".join(lines) + "\n")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    for fam in PARTS:
        for kind in LANES:
            for pipe, style in ((0, ":"), (1, "--"), (2, "-")):
                pts = [(r["simd"], r["delay_ns"]) for r in rows
                       if r["family"] == fam and r["pipe"] == pipe and r["kind"] == kind]
                if pts:
                    ax.plot(*zip(*pts), style, marker="o" if kind == "xnor" else "s",
                            label=f"{fam} -1, {kind}, PIPE={pipe}")
    for clk, name in ((10.0, "100 MHz"), (5.0, "200 MHz")):
        ax.axhline(clk, color="grey", lw=0.8)
        ax.text(1, clk, name, va="bottom", fontsize=8)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("SIMD lanes")
    ax.set_ylabel("estimated longest path (ns)")
    ax.set_title("mvtu: timing estimate (Yosys sta + assumed routing; no P&R)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "timing_mvtu.png", dpi=120)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hw.timing_report", description=__doc__)
    ap.add_argument("--out", type=Path, default=Path("results"))
    ap.add_argument("--model", type=Path, default=MODEL_FILE)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bnnforge_timing_") as tmp:
        for family in PARTS:
            for kind, lanes in LANES.items():
                for simd in lanes:
                    for pipe in PIPES[kind]:
                        work = Path(tmp) / f"{family}_{kind}_{simd}_{pipe}"
                        work.mkdir()
                        rows.append(measure(simd, pipe, family, work, kind))
                        log.info("%s %s SIMD %d PIPE %d: %.2f ns, %d LUT levels", family, kind,
                                 simd, pipe, rows[-1]["delay_ns"], rows[-1]["lut_levels"])
    write(rows, args.out)
    args.model.write_text(json.dumps({f: [r for r in rows if r["family"] == f] for f in PARTS},
                                     indent=1) + "\n")
    log.info("wrote %s and %s/timing_mvtu.{json,md,png}", args.model, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
