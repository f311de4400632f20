"""QONNX export: parity with PyTorch for every method on TFC and CNV (random weights with
non-trivial BatchNorm statistics, and trained weights), metadata, FINN streamlining, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from models.binarize import METHODS, get_method
from models.checkpoint import save_checkpoint
from models.export import (ExportError, check_parity, export_checkpoint, export_model,
                           finn_available, main, read_metadata)
from models.nets import build_net
from models.trainer import TrainConfig, train

SHAPES = {"tfc": (1, 28, 28), "cnv": (1, 32, 32), "resnet": (1, 28, 28)}
#: methods whose papers use residual topologies (plus the baseline)
RESIDUAL_METHODS = ("bnn", "sd_bnn", "si_bnn", "bbg")


def randomize_bn(model: torch.nn.Module, seed: int = 0,
                 data: torch.Tensor | None = None) -> None:
    """Non-trivial BatchNorm statistics and affine parameters (negative gains included).

    With ``data``, the running statistics are those of one training-mode pass over it (so that
    deep layers stay input-dependent); without, they are random.
    """
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d))]
    if data is not None:
        for m in bns:
            m.momentum = 1.0
        with torch.no_grad():
            model.train()(data)
        for m in bns:
            m.momentum = 0.1
    for m in bns:
        n = m.num_features
        if data is None:
            m.running_mean.copy_(torch.rand(n, generator=g) * 6 - 3)
            m.running_var.copy_(torch.rand(n, generator=g) * 4 + 0.25)
        m.weight.data.copy_(torch.rand(n, generator=g) * 2 - 1)
        m.bias.data.copy_(torch.rand(n, generator=g) * 0.5 - 0.25)
    # method parameters away from their initial values (ASD beta, Si-BNN theta/s, gates, WSD a)
    for name, p in model.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        if leaf in ("beta", "theta", "wsd_a"):
            p.data.copy_(torch.rand(p.shape, generator=g) * 2 - 1)
        elif leaf in ("s", "g"):
            p.data.copy_(torch.rand(p.shape, generator=g) + 0.5)


def exportable(method: str, model: torch.nn.Module) -> torch.nn.Module:
    """The method's export copy; staged residual annealed to order 1 first."""
    m = get_method(method)
    m.on_epoch_start(model, 9, 10)
    return m.prepare_export(model)


def calibrated(net: str, method: str, **options) -> torch.nn.Module:
    """A net with random weights; the residual net's 8-bit stream scales initialised by a few
    training batches (Brevitas collects their statistics)."""
    torch.manual_seed(3)
    model = build_net({"net": net, "method": method, "in_shape": SHAPES[net], "num_classes": 10,
                       "method_options": options})
    randomize_bn(model, data=torch.rand(32, *SHAPES[net]))
    return model.eval()


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


PARITY_CASES = ([("tfc", m) for m in sorted(METHODS)] + [("cnv", m) for m in sorted(METHODS)]
                + [("resnet", m) for m in RESIDUAL_METHODS])


@pytest.mark.parametrize(("net", "method"), PARITY_CASES)
def test_parity_random_weights(tmp_path: Path, net: str, method: str, fashion_test32,
                               fashion_test) -> None:
    model = calibrated(net, method)
    path = export_model(exportable(method, model), SHAPES[net], tmp_path / "m.onnx")
    ds = fashion_test32 if net == "cnv" else fashion_test
    images = torch.cat([ds.images[:4].float() / 255, torch.rand(2, *SHAPES[net])])
    with torch.no_grad():
        ref = model(images)
    assert float(ref.std(0).max()) > 0.01, "outputs depend on the input"
    rep = check_parity(path, model, images)
    assert rep.ok, rep
    # the check can fail: a perturbed model is caught
    with torch.no_grad():
        next(m for m in model.modules()
             if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d))).weight.neg_()
    assert not check_parity(path, model, images).ok


@pytest.mark.parametrize("method", ["bbg", "sd_bnn"])
def test_weight_transforms_must_be_baked(tmp_path: Path, method: str) -> None:
    """Brevitas re-binarizes the raw latent weight: without baking, centring / WSD are lost."""
    model = calibrated("tfc", method)
    if method == "sd_bnn":  # make WSD flip signs: half the weights 1 (mean ~0.5, shift ~0.005),
        with torch.no_grad():  # the others in [-0.01, 0]
            for name, p in model.named_parameters():
                if name.endswith("wsd_a"):
                    p.fill_(5.0)
                elif name.endswith(".weight") and p.dim() == 2 and p.shape[1] > 10:
                    p.copy_(torch.where(torch.rand_like(p) < 0.5, 1.0, -0.01 * torch.rand_like(p)))
    images = torch.rand(6, *SHAPES["tfc"])
    raw = export_model(model, SHAPES["tfc"], tmp_path / "raw.onnx")
    assert not check_parity(raw, model, images).ok
    baked = export_model(exportable(method, model), SHAPES["tfc"], tmp_path / "baked.onnx")
    assert check_parity(baked, model, images).ok


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


