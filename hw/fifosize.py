"""FIFO sizing by Verilator simulation of the stitched accelerator, without Vivado.

:func:`size` chooses every FIFO's depth in three steps:

1. **Profile.** Stitch with generous depths (each FIFO can hold a whole frame of its stream,
   at least the analytic depth of :func:`hw.stitch.fifo_depth_for`) and simulate a few frames
   with the input paced at the ideal rate: one frame per bottleneck period B
   (:func:`hw.rate.bottleneck`), its beats spread evenly. Paced so, no FIFO fills up just
   because it sits upstream of the bottleneck, and each FIFO's peak occupancy is what rate
   matching (a unit reading its input in bursts, a shortcut waiting for its branch) needs.
2. **Set** depth = peak + 2 (two entries keep a registered-ready FIFO at one beat per cycle),
   or the analytic depth if that is less: in front of the bottleneck a FIFO fills whenever its
   producer runs faster for a while (a window generator emitting a row's windows), which costs
   memory and gains nothing. Not so into a join (the residual add's zip): there a FIFO holds
   what the other branch takes to produce its first result (the shortcut FIFO: about K - 1
   rows of a 3x3 conv's input), which no analytic depth of a chain knows, so its peak it is.
   Pinned depths (a folding file's) are kept as given.
3. **Confirm.** Stitch with those depths and simulate unpaced, at full flow: the measured
   cycles per frame must reach ``rate`` (95 %) of B. Short of it, FIFOs that filled up are
   doubled (at least to their analytic depth) and the run repeated, a few rounds at most.

No simulation can hang: each run stops when no beat moves at either port for longer than a
frame's passage through every stage, which is reported as a deadlock. Our units have fixed
schedules (no timing depends on data), so the runs stream zeros. A pinned FIFO that deadlocks
the design raises :class:`FifoError` naming it and the depth the profile found it needs.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hw import rate, stitch, units, verilator

log = logging.getLogger(__name__)

#: frames of each run: the first fills the pipeline, the rest are steady state
FRAMES = 4
#: at most this many confirm runs
ROUNDS = 4
#: profile depths: at most this many entries (a simulation array, never synthesized)
GENEROUS_MAX = 1 << 20


class FifoError(ValueError):
    """A pinned FIFO depth deadlocks the accelerator; the message names the FIFO."""


@dataclass
class FifoPlan:
    """The sized FIFOs and what the confirm run measured."""

    depths: dict[str, int]
    widths: dict[str, int]
    peaks: dict[str, int]          # peak occupancy at full flow (the confirm run)
    profile_peaks: dict[str, int]  # peak occupancy with the input paced at the ideal rate
    pinned: dict[str, int]
    bottleneck: str
    ideal_cycles: int
    cycles_per_frame: float
    rounds: int
    notes: list[str] = field(default_factory=list)

    @property
    def efficiency(self) -> float:
        return self.ideal_cycles / self.cycles_per_frame

    @property
    def bits(self) -> int:
        return sum(self.depths[n] * self.widths[n] for n in self.depths)

    def table(self) -> list[dict[str, object]]:
        """One row per FIFO: name, width, depth, bits, peak at full flow, pinned or sized."""
        return [{"name": n, "width": self.widths[n], "depth": d, "bits": d * self.widths[n],
                 "peak": self.peaks.get(n), "pinned": n in self.pinned}
                for n, d in self.depths.items()]

    def to_json(self) -> dict[str, object]:
        out = asdict(self)
        out.update(efficiency=round(self.efficiency, 4), bits=self.bits, fifos=self.table())
        for k in ("depths", "widths", "peaks", "profile_peaks"):
            out.pop(k)
        return out


def _run(nodes: list[units.Unit], edges: list[stitch.Edge] | None, depths: dict[str, int],
         work: Path, in_beats: int, out_beats: int, in_interval: float,
         idle: int) -> tuple[verilator.Trace, int]:
    top, stages = stitch.write(nodes, work, depths=depths, edges=edges)
    sim = verilator.build("accel", stitch.filelist(stages, top))
    t = verilator.trace(sim, [0] * (FRAMES * in_beats), FRAMES * out_beats, work,
                        max_cycles=FRAMES * idle * 4 + 100_000, in_interval=in_interval,
                        idle_limit=idle)
    return t, out_beats


def _per_frame(t: verilator.Trace, out_beats: int) -> float:
    ends = [t.stamps[(f + 1) * out_beats - 1] for f in range(FRAMES)]
    return (ends[-1] - ends[1]) / (FRAMES - 2)


def size(nodes: list[units.Unit], work: Path, in_bits: int,
         pinned: dict[str, int] | None = None, target: float = 0.95,
         edges: list[stitch.Edge] | None = None) -> FifoPlan:
    """Depths for the FIFOs :func:`hw.stitch.connect` puts between ``nodes`` joined by
    ``edges`` (default: a chain), fed ``in_bits`` per frame, sized and confirmed by simulation
    in ``work`` (see the module docstring)."""
    pinned = dict(pinned or {})
    base, wires = stitch.connect(nodes, edges)
    fifos = {s.name: s for s in base if s.module == "fifo"}
    unknown = sorted(set(pinned) - set(fifos))
    if unknown:
        raise FifoError(f"pinned FIFO depths for {', '.join(unknown)}: no such FIFO (the FIFOs "
                        f"are {', '.join(fifos) or 'none'})")
    for n, d in pinned.items():
        if int(d) < 1:
            raise FifoError(f"pinned depth of {n} is {d}: a FIFO needs at least 1 entry")
    sched = {n: (bits, cycles) for n, bits, cycles in rate.schedule(base, in_bits, wires)}
    neck, ideal = max(((n, c) for n, (_, c) in sched.items()), key=lambda r: r[1])
    idle = sum(c for _, c in sched.values()) + 1000  # no beat moves for this long: a deadlock
    (first, _), (last, _) = stitch.top_ports(base, wires)
    stage = {s.name: s for s in base}
    in_beats = in_bits // stage[first].in_width
    out_bits, _ = rate.unit_rate(stage[last], sched[last][0])
    out_beats = out_bits // stage[last].out_width
    widths = {n: f.params["WIDTH"] for n, f in fifos.items()}
    analytic = {n: f.params["DEPTH"] for n, f in fifos.items()}

    generous = {n: min(GENEROUS_MAX, max(analytic[n], -(-sched[n][0] // widths[n]) + 2))
                for n in fifos}  # pins aside: the profile says what each FIFO needs
    prof, _ = _run(nodes, edges, generous, work / "fifo_profile", in_beats, out_beats,
                   ideal / max(in_beats, 1), idle)
    if prof.stalled is not None:
        raise verilator.Stalled(f"FIFO sizing: the profile run with every FIFO a frame deep "
                                f"stopped making progress at cycle {prof.stalled}", prof)
    profile_peaks = {n: prof.fifos[n][0] for n in fifos}
    # into a join (a residual add), the FIFO holds what the other branch takes to start: its
    # peak, not an analytic depth, which knows nothing of the other branch
    joins = {w.src for w in wires if w.dst in stage and len(stage[w.dst].inputs) > 1}
    depths = {n: pinned.get(n) or (profile_peaks[n] + 2 if n in joins else
                                   min(profile_peaks[n] + 2, analytic[n])) for n in fifos}

    notes: list[str] = []
    for rnd in range(1, ROUNDS + 1):
        t, _ = _run(nodes, edges, depths, work / "fifo_confirm", in_beats, out_beats, 0.0, idle)
        if t.stalled is not None:
            if any(t.fifos[n][1] == depths[n] for n in pinned):
                _refuse(t, pinned, profile_peaks)
            grow = [n for n in fifos if n not in pinned and t.fifos[n][1] == depths[n]]
        else:
            per_frame = _per_frame(t, out_beats)
            if ideal / per_frame >= target or rnd == ROUNDS:
                break
            grow = [n for n in fifos if n not in pinned and t.fifos[n][0] == depths[n]]
        if not grow:
            break
        notes.append(f"round {rnd}: grew {', '.join(grow)}")
        for n in grow:
            depths[n] = max(2 * depths[n], analytic[n], profile_peaks[n] + 2)
    if t.stalled is not None:
        raise FifoError(f"the accelerator deadlocks with FIFO depths {depths} and no FIFO left "
                        "to grow")
    plan = FifoPlan(depths, widths, {n: t.fifos[n][0] for n in fifos}, profile_peaks, pinned,
                    neck, ideal, per_frame, rnd, notes)
    if plan.efficiency < target:
        held = [n for n in pinned if t.fifos[n][0] == depths[n]]
        plan.notes.append(f"{plan.efficiency:.1%} of the ideal rate" +
                          (f"; pinned FIFOs that filled up: {', '.join(held)}" if held else ""))
        log.warning("FIFO sizing: %.0f cycles per frame, %.1f%% of the bottleneck %s's %d%s",
                    per_frame, 100 * plan.efficiency, neck, ideal,
                    f" (pinned FIFOs that filled up: {', '.join(held)})" if held else "")
    log.info("FIFO sizing: %d FIFOs, %d bits in all; %.0f cycles per frame at full flow, "
             "%.1f%% of the bottleneck %s's %d (%d confirm run%s)", len(depths), plan.bits,
             per_frame, 100 * plan.efficiency, neck, ideal, rnd, "s" if rnd > 1 else "")
    return plan


def _refuse(t: verilator.Trace, pinned: dict[str, int], peaks: dict[str, int]) -> None:
    """Raise FifoError for a deadlocked run: the full pinned FIFOs and what they need."""
    full = [n for n in pinned if t.fifos[n][1] == pinned[n]] or list(pinned)
    needs = ", ".join(f"{n} pinned at depth {pinned[n]} needs at least {peaks[n] + 2}"
                      for n in full)
    raise FifoError(f"the accelerator deadlocks (no beat moved after cycle {t.stalled}): "
                    f"{needs}")
