"""Our folding of a build (``--target-fps F`` or ``--target-fps max``): :mod:`hw.fold` over our
units of the dataflow graph, judged by our cost model (:mod:`hw.cost`) against the board's
budget, then checked by Yosys on the stitched design.

The budget is a fraction of the part per resource (``--budget lut=0.8,bram=0.9,dsp=1.0``,
:data:`DEFAULT_BUDGET`), which leaves room for the shell: finn-plus's Zynq shell (the IODMAs,
the AXI interconnect and the PS configuration) is not part of our RTL and cannot be measured
without Vivado; :data:`SHELL` is the allowance we assume for it. The input stream is limited to
the shell's DMA width per cycle (:data:`build_flows.boards.DMA_BITS`: the HP port's 64 bits on
Zynq-7000, 128 on Zynq UltraScale+).

Where the cost model puts a resource above :data:`CHECK_ABOVE` of its budget (after a first
round, of the round's budget: the budget in the model's terms on this design), the chosen folding
is synthesized whole (our units stitched with FIFOs of their analytic depths) by Yosys; where a
resource comes out above the budget, the search runs again with that budget scaled down by the
overshoot, at most :data:`BACK_OFFS` times, and says so. The folding is
written to ``out/folding.json`` (reusable with ``--folding``).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from build_flows.backend import accel, attrs
from build_flows.boards import DMA_BITS
from build_flows.checks import BuildError
from build_flows.pipeline import folding
from hw import cost, fold, stitch, timing_report, yosys
from hw.contract import Float, Kind

log = logging.getLogger(__name__)

#: fractions of the part the accelerator may take by default
DEFAULT_BUDGET = {"LUT": 0.8, "FF": 1.0, "BRAM36": 0.9, "DSP": 1.0}
#: resources assumed for finn-plus's Zynq shell (not measured: that needs Vivado)
SHELL = {"LUT": 5000, "FF": 6000, "BRAM36": 4, "DSP": 0}
#: how many times the search backs off after Yosys finds the budget exceeded
BACK_OFFS = 3
#: Yosys checks the folding when the cost model puts a resource above this fraction of its
#: budget (the model's error on whole designs is well below the margin this leaves)
CHECK_ABOVE = 0.75
#: --budget keys -> resources
BUDGET_KEYS = {"lut": "LUT", "ff": "FF", "bram": "BRAM36", "dsp": "DSP"}


class TargetFps(Kind):
    """``--target-fps``: frames per second (a finite number > 0), or ``max``."""

    metavar = "FPS|max"

    def __call__(self, text: str) -> float | str:
        if text.strip().lower() == "max":
            return "max"
        try:
            return Float(0.0)(text)
        except argparse.ArgumentTypeError as exc:
            raise self.refuse(f"{exc} (or 'max')") from None

    def bad_values(self, tmp: Path) -> list[tuple[str, str]]:
        return Float(0.0).bad_values(tmp) + [("a word", "maximum")]


class BudgetSpec(Kind):
    """``--budget lut=0.8,bram=0.9,dsp=1.0,ff=1.0``: fractions of the part, each in (0, 1]."""

    metavar = "RES=FRACTION,..."

    def __call__(self, text: str) -> dict[str, float]:
        out = {}
        for item in (t for t in text.split(",") if t.strip()):
            key, sep, value = item.partition("=")
            res = BUDGET_KEYS.get(key.strip().lower())
            if not sep or res is None:
                raise self.refuse(f"{item!r}: give RESOURCE=FRACTION with RESOURCE one of "
                                  f"{', '.join(BUDGET_KEYS)}")
            try:
                out[res] = Float(0.0, hi=1.0)(value)
            except argparse.ArgumentTypeError as exc:
                raise self.refuse(f"{key.strip()}: {exc}") from None
        if not out:
            raise self.refuse(f"{text!r}: give e.g. lut=0.8,bram=0.9")
        return out

    def bad_values(self, tmp: Path) -> list[tuple[str, str]]:
        return [("unknown resource", "luts=0.5"), ("above 1", "lut=1.5"), ("zero", "bram=0"),
                ("not a number", "dsp=all"), ("no value", "lut"), ("empty", "")]


def budget_for(board: Any, fractions: dict[str, float] | None) -> dict[str, float]:
    """Absolute budget (LUT, FF, BRAM36, DSP) on ``board`` from fractions of its part."""
    frac = {**DEFAULT_BUDGET, **(fractions or {})}
    part = {"LUT": board.luts, "FF": board.ffs, "BRAM36": board.bram36, "DSP": board.dsps}
    return {r: frac[r] * part[r] for r in part}


def design_of(model: Any, budget: dict[str, float], family: str, part: str | None = None,
              clock_ns: float | None = None) -> fold.Design:
    """Our units of the dataflow graph as a foldable design; with ``clock_ns``, matrix
    units are kept to the widest SIMD that meets it by the timing estimate
    (:func:`simd_caps`)."""
    try:
        cost_model = cost.CostModel.load(family)
    except (FileNotFoundError, ValueError) as exc:
        raise BuildError(f"the folding search needs the cost model: {exc}") from None
    model = widest(model)
    us, elem_in, _, edges = accel.graph_units(model)
    nodes = {n.name: n for n in model.graph.node}
    parts = []
    for u in us:
        owner = u.name[:-len("_zip")] if u.module == "zip" else u.name
        node = nodes.get(owner)
        pe = _attr(node, "PE") or 1
        if u.module == "zip":
            parts.append(fold.Foldable(u, {}, pe, follows=owner))
        elif u.module == "dup":
            parts.append(fold.Foldable.of(u, pe, channels=_attr(node, "NumChannels")))
        else:
            parts.append(fold.Foldable.of(u))
    in_bits = int(_prod(model.get_tensor_shape(model.graph.input[0].name))) * elem_in.width
    simd_ok = None
    if clock_ns:
        def simd_ok(kind: str, simd: int) -> bool | None:
            return timing_report.lanes_meet(family, part, clock_ns, kind, simd)
    return fold.Design(parts, edges, in_bits, cost_model, budget, DMA_BITS.get(family),
                       simd_ok)


def simd_caps(family: str, part: str | None, clock_ns: float | None) -> dict[str, int | None]:
    """The widest SIMD per matrix datapath up to which every lane count of the timing table
    meets ``clock_ns`` (for the record; the search asks per SIMD)."""
    if not clock_ns:
        return {}
    return {k: timing_report.max_lanes(family, part, clock_ns, k) for k in ("xnor", "int")}


def widest(model: Any) -> Any:
    """A copy of ``model`` with every folding parameter at its dimension (one memory word per
    unit) and one window word per beat: our units of it are made without packing megabits of
    weights word by word; the search refolds them (:func:`hw.units.refold`)."""
    from qonnx.custom_op.registry import getCustomOp

    model = copy.deepcopy(model)
    for node in model.graph.node:
        if "window_words" in attrs.OWN.get(folding.base_op(node.op_type), ()):
            attrs.set_own_attr(node, "window_words", 1)  # legal at every SIMD
        for attr, dim in folding.DIVIDES.get(folding.base_op(node.op_type), {}).items():
            inst = getCustomOp(node)
            value = inst.get_nodeattr(dim)
            inst.set_nodeattr(attr, int(value[-1] if isinstance(value, (list, tuple))
                                        else value))
    return model


def _attr(node: Any, name: str) -> int | None:
    from qonnx.custom_op.registry import getCustomOp

    if node is None:
        return None
    try:
        return int(getCustomOp(node).get_nodeattr(name))
    except (AttributeError, TypeError, ValueError):
        return None


def _prod(shape: Any) -> int:
    out = 1
    for d in shape:
        out *= int(d)
    return out


def folding_config(result: fold.Result) -> dict[str, Any]:
    """The search's folding as a folding file (FINN's attribute names)."""
    out: dict[str, Any] = {"_comment": f"bnnforge folding search: {result.cycles} cycles per "
                                       f"frame, bottleneck {result.bottleneck}"}
    for name, f in result.folds.items():
        out[name] = {k: v for k, v in f.items() if k in ("PE", "SIMD", "ram_style")}
        if "M" in f:  # a window generator's words per beat
            out[name]["window_words"] = f["M"]
    return out


def synthesize(model: Any, family: str, work: Path) -> dict[str, float]:
    """Yosys on our units of ``model`` stitched with analytic FIFO depths."""
    us, _, _, edges = accel.graph_units(model)
    top, stages = stitch.write(us, work, edges=edges)
    try:
        res = yosys.synth("accel", stitch.filelist(stages, top), {}, family=family, workdir=work,
                          lutram_fallback=True)
    except yosys.SynthError as exc:
        raise BuildError(f"the folding search's Yosys check failed: {exc}") from None
    return {r: float(res[r]) for r in cost.RESOURCES}


def fold_graph(model: Any, cfg: Any) -> tuple[Any, dict[str, Any]]:
    """Fold ``model`` (the dataflow graph) by our search; returns it and the search's record."""
    family = cfg.board.family
    budget = budget_for(cfg.board, cfg.budget)
    target = None if cfg.target_fps == "max" else max(
        int(1e9 / cfg.clock_ns / (cfg.target_fps or folding.DEFAULT_FPS)), 1)
    record: dict[str, Any] = {"target_cycles": target, "budget": budget, "rounds": [],
                              "max_simd": simd_caps(family, cfg.board.part, cfg.clock_ns)}
    limit = dict(budget)
    best: tuple[fold.Result, dict[str, Any]] | None = None  # the fastest round within budget
    configs: list[dict[str, Any]] = []  # each round's folding
    for round_ in range(BACK_OFFS + 1):
        design = design_of(model, limit, family, cfg.board.part, cfg.clock_ns)
        try:
            result = fold.search(design, target)
        except ValueError as exc:
            raise BuildError(f"folding search: {exc}") from None
        config = folding_config(result)
        # a higher or lower limit that changes nothing: Yosys would say the same
        if config in configs:
            log.info("folding search round %d: the folding of round %d again; stopping",
                     round_ + 1, configs.index(config) + 1)
            break
        configs.append(config)
        model = folding.apply(model, config, "folding search")
        synth = None
        # near this round's limit, the budget in the model's terms on this design once a
        # round has backed off or stepped up: the model's error is known by then
        if any(result.resources[r] > CHECK_ABOVE * b for r, b in limit.items() if b):
            with tempfile.TemporaryDirectory(prefix="bnnforge_search_") as tmp:
                try:
                    synth = synthesize(model, family, Path(tmp))
                except BuildError as exc:  # the model's figures stand; the log says why
                    log.warning("%s; going on with the cost model's figures", exc)
                    record["yosys_error"] = str(exc)
        over = {r: synth[r] / budget[r] for r in budget
                if synth and budget[r] and synth[r] > budget[r]}
        record["rounds"].append({"cycles": result.cycles, "bottleneck": result.bottleneck,
                                 "model": result.resources, "yosys": synth, "limit": result.limit,
                                 "budget": dict(limit),
                                 "steps": result.steps, "over_budget": sorted(over)})
        log.info("folding search round %d: %d cycles per frame (%s), model %s, %s", round_ + 1,
                 result.cycles, result.limit, _fmt(result.resources),
                 f"Yosys {_fmt(synth)}" if synth else
                 f"every resource below {CHECK_ABOVE:.0%} of the round's budget: no Yosys check")
        if not over and (best is None or result.cycles < best[0].cycles):
            best = (result, config)
            record["chosen_round"] = round_ + 1
        under = step_up(result, synth, budget, limit) if not over else {}
        if round_ == BACK_OFFS or not (over or under):
            break
        if over:  # the model's error on this design, taken out of the next round
            for r in over:
                limit[r] = model_terms(budget, result, synth, r)
            log.warning("backing off: Yosys puts the design over the budget in %s; searching "
                        "again with %s", ", ".join(sorted(over)), _fmt(limit))
        else:
            limit.update(under)
            log.info("stepping up: the cost model put this design %s above Yosys, which leaves "
                     "room in the budget; searching again with %s",
                     ", ".join(f"{result.resources[r] / synth[r] - 1:.0%} in {r}" for r in under),
                     _fmt(limit))
    if best is None:
        raise BuildError(f"folding search: Yosys finds {_fmt(synth)}, over the budget "
                         f"{_fmt(budget)}, in each of {len(record['rounds'])} rounds of "
                         "backing off")
    if best[0] is not result:  # a later round went over the budget: the best one stands
        result, config = best
        model = folding.apply(model, config, "folding search")
        log.info("folding search: round %d's folding stands (%d cycles per frame)",
                 record["chosen_round"], result.cycles)
    if target is not None and not result.reached:
        raise BuildError(f"--target-fps {cfg.target_fps:g}: the budget {_fmt(budget)} holds at "
                         f"best {1e9 / cfg.clock_ns / result.cycles:,.0f} FPS ({result.cycles} "
                         f"cycles per frame; limited by {result.limit})")
    record.update(cycles=result.cycles, bottleneck=result.bottleneck, limit=result.limit,
                  fps=1e9 / cfg.clock_ns / result.cycles, folding=config)
    (cfg.out / "folding.json").write_text(json.dumps(config, indent=1) + "\n")
    return model, record


def model_terms(budget: dict[str, float], result: fold.Result, synth: dict[str, float],
                r: str) -> float:
    """Resource ``r``'s budget in the cost model's terms on this design, ``budget * model /
    Yosys`` (less 1 %): the limit of the next round when backing off or stepping up."""
    return budget[r] * result.resources[r] / synth[r] * 0.99


def step_up(result: fold.Result, synth: dict[str, float] | None, budget: dict[str, float],
            limit: dict[str, float]) -> dict[str, float]:
    """A higher limit for another round where the search stopped at the budget of a resource
    (short of its target) that the cost model put at least 2 % above Yosys on this design:
    that resource's :func:`model_terms` (the model's error on this design taken out, as a
    back-off does the other way)."""
    r = result.bound_by
    if synth is None or r is None or not (budget.get(r) and synth.get(r)):
        return {}
    if result.resources[r] <= 1.02 * synth[r]:
        return {}
    new = model_terms(budget, result, synth, r)
    return {r: new} if new > limit[r] * 1.001 else {}


def _fmt(res: dict[str, float]) -> str:
    return ", ".join(f"{res[r]:,.0f} {r}" for r in ("LUT", "BRAM36", "DSP") if r in res)
