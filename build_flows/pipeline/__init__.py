"""The build pipeline: the ordered list of named steps :data:`STEPS`, each a plain
``(model, cfg) -> model`` (:data:`~build_flows.pipeline.config.ModelStep`).

* :mod:`~build_flows.pipeline.finn_steps`: QONNX to a folded FINN dataflow graph (finn-plus and
  qonnx transformations, ours in :mod:`~build_flows.pipeline.transforms`, folding files in
  :mod:`~build_flows.pipeline.folding`) and FINN's estimates;
* :mod:`~build_flows.pipeline.hw_steps`: our RTL for that graph, its stitched Verilator
  simulation, the deployment package, Yosys resources (through :mod:`build_flows.backend`);
* :mod:`~build_flows.pipeline.vivado`: finn-plus's Vivado steps to the bitfile, run after the
  list when Vivado is found.

The runner (``build_flows/build.py``) verifies the graph after each step and writes it to
``out/steps/NN_<name>/``. A new step is a function in one of those modules and one line here.
Imports run CLI -> pipeline -> deploy -> backend -> ``hw``; importing the pipeline registers our
FINN ops (:mod:`build_flows.backend.ops`).
"""

from __future__ import annotations

from build_flows.pipeline import finn_steps as F
from build_flows.pipeline import hw_steps as H
from build_flows.pipeline.config import BuildConfig, ModelStep

#: the build's steps in order; ``out/steps/NN_<name>/`` is step NN of this list
STEPS: list[tuple[str, ModelStep]] = [
    ("qonnx_to_finn", F.step_qonnx_to_finn),
    ("tidy_up", F.step_tidy_up),
    ("pre_post", F.step_pre_post),
    ("streamline", F.step_streamline),
    ("xnor_popcount", F.step_xnor_popcount),
    ("residual", F.step_residual),
    ("round_thresholds", F.step_round_thresholds),
    ("hw_layers", F.step_hw_layers),
    ("dataflow_partition", F.step_dataflow_partition),
    ("specialize", F.step_specialize),
    ("folding", F.step_folding),
    ("minimize_bit_width", F.step_minimize_bit_width),
    ("estimates", F.step_estimates),
    ("rtl", H.step_rtl),
    ("rtlsim", H.step_rtlsim),
    ("deploy", H.step_deploy),
    ("resources", H.step_resources),
]
STEP_NAMES = [name for name, _ in STEPS]

__all__ = ["STEPS", "STEP_NAMES", "BuildConfig"]
