"""Graph helpers the steps share: tidy-up, and the parent graph's dataflow partition.

After ``dataflow_partition`` the build's graph is a parent whose StreamingDataflowPartition node
points at a child model file; the steps from ``specialize`` on transform that child
(:func:`apply_to_dataflow`), writing each result to a new file so that every finished step's
saved graph stays as it was (builds resume from it).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from build_flows import finn_env

finn_env.prepare()

from qonnx.core.modelwrapper import ModelWrapper  # noqa: E402
from qonnx.custom_op.registry import getCustomOp  # noqa: E402
from qonnx.transformation.fold_constants import FoldConstants  # noqa: E402
from qonnx.transformation.general import (GiveReadableTensorNames, GiveUniqueNodeNames,  # noqa: E402
                                          RemoveStaticGraphInputs)
from qonnx.transformation.infer_datatypes import InferDataTypes  # noqa: E402
from qonnx.transformation.infer_shapes import InferShapes  # noqa: E402


def tidy(model: ModelWrapper) -> ModelWrapper:
    """Shape/datatype inference, constant folding, readable unique names."""
    for t in (InferShapes(), FoldConstants(), GiveUniqueNodeNames(), GiveReadableTensorNames(),
              InferDataTypes(), RemoveStaticGraphInputs()):
        model = model.transform(t)
    return model


def partition_node(model: ModelWrapper) -> Any | None:
    """The (single) StreamingDataflowPartition node of a parent model, if any."""
    nodes = model.get_nodes_by_op_type("StreamingDataflowPartition")
    return nodes[0] if nodes else None


def dataflow_model(model: ModelWrapper) -> ModelWrapper:
    """The dataflow child model of a parent (or the model itself before partitioning)."""
    node = partition_node(model)
    if node is None:
        return model
    return ModelWrapper(getCustomOp(node).get_nodeattr("model"))


def apply_to_dataflow(model: ModelWrapper, fn: Callable[[ModelWrapper], ModelWrapper],
                      work_dir: Path) -> ModelWrapper:
    """Apply ``fn`` to the dataflow child, save it as a new file under ``work_dir`` and point the
    parent at it: the previous step's saved child stays untouched (builds resume from it)."""
    node = partition_node(model)
    if node is None:
        return fn(model)
    inst = getCustomOp(node)
    child = fn(ModelWrapper(inst.get_nodeattr("model")))
    work_dir.mkdir(parents=True, exist_ok=True)
    fd, path = tempfile.mkstemp(prefix="dataflow_", suffix=".onnx", dir=work_dir)
    os.close(fd)
    child.save(path)
    inst.set_nodeattr("model", path)
    return model
