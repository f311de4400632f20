"""Session fixtures for the build-flow tests: QONNX exports of every method on TFC and CNV.

The nets have random weights and BatchNorm statistics calibrated on data (so that deep layers
stay input-dependent), with Fashion-MNIST metadata, so builds verify on real test images.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.models.test_export import SHAPES, calibrated, exportable


def export_for_build(net: str, method: str, path: Path, shape: tuple[int, ...] | None = None,
                     dataset: str | None = "fashion-mnist", model=None, **options) -> Path:
    """Export a calibrated random ``net``/``method`` (or ``model``, a net of that kind made by
    the caller) with bnnforge metadata (or none)."""
    from models.data import CLASSES
    from models.export import deployability, export_model, metadata_for

    shape = shape or SHAPES[net]
    saved = SHAPES[net]
    SHAPES[net] = shape
    try:
        model = calibrated(net, method, **options) if model is None else model
    finally:
        SHAPES[net] = saved
    meta = None
    if dataset is not None:
        ok, how = deployability(net, method, options)
        cfg = {"dataset": dataset, "in_shape": shape, "num_classes": 10, "net": net,
               "method": method, "method_options": options}
        pad = 2 if (net == "cnv" and dataset in ("fashion-mnist", "mnist")) else 0
        meta = metadata_for(cfg, CLASSES[dataset], pad,
                            {"deployable": str(ok).lower(), "deployment": how})
    return export_model(exportable(method, model), shape, path, meta)


@pytest.fixture(scope="session")
def build_models(tmp_path_factory) -> dict[tuple[str, str], Path]:
    """Lazily exported models, keyed (net, method); each export happens once per session."""
    root = tmp_path_factory.mktemp("build_models")

    class Lazy(dict):
        def __missing__(self, key: tuple[str, str]) -> Path:
            net, method = key
            self[key] = export_for_build(net, method, root / f"{net}_{method}.onnx")
            return self[key]

    return Lazy()


@pytest.fixture(scope="session")
def small_mlp(tmp_path_factory) -> Path:
    """An MLP of TFC's kind with 8x8 inputs and two hidden layers of 32 (random uint8 inputs
    verify it): its builds and Yosys checks take seconds, for tests of the search's and the
    explorer's mechanics rather than of a net."""
    import torch

    from models.binarize import get_method
    from models.nets import MLP
    from tests.models.test_export import randomize_bn

    torch.manual_seed(3)
    model = MLP(get_method("bnn"), (32, 32), (1, 8, 8), 10)
    randomize_bn(model, data=torch.rand(32, 1, 8, 8))
    return export_for_build("tfc", "bnn", tmp_path_factory.mktemp("mlp") / "mlp.onnx",
                            shape=(1, 8, 8), dataset=None, model=model.eval())


def run_build(*args: str, resources: bool = False) -> tuple[int, dict | None]:
    """Run build.py's main in-process; return (exit code, report.json or None).

    Without ``resources`` (and without an explicit ``--to-step``) the build stops after
    ``rtlsim``: Yosys on the stitched top is left to the tests that check resources.
    """
    from build_flows.build import main

    if not resources and "--to-step" not in args:
        args = (*args, "--to-step", "rtlsim")
    try:
        rc = main([str(a) for a in args])
    except SystemExit as exc:  # options refused by argparse (exit 2, nothing written)
        rc = exc.code
    out = Path(args[list(args).index("--out") + 1])
    report = out / "report.json"
    return rc, (json.loads(report.read_text()) if rc == 0 and report.is_file() else None)


def padded_net(method: str, pad_value: float | None = None):
    """A small conv net with explicit padding (the method's ``pad_value`` unless given) between
    two binary 3x3 convs, as ResNet-style BNNs pad: calibrated, in eval mode."""
    import torch
    from torch import nn

    from models.binarize import get_method
    from models.layers import ScaleToBipolarRange, TensorNorm, int8_input
    from tests.models.test_export import randomize_bn

    m = get_method(method)
    value = m.pad_value if pad_value is None else pad_value

    class PaddedNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(
                ScaleToBipolarRange(), int8_input(), m.conv(1, 16, 3), nn.BatchNorm2d(16),
                m.act(16), nn.ConstantPad2d(1, value), m.conv(16, 16, 3), nn.BatchNorm2d(16),
                m.act(16), nn.MaxPool2d(2))
            self.head = nn.Sequential(m.linear(16 * 13 * 13, 10), TensorNorm())

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.features(x).flatten(1))

    torch.manual_seed(0)
    net = PaddedNet()
    randomize_bn(net, data=torch.rand(32, 1, 28, 28))
    return m.prepare_export(net.eval())
