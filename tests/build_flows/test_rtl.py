"""Node-level rtlsim: our XNOR matrix unit (Verilator) against FINN's Python execution of every
binary MVAU of folded TFC and CNV graphs, with back-pressure, and its full-flow cycles."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.build_flows.conftest import run_build

pytestmark = [pytest.mark.finn, pytest.mark.verilator]

CONFIGS = Path(__file__).resolve().parents[2] / "build_flows" / "configs"


def folded(tmp_path: Path, model: Path, config: str):
    from build_flows import finn_env

    finn_env.prepare()
    from qonnx.core.modelwrapper import ModelWrapper

    out = tmp_path / "b"
    assert run_build("--model", model, "--out", out, "--folding", CONFIGS / config,
                     "--to-step", "minimize_bit_width", "--verify-samples", 1)[0] == 0
    return ModelWrapper(str(out / "steps/11_minimize_bit_width/dataflow.onnx"))


def binary_mvaus(df) -> list:
    from qonnx.custom_op.registry import getCustomOp

    return [n for n in df.graph.node if n.op_type.startswith("MVAU")
            and getCustomOp(n).get_nodeattr("binaryXnorMode") == 1]


@pytest.mark.parametrize("method", ["bnn", "si_bnn"])
def test_tfc_binary_layers_match_finn(tmp_path: Path, build_models, method: str) -> None:
    from build_flows import rtl

    df = folded(tmp_path, build_models["tfc", method], "tfc_w1a1.json")
    nodes = binary_mvaus(df)
    if method == "si_bnn":  # {0,1} activations x bipolar weights: integer MVAUs, not XNOR
        assert not nodes
        with pytest.raises(ValueError, match="is not a binary XNOR MVAU"):
            rtl.xnor_unit(df, df.get_nodes_by_op_type("MVAU_hls")[0])
        return
    else:
        assert len(nodes) == 4
    for i, node in enumerate(nodes):
        res = rtl.node_rtlsim(df, node, 4, tmp_path / node.name, seed=i, p_valid=0.7,
                              p_ready=0.6)
        assert res["mismatches"] == 0, res["first_mismatch"]
    # full flow: the first layer (16 x 49 folding) takes its 64 cycles per frame
    res = rtl.node_rtlsim(df, nodes[0], 20, tmp_path / "flow")
    assert res["mismatches"] == 0 and 64 <= res["cycles_per_frame"] <= 64 * 1.05


@pytest.mark.slow
def test_cnv_binary_layers_match_finn(tmp_path: Path, build_models) -> None:
    from build_flows import rtl

    df = folded(tmp_path, build_models["cnv", "bnn"], "cnv_w1a1_1ch.json")
    nodes = binary_mvaus(df)
    assert len(nodes) == 8
    for i, node in enumerate(nodes):
        res = rtl.node_rtlsim(df, node, 1, tmp_path / node.name, seed=i, p_valid=0.8,
                              p_ready=0.8)
        assert res["mismatches"] == 0, res["first_mismatch"]
