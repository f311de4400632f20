"""Folding search: the PE and SIMD of every unit (and where each matrix unit keeps its weights)
that reach a rate in the fewest resources, or the highest rate within a resource budget.

A design is its units as built (:class:`Foldable`: the unit, the dimension each folding
parameter must divide) joined by the edges :mod:`hw.stitch` joins them with. Its cycles per frame
come from :mod:`hw.rate` (the slowest unit, and the input stream's bandwidth), its resources
from the cost model (:mod:`hw.cost`) over the units and the FIFOs and width converters between
them. The search starts from the smallest folding and repeatedly makes the bottleneck faster:
of the next parallelism step of each of its folding parameters it takes the one that saves the
most cycles per budget fraction spent (a matrix unit's weights go to block RAM or LUTs,
whichever leaves the fullest resource emptier; for a target, whichever takes the smaller share
of the budget in all), skipping steps the budget cannot hold. It stops
when the target is met, or when the bottleneck can be made no faster within the budget
(``target_cycles=None``: the highest rate the budget holds). A met target is then walked back
(:func:`shrink`): steps that the target does not need are taken back, largest saving first,
so that ``--target-fps F`` gives the smallest design reaching F that these steps find; so is
the highest rate where the input stream's bandwidth sets it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from hw import cost, rate, stitch, units

log = logging.getLogger(__name__)

#: folding parameters per module: the parameter -> the parameter (of the unit) it must divide
#: (and a window generator's words per beat ``M``: see :func:`legal`)
DIVIDES = {"mvtu": {"PE": "MH", "SIMD": "MW"}, "thresholding": {"PE": "C"},
           "swg": {"SIMD": "C"}, "fmpadding": {"SIMD": "C"}, "pool": {"PE": "C"},
           "label_select": {"PE": "LABELS"}, "requant": {"PE": "C"}, "accpool": {"PE": "C"}}
#: the most window words per beat the search gives a window generator: each is a read port
#: of its buffer, and Yosys 0.23 ran out of 12 GB mapping 12 read ports of a 256 x 32 buffer
SWG_MAX_WORDS = 9


@dataclass
class Foldable:
    """One unit of a design as built, and how it may fold. ``dims`` maps a folding parameter to
    the size it must divide; a ``dup``/``zip`` has its PE (``pe``) from the node it belongs to,
    and a ``zip`` follows the unit it feeds (``follows``)."""

    unit: units.Unit
    dims: dict[str, int]
    pe: int = 1
    follows: str | None = None

    @classmethod
    def of(cls, unit: units.Unit, pe: int = 1, follows: str | None = None,
           channels: int | None = None) -> Foldable:
        """The folding parameters of ``unit`` from its module (``channels``: a ``dup``'s)."""
        dims = {k: int(unit.params[v]) for k, v in DIVIDES.get(unit.module, {}).items()}
        if unit.module == "swg":  # words per beat: divisors of a whole window's words
            p = unit.params
            dims["M"] = p["K_H"] * p["K_W"] * p["C"]
        if unit.module == "dup" and channels:
            dims = {"PE": channels}
        return cls(unit, dims, pe, follows)


@dataclass
class Result:
    """The search's folding, its cycles per frame and estimated resources, and why it stopped."""

    folds: dict[str, dict[str, Any]]
    cycles: int
    bottleneck: str
    resources: dict[str, float]
    reached: bool
    limit: str
    steps: int
    history: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    #: the resource whose budget the next step would exceed, where that stopped the search
    bound_by: str | None = None


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


class Design:
    """A design's foldables, edges and input, with the cost model and budget to judge it."""

    def __init__(self, parts: list[Foldable], edges: list[stitch.Edge] | None, in_bits: int,
                 model: cost.CostModel, budget: dict[str, float],
                 in_stream_bits: int | None = None,
                 simd_ok: Callable[[str, int], bool | None] | None = None) -> None:
        self.parts, self.edges, self.in_bits = parts, edges, in_bits
        self.model, self.budget, self.in_stream_bits = model, budget, in_stream_bits
        # (datapath, SIMD) -> does a matrix unit meet the clock (None: unknown, allowed)
        self.simd_ok = simd_ok
        self.by_name = {p.unit.name: p for p in parts}

    def units(self, folds: dict[str, dict[str, Any]]) -> list[units.Unit]:
        out = []
        for p in self.parts:
            f = folds.get(p.follows or p.unit.name, {}) if p.unit.module in ("dup", "zip") \
                else folds.get(p.unit.name, {})
            if p.unit.module in ("dup", "zip"):
                out.append(units.refold(p.unit, pe=f.get("PE", p.pe), old_pe=p.pe))
            elif f:
                out.append(units.refold(p.unit, pe=f.get("PE"), simd=f.get("SIMD"),
                                        ram_style=f.get("ram_style"), words=f.get("M")))
            else:
                out.append(p.unit)
        return out

    def cycles(self, us: list[units.Unit]) -> dict[str, int]:
        """Cycles per frame of every unit (and ``input``: the input stream's)."""
        out = {name: c for name, _, c in rate.schedule(us, self.in_bits, self.edges)}
        if self.in_stream_bits:
            out["input"] = -(-self.in_bits // self.in_stream_bits)
        return out

    def resources(self, us: list[units.Unit]) -> dict[str, float]:
        """The cost model's total over the units and the FIFOs (two deep; sizing changes
        them later) and width converters that stitching puts between them."""
        stages, _ = stitch.connect(us, self.edges)
        return self.model.total(stages)

    def pressure(self, res: dict[str, float]) -> float:
        """The fullest resource's fraction of its budget."""
        return max(res[r] / b for r, b in self.budget.items() if b > 0)

    def share(self, res: dict[str, float]) -> float:
        """The design's share of the budget: the sum over resources of its fraction."""
        return sum(res[r] / b for r, b in self.budget.items() if b > 0)

    def fits(self, res: dict[str, float]) -> bool:
        return all(res[r] <= b for r, b in self.budget.items())


def initial(design: Design, ram_style: str = "block") -> dict[str, dict[str, Any]]:
    """Every folding parameter at 1; matrix units' weights in ``ram_style``."""
    folds: dict[str, dict[str, Any]] = {}
    for p in design.parts:
        if not p.dims or p.follows:
            continue
        folds[p.unit.name] = {k: 1 for k in p.dims}
        if p.unit.module == "mvtu":
            folds[p.unit.name]["ram_style"] = ram_style
    return folds


def _capped(design: Design, name: str, key: str, value: int) -> bool:
    """Is ``value`` of folding parameter ``key`` beyond what the clock allows (the SIMD of a
    binary-weight matrix unit that ``design.simd_ok`` says would not meet the clock)?"""
    unit = design.by_name[name].unit
    if key != "SIMD" or unit.module != "mvtu" or design.simd_ok is None:
        return False
    p = unit.params
    if p.get("W_W", 1) > 1 or (not p.get("XNOR") and p.get("IN_W", 1) < 8):
        return False  # multi-bit weights, {0,1} or narrow inputs: not in the timing table
    return design.simd_ok("xnor" if p.get("XNOR") else "int", value) is False


def legal(unit: units.Unit, fold: dict[str, Any]) -> bool:
    """Whether ``fold`` is a folding ``unit`` can take beyond its divisibility: a window
    generator's words per beat ``M`` tile its window at that SIMD (:func:`hw.units.swg_words_ok`)
    and stay within :data:`SWG_MAX_WORDS` read ports."""
    if unit.module != "swg" or fold.get("M", 1) == 1:
        return True
    p = unit.params
    return fold["M"] <= SWG_MAX_WORDS and units.swg_words_ok(
        (p["K_H"], p["K_W"]), p["C"] // fold["SIMD"], fold["M"], bool(p["DEPTHWISE"]))


def _moves(design: Design, name: str, fold: dict[str, Any]) -> Iterable[dict[str, Any]]:
    """The next step of each folding parameter of unit ``name`` (within the clock's SIMD cap;
    a window generator's SIMD steps with its words per beat back at 1)."""
    part = design.by_name[name]
    for k, n in part.dims.items():
        reset = {"M": 1} if part.unit.module == "swg" and k == "SIMD" else {}
        bigger = [d for d in divisors(n) if d > fold[k] and not _capped(design, name, k, d)
                  and legal(part.unit, {**fold, **reset, k: d})]
        if bigger:
            yield {**fold, **reset, k: bigger[0]}


def _try(design: Design, folds: dict[str, dict[str, Any]], name: str,
         fold: dict[str, Any], smallest: bool = False
         ) -> tuple[dict[str, dict[str, Any]], list[units.Unit], dict[str, float]]:
    """``folds`` with unit ``name`` at ``fold``; a matrix unit's weights in block RAM or LUTs,
    whichever leaves the fullest resource emptier (room to grow: the highest rate), or with
    ``smallest`` whichever takes the smaller share of the budget in all (:meth:`Design.share`:
    the smallest design for a target)."""
    options = [fold]
    if design.by_name[name].unit.module == "mvtu":
        options = [{**fold, "ram_style": s} for s in ("block", "distributed")]
    tried = []
    for f in options:
        trial = {**folds, name: f}
        t_units = design.units(trial)
        t_res = design.resources(t_units)
        tried.append(((design.share(t_res), design.pressure(t_res)) if smallest else
                      (design.pressure(t_res), design.share(t_res)), trial, t_units, t_res))
    _, trial, t_units, t_res = min(tried, key=lambda t: t[0])
    return trial, t_units, t_res


def _flip(design: Design, folds: dict[str, dict[str, Any]], name: str
          ) -> tuple[dict[str, dict[str, Any]], list[units.Unit], dict[str, float]]:
    """``folds`` with matrix unit ``name``'s weights moved between block RAM and LUTs: the
    folding, its units and their resources."""
    fold = folds[name]
    trial = {**folds, name: {**fold, "ram_style": "distributed"
                             if fold.get("ram_style") == "block" else "block"}}
    t_units = design.units(trial)
    return trial, t_units, design.resources(t_units)


def _matrix_units(design: Design, folds: dict[str, dict[str, Any]]) -> list[str]:
    return [n for n in folds if design.by_name[n].unit.module == "mvtu"]


def rebalance(design: Design, folds: dict[str, dict[str, Any]], us: list[units.Unit],
              res: dict[str, float]) -> tuple[dict[str, dict[str, Any]], list[units.Unit],
                                              dict[str, float], bool]:
    """Move matrix units' weights between block RAM and LUTs while that lowers the fullest
    resource's share of the budget (the search's steps choose one unit at a time)."""
    changed = False
    for name in _matrix_units(design, folds):
        trial, t_units, t_res = _flip(design, folds, name)
        if design.fits(t_res) and design.pressure(t_res) < design.pressure(res) - 1e-9:
            folds, us, res, changed = trial, t_units, t_res, True
    return folds, us, res, changed


def make_room(design: Design, folds: dict[str, dict[str, Any]], max_flips: int = 20
              ) -> tuple[dict[str, dict[str, Any]], list[units.Unit], dict[str, float]] | None:
    """``folds`` made to fit the budget by moving matrix units' weights between block RAM and
    LUTs: each flip frees the most of the resource over its budget per share of the others it
    takes; None when no sequence of flips fits."""
    us = design.units(folds)
    res = design.resources(us)
    for _ in range(max_flips):
        if design.fits(res):
            return folds, us, res
        over = max(design.budget, key=lambda r: res[r] / design.budget[r]
                   if design.budget[r] else 0.0)
        best = None
        for name in _matrix_units(design, folds):
            trial, t_units, t_res = _flip(design, folds, name)
            freed = (res[over] - t_res[over]) / design.budget[over]
            others = [r for r, b in design.budget.items() if b and r != over]
            if freed <= 0 or any(t_res[r] > b for r in others for b in [design.budget[r]]):
                continue
            cost_ = sum(max(t_res[r] - res[r], 0.0) / design.budget[r] for r in others)
            key = freed / (cost_ + 1e-9)
            if best is None or key > best[0]:
                best = (key, trial, t_units, t_res)
        if best is None:
            return None
        _, folds, us, res = best
    return (folds, us, res) if design.fits(res) else None


def _smaller(design: Design, name: str, fold: dict[str, Any]) -> Iterable[dict[str, Any]]:
    """The previous legal value of each folding parameter of unit ``name``."""
    part = design.by_name[name]
    for k, n in part.dims.items():
        less = [d for d in divisors(n) if d < fold[k] and legal(part.unit, {**fold, k: d})]
        if less:
            yield {**fold, k: less[-1]}


def shrink(design: Design, folds: dict[str, dict[str, Any]], target_cycles: int,
           max_steps: int = 5000) -> tuple[dict[str, dict[str, Any]], list[units.Unit],
                                              dict[str, float]]:
    """The smallest design on the way down from ``folds`` that still meets ``target_cycles``:
    repeatedly takes back the one folding step (a parameter to its previous legal value, the
    weights' memory chosen again) or moves the one matrix unit's weights between block RAM and
    LUTs that frees the most of the budget (:meth:`Design.share`), while every unit stays
    within ``target_cycles`` and the budget.
    The search's steps make the bottleneck faster one at a time, so units it stepped early
    for an earlier bottleneck may be faster than the target needs."""
    us = design.units(folds)
    res = design.resources(us)
    for _ in range(max_steps):
        best = None
        trials = [_try(design, folds, name, fold, smallest=True)
                  for name in folds for fold in _smaller(design, name, folds[name])]
        trials += [_flip(design, folds, name) for name in _matrix_units(design, folds)]
        for trial, t_units, t_res in trials:
            if not design.fits(t_res) or max(design.cycles(t_units).values()) > target_cycles:
                continue
            freed = design.share(res) - design.share(t_res)
            if freed > 1e-9 and (best is None or freed > best[0]):
                best = (freed, trial, t_units, t_res)
        if best is None:
            break
        _, folds, us, res = best
    return folds, us, res


def search(design: Design, target_cycles: int | None, max_steps: int = 5000) -> Result:
    """The folding (see the module docstring); ``target_cycles`` None maximizes the rate."""
    folds = initial(design)
    us = design.units(folds)
    res = design.resources(us)
    if not design.fits(res):  # weights from block RAM to LUTs (or back) may make it fit
        room = make_room(design, folds)
        if room is not None:
            folds, us, res = room
    if not design.fits(res):
        raise ValueError(f"the smallest folding already needs {_show(res)}, over the budget "
                         f"{_show(design.budget)}")
    history = []
    steps = 0
    limit = "target reached"
    bound_by = None
    while True:
        cyc = design.cycles(us)
        name = _neck(cyc)
        history.append((cyc[name], dict(res)))
        if target_cycles is not None and cyc[name] <= target_cycles:
            break
        if name == "input" or name not in folds:
            limit = ("the input stream's bandwidth" if name == "input"
                     else f"{name}, which has no folding")
            break
        best, blocked = None, None
        for fold in _moves(design, name, folds[name]):
            trial, t_units, t_res = _try(design, folds, name, fold,
                                         smallest=target_cycles is not None)
            if not design.fits(t_res):  # room from moving weights between BRAM and LUTs?
                room = make_room(design, trial)
                if room is None:
                    over = max((t_res[r] / b, r) for r, b in design.budget.items() if b > 0)
                    if blocked is None or over < blocked[0]:
                        blocked = (over, t_res)
                    continue
                trial, t_units, t_res = room
            saved = cyc[name] - design.cycles(t_units)[name]
            spent = sum(max(t_res[r] - res[r], 0.0) / b for r, b in design.budget.items()
                        if b > 0)
            key = (saved / (spent + 1e-9), -design.pressure(t_res))
            if saved > 0 and (best is None or key > best[0]):
                best = (key, trial, t_units, t_res)
        if best is None:
            if blocked is not None:  # room elsewhere? move weights between BRAM and LUTs
                folds, us, res, changed = rebalance(design, folds, us, res)
                if changed:
                    continue
            if blocked is None and any(_capped(design, name, "SIMD", d)
                                       for d in divisors(design.by_name[name].dims.get("SIMD", 1))):
                limit = (f"the clock: {name} is at SIMD {folds[name]['SIMD']}, the widest "
                         f"whose dot product meets the clock by the timing estimate, and PE "
                         f"{folds[name]['PE']}, all its rows")  # wider SIMD: capped
            elif blocked is None:
                limit = f"{name} cannot be folded further"
            else:
                r = bound_by = blocked[0][1]
                limit = (f"the budget: the next step of {name} needs {blocked[1][r]:,.1f} "
                         f"{r} of {design.budget[r]:,.1f}")
            break
        _, folds, us, res = best
        steps += 1
        if steps >= max_steps:
            limit = f"{max_steps} steps"
            break
    cyc = design.cycles(us)
    name = _neck(cyc)
    if target_cycles is not None and cyc[name] <= target_cycles:  # the smallest that meets it
        folds, us, res = shrink(design, folds, target_cycles)
        cyc = design.cycles(us)
        name = _neck(cyc)
    elif name == "input":  # the highest rate is the input's: units faster than it gain nothing
        folds, us, res = shrink(design, folds, cyc[name])
        cyc = design.cycles(us)  # units at most the input's cycles: the input stays the neck
    reached = target_cycles is None or cyc[name] <= target_cycles
    log.info("folding search: %d steps, %d cycles per frame (bottleneck %s), %s; stopped by %s",
             steps, cyc[name], name, _show(res), limit)
    return Result(folds, cyc[name], name, res, reached, limit, steps, history, bound_by)


def _neck(cyc: dict[str, int]) -> str:
    """The bottleneck of cycles per unit (and ``input``): the input where a unit ties with it,
    since no unit's step can then make the design faster."""
    return max(cyc, key=lambda k: (cyc[k], k == "input"))


def _show(res: dict[str, float]) -> str:
    return ", ".join(f"{res[r]:,.1f} {r}" for r in ("LUT", "FF", "BRAM36", "DSP") if r in res)
