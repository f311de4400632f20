"""The build configuration every step reads, and the results the steps leave for later ones."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from build_flows.boards import Board


@dataclass
class BuildConfig:
    """Everything a step may read. ``folding_config`` is a validated folding dict or None."""

    #: the build directory (``out/steps/``, ``out/rtl/``, ``out/deploy/``, reports)
    out: Path
    #: the target board (part, clock, family, resources)
    board: Board
    #: the clock period the FPS figures and FINN's folding use
    clock_ns: float
    #: the rate the folding aims at when no folding file is given ("max": the highest the budget
    #: holds, our search only)
    target_fps: float | str | None = None
    #: who folds without a folding file: "bnnforge" (our search, hw.fold) or "finn" (SetFolding)
    folding_engine: str = "bnnforge"
    #: fractions of the part our search may fill ({"LUT": 0.8, ...}; None: the defaults)
    budget: dict[str, float] | None = None
    #: {layer: {PE, SIMD, ...}} from the folding file
    folding_config: dict[str, Any] | None = None
    #: SetFolding's cap on SIMD x weight bits
    mvau_wwidth_max: int = 36
    #: host post-processing after the accelerator (a per-channel affine tail)
    host_postproc: list[str] = field(default_factory=list)
    #: nodes of the parent graph that run on the host
    host_nodes: list[str] = field(default_factory=list)
    #: FINN's cycle and resource estimates (the ``estimates`` step)
    estimates: dict[str, Any] = field(default_factory=dict)
    #: rtl, rtlsim, performance, deploy, resources (the hardware steps)
    hw: dict[str, Any] = field(default_factory=dict)
    #: verify.Inputs: the verification images (rtlsim)
    inputs: Any = None
    #: Yosys resources per unit too
    per_node: bool = False

    @property
    def work_dir(self) -> Path:
        return self.out / "work"


#: a build step: a plain function of the graph and the configuration
ModelStep = Callable[[Any, BuildConfig], Any]
