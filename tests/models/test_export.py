"""QONNX export: parity with PyTorch for every method on TFC and CNV (random weights with
non-trivial BatchNorm statistics, and trained weights), metadata, FINN streamlining, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from models.binarize import METHODS
from models.checkpoint import save_checkpoint
from models.export import (ExportError, check_parity, export_checkpoint, export_model, main,
                           read_metadata)
from models.nets import build_net
from models.trainer import TrainConfig, train

SHAPES = {"tfc": (1, 28, 28), "cnv": (1, 32, 32)}


def randomize_bn(model: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial BatchNorm statistics and affine parameters (negative gains included)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) * 6 - 3)
            m.running_var.copy_(torch.rand(n, generator=g) * 4 + 0.25)
            m.weight.data.copy_(torch.rand(n, generator=g) * 2 - 1)
            m.bias.data.copy_(torch.rand(n, generator=g) * 2 - 1)


@pytest.fixture(scope="session")
def trained_checkpoints(tmp_path_factory, fashion_dir: Path) -> dict[str, Path]:
    """TFC and CNV (bnn) trained briefly on real Fashion-MNIST images: session fixture."""
    from models.data import load_dataset

    out = {}
    for net, n_train in (("tfc", 6000), ("cnv", 600)):
        side = SHAPES[net][-1]
        tr = load_dataset("fashion-mnist", "train", pad_to=side).subset(n_train)
        te = load_dataset("fashion-mnist", "test", pad_to=side).subset(200)
        cfg = TrainConfig(net=net, method="bnn", dataset="fashion-mnist", in_shape=SHAPES[net],
                          num_classes=10, epochs=1, seed=1)
        run = tmp_path_factory.mktemp(f"trained_{net}")
        train(cfg, tr, te, run, progress=False)
        out[net] = run / "checkpoint.pt"
    return out


@pytest.mark.parametrize("net", ["tfc", "cnv"])
@pytest.mark.parametrize("method", sorted(METHODS))
def test_parity_random_weights(tmp_path: Path, net: str, method: str, fashion_test32,
                               fashion_test) -> None:
    torch.manual_seed(3)
    model = build_net({"net": net, "method": method, "in_shape": SHAPES[net], "num_classes": 10})
    randomize_bn(model)
    path = export_model(model, SHAPES[net], tmp_path / "m.onnx")
    ds = fashion_test32 if net == "cnv" else fashion_test
    images = torch.cat([ds.images[:4].float() / 255, torch.rand(2, *SHAPES[net])])
    rep = check_parity(path, model, images)
    assert rep.ok, rep
    # the check can fail: a perturbed model is caught
    with torch.no_grad():
        next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)).bias.add_(5.0)
    assert not check_parity(path, model, images).ok


@pytest.mark.parametrize("net", ["tfc", "cnv"])
def test_parity_trained_weights_and_metadata(tmp_path: Path, trained_checkpoints, net: str) -> None:
    summary = export_checkpoint(trained_checkpoints[net], tmp_path / "m.onnx", finn_check=False,
                                parity_samples=10)
    assert summary["parity"]["ok"] and summary["parity"]["samples"] == 10
    meta = read_metadata(tmp_path / "m.onnx")
    assert meta["dataset"] == "fashion-mnist" and meta["net"] == net and meta["method"] == "bnn"
    assert json.loads(meta["classes"])[9] == "Ankle boot"
    assert json.loads(meta["input_shape"]) == [1, *SHAPES[net]]
    assert meta["input_padding"] == ("2" if net == "cnv" else "0")


@pytest.mark.finn
def test_tfc_streamlines_in_finn(tmp_path: Path, trained_checkpoints) -> None:
    summary = export_checkpoint(trained_checkpoints["tfc"], tmp_path / "m.onnx", parity_samples=4)
    ops = summary["finn"]["op_types"]
    assert ops["XnorPopcountMatMul"] == 4 and ops["MultiThreshold"] == 4


@pytest.mark.finn
@pytest.mark.slow
def test_cnv_streamlines_in_finn(tmp_path: Path, trained_checkpoints) -> None:
    summary = export_checkpoint(trained_checkpoints["cnv"], tmp_path / "m.onnx", parity_samples=4)
    ops = summary["finn"]["op_types"]
    # 8 binary layers become XNOR-popcount; the 8-bit first layer stays an integer MatMul
    assert ops["XnorPopcountMatMul"] == 8 and ops["MatMul"] == 1 and ops["MaxPoolNHWC"] == 2


def test_parity_failure_names_sample(tmp_path: Path, trained_checkpoints,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import models.export as export

    real = export.run_onnx

    def corrupt(path, images):
        out = real(path, images)
        out[3, 1] += 1.0
        return out

    monkeypatch.setattr(export, "run_onnx", corrupt)
    with pytest.raises(ExportError, match="test sample 3"):
        export_checkpoint(trained_checkpoints["tfc"], tmp_path / "m.onnx", finn_check=False,
                          parity_samples=5)


def test_cli_errors(tmp_path: Path, caplog) -> None:
    assert main(["--checkpoint", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "x")]) == 1
    assert "checkpoint not found" in caplog.text
    bad = tmp_path / "bad.pt"
    torch.save({"hello": 1}, bad)
    assert main(["--checkpoint", str(bad), "--out", str(tmp_path / "x")]) == 1
    assert "not a bnnforge checkpoint" in caplog.text


def test_cli_exports_synthetic_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = TrainConfig(net="tfc", method="bnn", dataset="synthetic", in_shape=(1, 28, 28),
                      num_classes=10, epochs=1)
    model = build_net(cfg.to_dict())
    randomize_bn(model)
    save_checkpoint(tmp_path / "c.pt", {"config": cfg.to_dict(), "model": model.state_dict()})
    assert main(["--checkpoint", str(tmp_path / "c.pt"), "--out", str(tmp_path / "m.onnx"),
                 "--no-finn-check"]) == 0
    assert read_metadata(tmp_path / "m.onnx")["dataset"] == "synthetic"
