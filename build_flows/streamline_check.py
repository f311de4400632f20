"""Check that a QONNX model converts to FINN and streamlines, with unchanged outputs.

``python -m build_flows.streamline_check model.onnx [--samples N] [--json]``

Runs the build's first steps (ConvertQONNXtoFINN, tidy-up, Streamline with conv lowering,
ConvertBipolarMatMulToXnorPopcount and Streamline again, the residual step), then executes the original
and the streamlined graph on ``N`` random inputs in [0, 1] and compares the logits. Exits 1 with
one line naming the failure otherwise. The full build flow lives in ``build_flows/build.py``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter
from typing import Any

import numpy as np

from build_flows import finn_env

log = logging.getLogger(__name__)


def streamline(model: Any) -> Any:
    """The build's first steps (:mod:`build_flows.pipeline.finn_steps`): ConvertQONNXtoFINN,
    tidy-up, streamlining with conv lowering, XNOR-popcount conversion, residual adds to
    integer units. Raises BuildError naming a node that does not streamline (float matrix
    products, leftover BatchNorm/Quant, a residual form that cannot be made exact)."""
    from build_flows.pipeline import finn_steps as steps

    for fn in (steps.step_qonnx_to_finn, steps.step_tidy_up, steps.step_streamline,
               steps.step_xnor_popcount, steps.step_residual):
        model = fn(model, None)
    return model


def check(path: str, samples: int = 3, seed: int = 0) -> dict[str, Any]:
    """Streamline ``path`` and compare its execution with the original; return a summary."""
    finn_env.prepare()
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx

    original = ModelWrapper(path)
    streamlined = streamline(ModelWrapper(path))
    shape = original.get_tensor_shape(original.graph.input[0].name)
    rng = np.random.default_rng(seed)
    max_diff, mismatched = 0.0, []
    for i in range(samples):
        x = rng.random(shape, dtype=np.float32)
        ref = execute_onnx(original, {original.graph.input[0].name: x})[original.graph.output[0].name]
        got = execute_onnx(streamlined, {streamlined.graph.input[0].name: x})[
            streamlined.graph.output[0].name]
        diff = float(np.abs(ref - got).max())
        max_diff = max(max_diff, diff)
        if not np.allclose(ref, got, rtol=1e-5, atol=1e-4):
            mismatched.append(i)
    # A float BatchNorm + sign and its streamlined threshold can round differently when an
    # accumulator lands within an ulp of the threshold: an isolated sample may flip a bit. A graph
    # that streamlined wrongly differs on (nearly) every sample.
    if samples and len(mismatched) * 2 > samples:
        raise RuntimeError(f"{path}: streamlined graph differs on random samples {mismatched}: "
                           f"max |diff| {max_diff:.3g}")
    ops = Counter(n.op_type for n in streamlined.graph.node)
    kinds = matmul_kinds(streamlined)
    return {"samples": samples, "mismatched_samples": mismatched, "max_abs_diff": max_diff,
            "op_types": dict(sorted(ops.items())), "matmuls": kinds}


def matmul_kinds(model: Any) -> list[str]:
    """'<op> <node>: <input dtype> x <weight dtype>' for each matrix product, in graph order.

    XNOR-popcount (BIPOLAR x BIPOLAR), BINARY x BIPOLAR ({0,1} activations: AND-popcount or XNOR
    with the offset in the thresholds) and INTn x BIPOLAR (8-bit first layer) all map to FINN's
    matrix-vector units; FLOAT32 on either side does not.
    """
    kinds = []
    for node in model.graph.node:
        if node.op_type in ("MatMul", "XnorPopcountMatMul"):
            din = model.get_tensor_datatype(node.input[0]).name
            dw = model.get_tensor_datatype(node.input[1]).name
            if node.op_type == "XnorPopcountMatMul":
                din = dw = "BIPOLAR"  # stored as BINARY bits that encode -1/+1
            kinds.append(f"{node.op_type} {node.name}: {din} x {dw}")
    return kinds


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(prog="python -m build_flows.streamline_check")
    ap.add_argument("onnx")
    ap.add_argument("--samples", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="print the summary as one JSON line")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        summary = check(args.onnx, args.samples)
    except Exception as exc:  # report any FINN failure as one line
        print(f"streamline check failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary) if args.json else json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
