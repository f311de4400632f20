"""finn-plus 1.6.1's Vivado assumptions (fail loudly if a new finn-plus changes them), the
"Vivado not found" branch, the board table, and the full bitfile build where Vivado exists."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from build_flows.pipeline import vivado
from build_flows.boards import BOARDS, get_board

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.finn
def test_finn_plus_version_is_the_pinned_one() -> None:
    assert importlib.metadata.version("finn-plus") == vivado.FINN_PLUS_VERSION, (
        "finn-plus changed: re-check build_flows/pipeline/vivado.py's assumptions, then update the pin")


@pytest.mark.finn
def test_builder_steps_import_xsi_at_module_level() -> None:
    spec = importlib.util.find_spec("finn.builder.build_dataflow_steps")
    source = Path(spec.origin).read_text()
    assert any(line.strip() == vivado.XSI_IMPORT for line in source.splitlines()
               if not line.startswith((" ", "\t"))), "the module-level XSI import moved"
    for name in vivado.VIVADO_STEPS:
        assert f"def {name}(" in source, f"finn-plus no longer defines {name}"


@pytest.mark.finn
def test_builder_steps_need_xilinx_vivado() -> None:
    """Without XILINX_VIVADO, importing the builder steps raises finn.xsi's OSError."""
    env = {k: v for k, v in os.environ.items() if k != "XILINX_VIVADO"}
    code = ("from build_flows import finn_env; finn_env.prepare()\n"
            "import finn.builder.build_dataflow_steps")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=300)
    assert proc.returncode != 0
    assert "OSError: XILINX_VIVADO environment variable not set" in proc.stderr


def test_missing_vivado_is_one_sentence(monkeypatch) -> None:
    monkeypatch.delenv("XILINX_VIVADO", raising=False)
    reason = vivado.missing()
    assert reason == "Vivado not found: XILINX_VIVADO is not set (source Vivado's settings64.sh)"
    with pytest.raises(RuntimeError, match="finn-plus's Vivado steps cannot load: Vivado not"):
        vivado.import_builder_steps()
    monkeypatch.setenv("XILINX_VIVADO", "/opt/vivado")
    assert "does not name a Vivado version" in vivado.missing()
    monkeypatch.setenv("XILINX_VIVADO", "/tools/Xilinx/Vivado/2024.2")
    monkeypatch.setenv("PATH", "/nonexistent")
    assert vivado.missing() == ("vivado is not on PATH (source Vivado's and Vitis HLS' "
                                "settings64.sh)")


@pytest.mark.finn
def test_board_parts_match_finn_plus() -> None:
    from build_flows import finn_env

    finn_env.prepare()
    from finn.util.basic import pynq_part_map

    for board in BOARDS.values():
        assert pynq_part_map[board.finn_name] == board.part, board.name
    assert get_board("pynq-z2").name == "Pynq-Z2" and get_board("kv260").part.startswith("xck26")
    with pytest.raises(ValueError, match="unknown board 'Zedboard'"):
        get_board("Zedboard")


@pytest.mark.vivado
@pytest.mark.finn
@pytest.mark.slow
def test_full_bitfile_build(tmp_path: Path, build_models) -> None:
    from tests.build_flows.conftest import run_build

    rc, report = run_build("--model", build_models["tfc", "bnn"], "--out", tmp_path / "b",
                           "--folding", REPO / "build_flows/configs/tfc_w1a1.json",
                           "--verify-samples", 3)
    assert rc == 0
    assert report["bitfile"]["path"] and Path(report["bitfile"]["path"]).is_file()
    assert Path(report["bitfile"]["deploy_dir"]).is_dir()
