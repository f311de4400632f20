"""Build steps after folding that need no Vivado: our RTL for the folded dataflow graph, its
stitched Verilator simulation on the verification images, and Yosys resource estimates.

* ``rtl``: every node becomes our RTL op (:mod:`build_flows.backend.ops`, HDL per node under
  ``out/rtl/nodes/``, what FINN's stitched-IP step packages when Vivado is present); one unit per
  node (:mod:`build_flows.backend.accel`) stitched with FIFOs and width converters into
  ``out/rtl/accel.sv`` with its memory files, ``accel.f`` and ``accel.json``; compiled with
  Verilator. This is the only step that stitches.
* ``rtlsim``: the verification images through the accelerator the ``rtl`` step stitched
  (:func:`build_flows.backend.accel.load`, full flow, the input paced at the shell DMA's
  bits per cycle, :data:`build_flows.boards.DMA_BITS`); every
  output must equal FINN's Python execution of the dataflow graph (first mismatch reported with
  sample and position). Steady-state cycles per frame, latency and FPS beside FINN's estimate.
* ``deploy``: the deployment package ``out/deploy/`` (:mod:`build_flows.deploy.package`): the
  driver with its board and simulation backends, ``validate.py``, ``throughput.py``, settings.
* ``resources``: Yosys ``synth_xilinx`` for the board's family on the stitched top (and per unit
  with ``--per-node``): LUT, FF, BRAM36, DSP and percentages of the part, beside FINN's estimate.

Results go to ``cfg.hw`` (kept in ``state.json``, so a resumed build reports them).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from build_flows.backend import accel, ops
from build_flows.backend.elem import compare
from build_flows.checks import BuildError
from build_flows.deploy import package
from build_flows.pipeline import folding, vivado
from build_flows.pipeline.config import BuildConfig
from build_flows.pipeline.graph import apply_to_dataflow, dataflow_model
from hw import stitch, timing, yosys

log = logging.getLogger(__name__)


def rtl_dir(cfg: BuildConfig) -> Path:
    return cfg.out / "rtl"


def frames_for(model: Any, images: np.ndarray) -> np.ndarray:
    """uint8 images (N, C, H, W) in the dataflow graph's input layout (NHWC for 4-D inputs)."""
    shape = model.get_tensor_shape(model.graph.input[0].name)
    x = images.astype(np.float32)
    if len(shape) == 4:
        x = x.transpose(0, 2, 3, 1)
    return x.reshape(len(x), *shape[1:])


def _host_free(model: Any) -> None:
    nodes = [n for n in model.graph.node if n.op_type != "StreamingDataflowPartition"]
    if model.get_nodes_by_op_type("StreamingDataflowPartition") and nodes:
        names = ", ".join(f"{n.name} ({n.op_type})" for n in nodes[:3])
        log.info("host nodes outside the accelerator (%s) run in software and are not simulated",
                 names)


def step_rtl(model: Any, cfg: BuildConfig) -> Any:
    """Swap our RTL ops into the dataflow graph and generate each node's HDL (FINN's IP steps
    package these), then stitch our units and compile the simulation."""
    _host_free(model)
    nodes_dir = rtl_dir(cfg) / "nodes"
    model = apply_to_dataflow(model, lambda m: ops.generate(
        m, nodes_dir, cfg.board.part, cfg.clock_ns), cfg.work_dir)
    child = dataflow_model(model)
    acc = accel.build(child, rtl_dir(cfg), folding.fifo_pins(child, cfg.folding_config),
                      family=cfg.board.family)
    meta = accel.read_meta(acc.directory)
    sim_top, sim_filelist = accel.write_io_top(child, acc)  # the deployment package's
    cfg.hw["rtl"] = {"directory": str(acc.directory), "top": "accel",  # simulation runs this
                     "sim_top": sim_top, "sim_filelist": str(sim_filelist),
                     "units": acc.units, "stages": acc.stages,
                     "filelist": str(acc.directory / "accel.f"),
                     "verilator_build_seconds": round(acc.build_seconds, 1),
                     "finn_nodes": {n.name: n.op_type for n in child.graph.node},
                     "fifos": meta["fifos"], "fifo_sizing": meta["fifo_sizing"],
                     "cost_model": meta.get("cost_model"),
                     "node_hdl": str(nodes_dir)}
    return model


