"""The Vivado/Vitis HLS half of the build, and finn-plus 1.6.1's Vivado assumptions in one place.

finn-plus 1.6.1 assumes Vivado in two places that matter here, both checked by
``tests/build_flows/test_vivado.py`` so that a new finn-plus that changes them fails loudly:

* ``finn.builder.build_dataflow_steps`` does ``from finn.xsi import SimEngine`` at module level;
  ``finn.xsi`` resolves that name lazily and raises ``OSError("XILINX_VIVADO environment variable
  not set...")`` without Vivado. So the builder's step functions (IP generation, FIFO sizing,
  stitched IP, bitfile, deployment package) can only be imported when Vivado is set up.
* The settings variables: ``XILINX_VIVADO`` (with the version in the path, e.g.
  ``/tools/Xilinx/Vivado/2024.2``), ``vivado`` and ``vitis_hls`` on ``PATH``, plus
  ``FINN_BUILD_DIR``/``FINN_SETTINGS`` (set by :mod:`build_flows.finn_env`).

:func:`finish` runs those Vivado steps on the folded dataflow graph when the tools are found and
otherwise returns ``{"path": None, "reason": ...}`` with one sentence saying what is missing.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

from build_flows.pipeline.graph import dataflow_model

log = logging.getLogger(__name__)

FINN_PLUS_VERSION = "1.6.1"
XSI_IMPORT = "from finn.xsi import SimEngine"
VIVADO_STEPS = ("step_hw_codegen", "step_hw_ipgen", "step_set_fifo_depths",
                "step_create_stitched_ip", "step_synthesize_bitfile", "step_make_driver",
                "step_deployment_package")


def missing() -> str | None:
    """None when Vivado and Vitis HLS can be used, else one sentence saying what is missing."""
    path = os.environ.get("XILINX_VIVADO")
    if not path:
        return "Vivado not found: XILINX_VIVADO is not set (source Vivado's settings64.sh)"
    if not re.search(r"\b20\d{2}\.[12]\b", path):
        return f"XILINX_VIVADO={path} does not name a Vivado version (like .../Vivado/2024.2)"
    for tool in ("vivado", "vitis_hls"):
        if shutil.which(tool) is None:
            return f"{tool} is not on PATH (source Vivado's and Vitis HLS' settings64.sh)"
    return None


def import_builder_steps() -> Any:
    """finn-plus's builder step module; needs Vivado (its module-level XSI import)."""
    reason = missing()
    if reason is not None:
        raise RuntimeError(f"finn-plus's Vivado steps cannot load: {reason}")
    import finn.builder.build_dataflow_steps as steps

    return steps


def finn_config(cfg: Any, out: Path) -> Any:
    """The DataflowBuildConfig finn-plus's Vivado steps read."""
    from finn.builder.build_dataflow_config import DataflowBuildConfig, DataflowOutputType

    board = cfg.board
    return DataflowBuildConfig(
        output_dir=str(out / "vivado"), synth_clk_period_ns=cfg.clock_ns,
        board=board.finn_name, fpga_part=board.part, shell_flow_type="vivado_zynq",
        mvau_wwidth_max=cfg.mvau_wwidth_max, auto_fifo_depths=True,
        generate_outputs=[DataflowOutputType.STITCHED_IP, DataflowOutputType.BITFILE,
                          DataflowOutputType.PYNQ_DRIVER, DataflowOutputType.DEPLOYMENT_PACKAGE])


def finish(model: Any, cfg: Any, out: Path) -> dict[str, Any]:
    """Run the Vivado steps on the dataflow child of ``model``; return report.json's ``bitfile``."""
    reason = missing()
    if reason is not None:
        log.info("stopping after the open steps: %s", reason)
        return {"path": None, "reason": reason}
    steps = import_builder_steps()
    fcfg = finn_config(cfg, out)
    Path(fcfg.output_dir).mkdir(parents=True, exist_ok=True)
    df = dataflow_model(model)
    for name in VIVADO_STEPS:
        log.info("vivado: %s", name)
        df = getattr(steps, name)(df, fcfg)
        df.save(str(out / "vivado" / f"{name}.onnx"))
    bitfiles = sorted((out / "vivado").rglob("*.bit"))
    if not bitfiles:
        return {"path": None, "reason": f"Vivado ran but wrote no .bit under {out / 'vivado'}"}
    return {"path": str(bitfiles[0]), "reason": None,
            "deploy_dir": str(out / "vivado" / "deploy")}
