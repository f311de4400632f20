"""``AddRequant``: a FINN hardware layer of ours, the integer form of a residual add (or of one
wide, uniformly quantized stream) followed by its 8-bit quantizer.

Per channel c, on one (``NumInputs`` = 1) or two integer input streams x and z of the same
shape (NHWC, channels last):

    y = clamp(floor((A[c] * x + G[c] * z + B[c]) / 2^F), outLo, outHi)

in exact integer arithmetic, which is what ``hw/rtl/requant.sv`` computes (two's complement,
an arithmetic shift). :mod:`build_flows.pipeline.residual` makes these nodes from the float graph
and says how close they are to it. FINN sees an ordinary hardware layer: shapes, folding (PE
channels per beat), stream widths, cycles, Python execution; the RTL op comes from the node-type
table (:mod:`build_flows.backend.mapping`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from build_flows import finn_env

finn_env.prepare()

from finn.custom_op.fpgadataflow.hwcustomop import HWCustomOp  # noqa: E402
from qonnx.core.datatype import DataType  # noqa: E402
from qonnx.custom_op.registry import add_op_to_domain  # noqa: E402

DOMAIN = "finn.custom_op.fpgadataflow"


class AddRequant(HWCustomOp):
    """y = clamp(floor((A x + G z + B) / 2^F), lo, hi) per channel (see the module docstring)."""

    def get_nodeattr_types(self) -> dict[str, Any]:
        attrs = {
            "NumChannels": ("i", True, 0),
            "PE": ("i", False, 1),
            "NumInputs": ("i", True, 1),
            "numInputVectors": ("ints", False, [1]),
            "inputDataType": ("s", True, ""),
            "inputDataType1": ("s", False, ""),
            "outputDataType": ("s", True, ""),
            "coefA": ("ints", True, []),
            "coefG": ("ints", False, []),
            "coefB": ("ints", True, []),
            "shift": ("i", True, 0),
            "outLo": ("i", True, 0),
            "outHi": ("i", True, 0),
        }
        attrs.update(super().get_nodeattr_types())
        return attrs

    def _coef(self, name: str) -> np.ndarray:
        v = np.asarray(self.get_nodeattr(name), dtype=np.int64)
        return v if len(v) else np.zeros(self.get_nodeattr("NumChannels"), np.int64)

    def get_input_datatype(self, ind: int = 0) -> Any:
        return DataType[self.get_nodeattr("inputDataType" if ind == 0 else "inputDataType1")]

    def get_output_datatype(self, ind: int = 0) -> Any:
        return DataType[self.get_nodeattr("outputDataType")]

    def get_normal_input_shape(self, ind: int = 0) -> tuple[int, ...]:
        return (*self.get_nodeattr("numInputVectors"), self.get_nodeattr("NumChannels"))

    def get_folded_input_shape(self, ind: int = 0) -> tuple[int, ...]:
        ch, pe = self.get_nodeattr("NumChannels"), self.get_nodeattr("PE")
        return (*self.get_nodeattr("numInputVectors"), ch // pe, pe)

    def get_normal_output_shape(self, ind: int = 0) -> tuple[int, ...]:
        return self.get_normal_input_shape()

    def get_folded_output_shape(self, ind: int = 0) -> tuple[int, ...]:
        return self.get_folded_input_shape()

    def get_instream_width(self, ind: int = 0) -> int:
        return self.get_nodeattr("PE") * self.get_input_datatype(ind).bitwidth()

    def get_outstream_width(self, ind: int = 0) -> int:
        return self.get_nodeattr("PE") * self.get_output_datatype().bitwidth()

    def get_number_output_values(self) -> int:
        return int(np.prod(self.get_folded_output_shape()[:-1]))

    def get_exp_cycles(self) -> int:
        return int(np.prod(self.get_folded_output_shape()[:-1]))

    def make_shape_compatible_op(self, model: Any) -> Any:
        return super().make_const_shape_op(self.get_normal_output_shape())

    def infer_node_datatype(self, model: Any) -> None:
        node = self.onnx_node
        self.set_nodeattr("inputDataType", model.get_tensor_datatype(node.input[0]).name)
        if self.get_nodeattr("NumInputs") > 1:
            self.set_nodeattr("inputDataType1", model.get_tensor_datatype(node.input[1]).name)
        model.set_tensor_datatype(node.output[0], self.get_output_datatype())

    def verify_node(self) -> list[str]:
        ch = self.get_nodeattr("NumChannels")
        info = []
        for name in ("coefA", "coefB") + (("coefG",) if self.get_nodeattr("NumInputs") > 1
                                         else ()):
            if len(self.get_nodeattr(name)) != ch:
                info.append(f"{name} needs {ch} values")
        if ch % self.get_nodeattr("PE"):
            info.append("PE must divide NumChannels")
        return info

    def compute(self, x: np.ndarray, z: np.ndarray | None) -> np.ndarray:
        """The node's function on integer arrays (channels last)."""
        s = np.asarray(x, np.int64) * self._coef("coefA") + self._coef("coefB")
        if z is not None:
            s = s + np.asarray(z, np.int64) * self._coef("coefG")
        return np.clip(s >> self.get_nodeattr("shift"), self.get_nodeattr("outLo"),
                       self.get_nodeattr("outHi"))

    def execute_node(self, context: dict[str, np.ndarray], graph: Any) -> None:
        node = self.onnx_node
        x = np.rint(context[node.input[0]]).astype(np.int64)
        z = (np.rint(context[node.input[1]]).astype(np.int64)
             if self.get_nodeattr("NumInputs") > 1 else None)
        context[node.output[0]] = self.compute(x, z).astype(np.float32)

    # resources: FINN's estimates are not used for our RTL (Yosys measures it)
    def lut_estimation(self, *args: Any) -> int:
        return 0

    def bram_estimation(self, *args: Any) -> int:
        return 0

    def uram_estimation(self, *args: Any) -> int:
        return 0

    def dsp_estimation(self, *args: Any) -> int:
        return 0


def register() -> None:
    """Make the layer known to qonnx's registry in FINN's hardware domain and to FINN's table
    of Python-executable hardware layers (which ``despecialize_model`` reads)."""
    from finn.custom_op.fpgadataflow import custom_op as hw_custom_ops

    add_op_to_domain(DOMAIN, AddRequant)
    hw_custom_ops["AddRequant"] = AddRequant


register()
