"""Estimate reports: FINN's analytical per-layer cycles and resources, report.md and a plot."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hw import timing

log = logging.getLogger(__name__)


def estimates(model: Any, clock_ns: float, part: str,
              own_cycles: Callable[[Any], int | None] | None = None) -> dict[str, Any]:
    """Per-layer PE/SIMD, cycles and resources of a dataflow model; bottleneck and FPS.
    ``own_cycles(node)``, where not None, replaces FINN's cycles of a layer whose folding
    options FINN does not know (our window unit's ``window_words``)."""
    from finn.analysis.fpgadataflow.exp_cycles_per_layer import exp_cycles_per_layer
    from finn.analysis.fpgadataflow.res_estimation import res_estimation
    from qonnx.custom_op.registry import getCustomOp

    cycles = model.analysis(exp_cycles_per_layer)
    res = model.analysis(lambda m: res_estimation(m, part))
    layers = []
    for node in model.graph.node:
        if node.name not in cycles:
            continue
        inst = getCustomOp(node)
        own = own_cycles(node) if own_cycles else None
        row: dict[str, Any] = {"name": node.name, "op_type": node.op_type,
                               "cycles": int(cycles[node.name] if own is None else own)}
        for attr in ("PE", "SIMD"):
            try:
                row[attr] = int(inst.get_nodeattr(attr))
            except AttributeError:
                pass
        r = res.get(node.name, {})
        row.update({"LUT": float(r.get("LUT", 0)), "BRAM_18K": float(r.get("BRAM_18K", 0)),
                    "URAM": float(r.get("URAM", 0)), "DSP": float(r.get("DSP", 0))})
        layers.append(row)
    if not layers:
        raise ValueError("no hardware layers to estimate")
    bottleneck = max(layers, key=lambda r: r["cycles"])
    max_cycles = bottleneck["cycles"]
    total = {k: sum(r[k] for r in layers) for k in ("LUT", "BRAM_18K", "URAM", "DSP")}
    return {
        "layers": layers,
        "max_cycles": max_cycles,
        "bottleneck": bottleneck["name"],
        "clock_ns": clock_ns,
        "estimated_fps": 1e9 / (clock_ns * max_cycles),
        "latency_cycles": sum(r["cycles"] for r in layers),
        "total": total,
    }


def folding_table(est: dict[str, Any]) -> list[dict[str, Any]]:
    """report.json's ``folding``: per layer PE, SIMD, cycles."""
    return [{k: r[k] for k in ("name", "op_type", "PE", "SIMD", "cycles") if k in r}
            for r in est.get("layers", [])]


def write_markdown(report: dict[str, Any], path: Path) -> None:
    """A human-readable report.md."""
    est = report.get("estimates") or {}
    lines = [f"# Build report: {report.get('model')}", "",
             f"Board {report['board']} ({report['part']}), clock {report['clock_ns']} ns.", ""]
    if est:
        lines += [f"Estimated throughput: {est['estimated_fps']:,.0f} frames/s "
                  f"(bottleneck {est['bottleneck']}, {est['max_cycles']:,} cycles per frame). "
                  f"Resources (FINN estimate): {est['total']['LUT']:,.0f} LUT, "
                  f"{est['total']['BRAM_18K']:,.0f} BRAM18, {est['total']['DSP']:,.0f} DSP.", "",
                  "| layer | PE | SIMD | cycles | LUT | BRAM18 |", "|---|---|---|---|---|---|"]
        for r in est["layers"]:
            lines.append(f"| {r['name']} | {r.get('PE', '')} | {r.get('SIMD', '')} | "
                         f"{r['cycles']:,} | {r['LUT']:,.0f} | {r['BRAM_18K']:,.0f} |")
        lines.append("")
    ver = report.get("verification") or {}
    lines += [f"Verification: {ver.get('inputs', '')}", "",
              "| step | samples | mismatches | max error | check |", "|---|---|---|---|---|"]
    for s in ver.get("steps", []):
        lines.append(f"| {s['step']} | {s['samples']} | {s['mismatches']} | "
                     f"{s['max_error']:.3g} | {s['kind']} |")
    sim, perf, res = ver.get("rtlsim"), report.get("performance"), report.get("resources")
    if sim:
        lines += ["", f"Stitched rtlsim (Verilator, our RTL): {sim['samples']} samples "
                  f"({sim.get('inputs', '')}), {sim['mismatches']} mismatches against FINN's "
                  "execution of the dataflow graph"
                  + (f"; accuracy {100 * sim['accuracy_rtlsim']:.1f} % (rtlsim), "
                     f"{100 * sim['accuracy_finn']:.1f} % (FINN)" if "accuracy_rtlsim" in sim
                     else "") + "."]
    if perf:
        est = perf.get("estimated_cycles_per_frame")
        lines += ["", "| performance | measured (rtlsim) | FINN estimate |", "|---|---|---|",
                  f"| cycles per frame | {perf['cycles_per_frame']:,.1f} | "
                  f"{est if est is None else f'{est:,}'} |",
                  f"| latency (cycles) | {perf['latency_cycles']:,} | "
                  f"{perf.get('estimated_latency_cycles') or ''} |",
                  f"| FPS at {perf['fclk_mhz']:.0f} MHz | {perf['fps']:,.0f} | "
                  f"{perf['estimated_fps'] or 0:,.0f} |"]
        if perf.get("input_bits_per_cycle"):
            icyc = perf["input_cycles_per_frame"]
            lines += ["", f"Measured with the input paced as the shell's DMA delivers it, "
                      f"{perf['input_bits_per_cycle']} bits per cycle: {icyc:,.1f} cycles per "
                      "frame for the input alone" + (
                          ", which sets the rate" if perf["cycles_per_frame"] <= 1.02 * icyc
                          else "") + "."]
    sizing = (report.get("rtl") or {}).get("fifo_sizing")
    if sizing:
        lines += ["", f"FIFOs sized by Verilator simulation: {sizing['bits']:,} bits in all; "
                  f"{sizing['cycles_per_frame']:,.0f} cycles per frame at full flow, "
                  f"{100 * sizing['efficiency']:.1f} % of the bottleneck {sizing['bottleneck']}'s "
                  f"{sizing['ideal_cycles']:,}" + "".join(f"; {n}" for n in sizing["notes"]) + ".",
                  "", "| FIFO | width | depth | bits | peak | pinned |", "|---|---|---|---|---|---|"]
        lines += [f"| {f['name']} | {f['width']} | {f['depth']:,} | {f['bits']:,} | "
                  f"{f['peak']} | {'yes' if f['pinned'] else ''} |" for f in sizing["fifos"]]
    if res:
        fe = res.get("finn_estimate") or {}
        cm = res.get("cost_model") or {}
        lines += ["", f"Resources: {res['tool']}; the cost model is ours (hw.cost, fitted on "
                  "Yosys)." + (f" Note: {res['note']}." if res.get("note") else ""), "",
                  "| resource | Yosys | % of part | cost model | FINN estimate |",
                  "|---|---|---|---|---|"]
        for k in ("LUT", "FF", "BRAM36", "DSP"):
            lines.append(f"| {k} | {res[k]:,} | {res['percent'][k]:.1f} | "
                         f"{'' if cm.get(k) is None else f'{cm[k]:,.0f}'} | "
                         f"{'' if fe.get(k) is None else f'{fe[k]:,.0f}'} |")
        for r in res.get("per_node", []):
            lines.append(f"| {r['name']} ({r['module']}) | {r['LUT']:,} LUT, {r['FF']:,} FF, "
                         f"{r['BRAM36']} BRAM36 | | |")
        tim = res.get("timing")
        if tim:
            lines += ["", f"Timing estimate (Yosys `sta` on the synthesized netlist with Vivado's "
                      f"7-series cell delays, plus {timing.NET_NS} ns per routed net; no "
                      f"place-and-route, so an estimate, not timing closure): longest path "
                      f"{tim['from']} -> {tim['to']}: {timing.describe(tim)}."]
            slow = [r for r in res.get("per_node", []) if not r["timing"].get("meets", True)]
            lines += [f"- {r['name']} ({r['module']}): {timing.describe(r['timing'])}"
                      for r in slow]
    lines += ["", "| step | seconds |", "|---|---|"]
    lines += [f"| {s['name']} | {s['seconds']:.1f} |" for s in report.get("steps", [])]
    bit = report.get("bitfile")
    lines += ["", f"Bitfile: {bit['path'] if bit and bit.get('path') else 'none'}"
              + (f" ({bit['reason']})" if bit and bit.get("reason") else ""), ""]
    path.write_text("\n".join(lines))


def plot_cycles(est: dict[str, Any], path: Path) -> None:
    """Bar chart of cycles per layer with the bottleneck line."""
    from matplotlib.figure import Figure  # no pyplot: the caller's backend stays as it is

    layers = est["layers"]
    fig = Figure(figsize=(max(6, 0.5 * len(layers) + 2), 4))
    ax = fig.subplots()
    names = [r["name"] for r in layers]
    ax.bar(range(len(layers)), [r["cycles"] for r in layers],
           color=["tab:red" if n == est["bottleneck"] else "tab:blue" for n in names])
    ax.axhline(est["max_cycles"], color="tab:red", ls="--",
               label=f"bottleneck: {est['max_cycles']:,} cycles = "
                     f"{est['estimated_fps']:,.0f} FPS at {est['clock_ns']} ns")
    ax.set_xticks(range(len(layers)), names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("cycles per frame")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def write_json(report: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(report, indent=2, default=float) + "\n")


def target_status(target_fps: float | str, folding_file: bool, est: dict[str, Any],
                  perf: dict[str, Any] | None,
                  search: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """For a build folded to a rate (``target_fps``: FPS or ``max``): the target, the FPS
    reached (measured in stitched rtlsim when it ran, else our search's rate model for our RTL,
    else FINN's estimate) and whether it is reached; None for a folding file or before the
    estimates."""
    if folding_file or not est:
        return None
    if perf:
        fps, how = perf["fps"], "measured in stitched rtlsim"
    elif search:
        fps, how = search["fps"], "our rate model of our RTL"
    else:
        fps, how = est["estimated_fps"], "FINN's estimate"
    reached = True if target_fps == "max" else bool(fps >= target_fps)
    return {"fps": target_fps, "reached": reached, "achieved_fps": fps, "how": how}


def log_summary(report: dict[str, Any], out: Path) -> None:
    """The build's summary lines: estimate, target, rtlsim, performance, resources, package."""
    est = report.get("estimates") or {}
    if est:
        log.info("estimated %s FPS at %s ns (bottleneck %s, %d cycles); report: %s",
                 f"{est['estimated_fps']:,.0f}", report["clock_ns"], est["bottleneck"],
                 est["max_cycles"], out / "report.json")
    fs = report.get("folding_search")
    if fs:
        last = fs["rounds"][-1]
        log.info("folding search: %d cycles per frame = %s FPS at %.0f MHz by our rate model, "
                 "stopped by %s; %s (budget %s)", fs["cycles"], f"{fs['fps']:,.0f}",
                 1000.0 / report["clock_ns"], fs["limit"],
                 f"Yosys on the folded design: {_res(last['yosys'])}" if last["yosys"] else
                 f"cost model: {_res(last['model'])}", _res(fs["budget"]))
    target = report.get("target")
    if target and not target["reached"]:
        log.warning("target %s FPS not reached: %s FPS (%s at %.0f MHz)",
                    f"{target['fps']:,.0f}", f"{target['achieved_fps']:,.0f}", target["how"],
                    1000.0 / report["clock_ns"])
    perf, res = report.get("performance"), report.get("resources")
    sim = report["verification"].get("rtlsim")
    if sim:
        log.info("rtlsim: %d samples, %d mismatches", sim["samples"], sim["mismatches"])
        if "accuracy_rtlsim" in sim:
            log.info("accuracy on these %d test images: %.1f %% in rtlsim, %.1f %% in software "
                     "(FINN's execution of the same graph)", sim["samples"],
                     100 * sim["accuracy_rtlsim"], 100 * sim["accuracy_finn"])
    if perf:
        log.info("measured %.0f cycles per frame (estimate %s), %s FPS at %.0f MHz, latency %d "
                 "cycles", perf["cycles_per_frame"], perf["estimated_cycles_per_frame"],
                 f"{perf['fps']:,.0f}", perf["fclk_mhz"], perf["latency_cycles"])
    if res:
        log.info("resources: %d LUT, %d FF, %.1f BRAM36, %d DSP (%s)", res["LUT"], res["FF"],
                 res["BRAM36"], res["DSP"], res["tool"])
        if res.get("timing"):
            log.info("timing estimate (no place-and-route): %s", timing.describe(res["timing"]))
    cm = (report.get("rtl") or {}).get("cost_model") or {}
    if "LUT" in cm:
        log.info("cost model (ours, fitted on Yosys): %.0f LUT, %.0f FF, %.1f BRAM36, %.0f DSP%s",
                 cm["LUT"], cm["FF"], cm["BRAM36"], cm["DSP"],
                 f" ({100 * res['cost_model']['LUT_error']:+.1f} % LUT against Yosys)"
                 if res and "cost_model" in res else "")
    dep = report.get("deploy")
    if dep:
        log.info("deployment package: %s (run its validate.py --sim here, or copy it to the "
                 "board)", dep["directory"])
    bit = report["bitfile"]
    if bit.get("path") is None:
        log.info("no bitfile: %s", bit.get("reason"))


def _res(res: dict[str, float]) -> str:
    return ", ".join(f"{res[r]:,.0f} {r}" for r in ("LUT", "BRAM36", "DSP") if r in res)