def test_cli_errors(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--checkpoint", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "x.onnx")])
    assert exit_info.value.code == 2
    assert "argument --checkpoint: " in capsys.readouterr().err
    bad = tmp_path / "bad.pt"
    torch.save({"hello": 1}, bad)
    assert main(["--checkpoint", str(bad), "--out", str(tmp_path / "x.onnx")]) == 2
    assert "not a bnnforge checkpoint" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pt"]  # nothing written


def test_cli_keeps_what_exists_and_leaves_nothing_else(tmp_path: Path, capsys,
                                                       monkeypatch) -> None:
    """One file per export (no stray ``.onnx.data``); an existing one is replaced only with
    --force; a failed check leaves no file."""
    from models import export

    ckpt = synthetic_checkpoint(tmp_path / "c.pt")
    out = tmp_path / "out" / "m.onnx"
    args = ["--checkpoint", str(ckpt), "--out", str(out), "--no-finn-check",
            "--parity-samples", "2"]
    assert main(args) == 0
    assert sorted(p.name for p in out.parent.iterdir()) == ["m.onnx"]
    first = out.read_bytes()
    assert main(args) == 2 and "m.onnx exists: give --force" in capsys.readouterr().err
    assert out.read_bytes() == first

    def failing(*_a, **_k):
        raise ExportError("parity broke")

    monkeypatch.setattr(export, "check_export", failing)
    other = tmp_path / "other" / "m.onnx"
    assert main([*args[:3], str(other), *args[4:]]) == 1
    assert not other.parent.exists()
    assert main([*args, "--force"]) == 1 and out.read_bytes() == first
    monkeypatch.undo()
    assert main([*args, "--force"]) == 0 and out.is_file()


def synthetic_checkpoint(path: Path, net: str = "tfc", method: str = "bnn",
                         **options) -> Path:
    torch.manual_seed(0)
    cfg = TrainConfig(net=net, method=method, dataset="synthetic", in_shape=SHAPES[net],
                      num_classes=10, epochs=1, method_options=options)
    model = calibrated(net, method, **options)
    save_checkpoint(path, {"config": cfg.to_dict(), "model": model.state_dict()})
    return path


def test_export_refuses_unannealed_staged_residual(tmp_path: Path) -> None:
    ckpt = synthetic_checkpoint(tmp_path / "c.pt", method="staged_residual")  # lam = 1
    with pytest.raises(ExportError, match=r"c\.pt: staged_residual: .* order 2"):
        export_checkpoint(ckpt, tmp_path / "m.onnx", finn_check=False)


@pytest.mark.parametrize(("net", "method", "options", "deployable"), [
    ("tfc", "si_bnn", {}, True), ("tfc", "sd_bnn", {"asd": "dynamic"}, False),
    ("resnet", "bbg", {}, True), ("resnet", "sd_bnn", {"asd": "dynamic"}, False)])
def test_export_records_deployability(tmp_path: Path, net: str, method: str, options: dict,
                                      deployable: bool) -> None:
    ckpt = synthetic_checkpoint(tmp_path / "c.pt", net, method, **options)
    # the FINN check of a residual export is the residual build tests' business (a minute)
    check = net == "tfc"
    summary = export_checkpoint(ckpt, tmp_path / "m.onnx", finn_check=check, parity_samples=4)
    assert summary["parity"]["ok"] and summary["deployable"] is deployable
    meta = read_metadata(tmp_path / "m.onnx")
    assert meta["deployable"] == str(deployable).lower() and meta["deployment"]
    assert ("finn" in summary) is (check and deployable and finn_available())


def test_cli_prints_deployability_per_method(capsys) -> None:
    assert main(["--methods"]) == 0
    out = capsys.readouterr().out
    for key in METHODS:
        assert f"| `{key}` | **yes**" in out
    assert "| `sd_bnn asd=dynamic` | no: dynamic ASD" in out


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