def step_rtlsim(model: Any, cfg: BuildConfig) -> Any:
    """Stitched rtlsim on the verification images; exact comparison; performance."""
    child = dataflow_model(model)
    acc = accel.load(rtl_dir(cfg))  # as the rtl step stitched and compiled it
    inputs = cfg.inputs
    images = inputs.images if inputs is not None and len(inputs.images) else None
    if images is None:  # no verification images: seeded random frames, for timing only
        rng = np.random.default_rng(0)
        shape = child.get_tensor_shape(child.graph.input[0].name)
        images = rng.integers(0, 256, (4, *shape[1:])).astype(np.uint8)
        frames = images.astype(np.float32)
    else:
        frames = frames_for(child, images)
    t0 = time.time()
    est, lat = cfg.estimates.get("max_cycles"), cfg.estimates.get("latency_cycles")
    limit = 4 * (lat + len(frames) * est) + 100_000 if est and lat else None  # a deadlock guard
    got, timing = accel.simulate(acc, frames, max_cycles=limit, dma_bits=cfg.board.dma_bits)
    ref = accel.finn_outputs(child, frames)
    result = compare(got, ref)
    np.savez_compressed(rtl_dir(cfg) / "expected.npz", frames=frames.astype(np.int64),
                        outputs=ref)  # the deployment package's self-test
    result["seconds"] = round(time.time() - t0, 1)
    result["inputs"] = inputs.source if inputs is not None and len(inputs.images) else "random"
    if inputs is not None and inputs.labels is not None and got.shape[1] == 1:
        labels = inputs.labels[:len(got)]
        result["accuracy_rtlsim"] = float(np.mean(got[:, 0] == labels))
        result["accuracy_finn"] = float(np.mean(ref[:, 0] == labels))
    cfg.hw["rtlsim"] = result
    fclk = 1e3 / cfg.clock_ns
    cfg.hw["performance"] = {
        "cycles_per_frame": timing["cycles_per_frame"], "latency_cycles": timing["latency_cycles"],
        "frames": timing["frames"], "fclk_mhz": fclk,
        "fps": fclk * 1e6 / timing["cycles_per_frame"],
        "estimated_cycles_per_frame": est,
        "estimated_latency_cycles": cfg.estimates.get("latency_cycles"),
        "estimated_fps": cfg.estimates.get("estimated_fps"),
        "simulated_cycles": timing["cycles"], "sim_seconds": timing["sim_seconds"],
        "input_bits_per_cycle": cfg.board.dma_bits,
        "input_cycles_per_frame": timing["input_cycles_per_frame"]}
    if result["mismatches"]:
        f = result["first_mismatch"]
        raise BuildError(f"rtlsim: {result['mismatches']} outputs differ from FINN's execution "
                         f"of the dataflow graph; first at sample {f['sample']}, position "
                         f"{f['position']}: rtl {f['rtl']}, FINN {f['finn']:g} "
                         f"(RTL in {acc.directory})")
    log.info("rtlsim: %d samples, 0 mismatches; %.0f cycles per frame (FINN estimate %s), "
             "%s FPS at %.0f MHz", result["samples"], timing["cycles_per_frame"], est,
             f"{cfg.hw['performance']['fps']:,.0f}", fclk)
    return model


def step_resources(model: Any, cfg: BuildConfig) -> Any:
    """Yosys synthesis estimate of the stitched top (and of each unit with ``--per-node``)."""
    child = dataflow_model(model)
    d = rtl_dir(cfg)
    if not (d / "accel.f").is_file():
        raise BuildError(f"{d / 'accel.f'} is missing: run the rtl step first")
    sources = [Path(s) for s in (d / "accel.f").read_text().split()]
    b = cfg.board
    t0 = time.time()
    try:
        res = yosys.synth("accel", sources, {}, family=b.family, workdir=d, timing=True,
                          part=b.part, clock_ns=cfg.clock_ns, lutram_fallback=True)
    except yosys.SynthError as exc:
        raise BuildError(str(exc)) from exc
    res.pop("cells", None)
    res["seconds"] = round(time.time() - t0, 1)
    res["percent"] = {"LUT": 100 * res["LUT"] / b.luts, "FF": 100 * res["FF"] / b.ffs,
                      "BRAM36": 100 * res["BRAM36"] / b.bram36, "DSP": 100 * res["DSP"] / b.dsps}
    total = cfg.estimates.get("total", {})
    res["finn_estimate"] = {"LUT": total.get("LUT"), "BRAM36": (total.get("BRAM_18K") or 0) / 2,
                            "DSP": total.get("DSP")}
    est = (cfg.hw.get("rtl") or {}).get("cost_model") or {}
    if "LUT" in est:  # our cost model (hw.cost) against this synthesis
        res["cost_model"] = {**{k: est[k] for k in ("LUT", "FF", "BRAM36", "DSP")},
                             "LUT_error": round((est["LUT"] - res["LUT"]) / max(res["LUT"], 1),
                                                4)}
    if cfg.per_node:
        units_, _, _, _ = accel.graph_units(child)
        rows = []
        (d / "per_node").mkdir(exist_ok=True)
        for u in stitch.chain(units_):
            if u.module in ("fifo", "dwc"):
                continue
            files = u.write_memories(d / "per_node", prefix=f"{u.name}_")
            r = yosys.synth(u.module, [u.source], {**u.params, **files}, family=b.family,
                            workdir=d / "per_node", timing=True, part=b.part,
                            clock_ns=cfg.clock_ns, lutram_fallback=True)
            rows.append({"name": u.name, "module": u.module,
                         **{k: r[k] for k in ("LUT", "FF", "BRAM36", "DSP")},
                         "timing": r["timing"]})
        res["per_node"] = rows
    cfg.hw["resources"] = res
    log.info("resources (%s): %d LUT, %d FF, %.1f BRAM36, %d DSP (%.1f %% of the LUTs)",
             res["tool"], res["LUT"], res["FF"], res["BRAM36"], res["DSP"], res["percent"]["LUT"])
    log.info("timing estimate (Yosys sta, no place-and-route): %s",
             timing.describe(res["timing"]))
    if not res["timing"]["meets"]:
        log.warning("the estimate puts the longest path (%s -> %s) above the %g ns clock: "
                    "choose a slower --clock-ns, or a folding with less SIMD on that unit",
                    res["timing"]["from"], res["timing"]["to"], cfg.clock_ns)
    return model


def step_deploy(model: Any, cfg: BuildConfig) -> Any:
    """The deployment package (the bitfile is added after the Vivado steps, when they run)."""
    reason = vivado.missing() or "the Vivado steps have not run yet"
    out = package.write(model, dataflow_model(model), cfg, rtl_dir(cfg), reason)
    cfg.hw["deploy"] = {"directory": str(out), "bitfile": None, "reason": reason}
    return model


HW_STEPS = [("rtl", step_rtl), ("rtlsim", step_rtlsim), ("deploy", step_deploy),
            ("resources", step_resources)]
