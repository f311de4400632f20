"""Training: reproducibility, bit-identical resume, CLI outputs, and one real run (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
import torch

from models import train as train_cli
from models.checkpoint import load_checkpoint
from models.data import load_dataset
from models.binarize import METHODS, binary_weight_layers
from models.trainer import TrainConfig, resolve_device, sqr_hinge_loss, train


def synthetic_sets(n: int = 600):
    return (load_dataset("synthetic", "train", synthetic_size=n),
            load_dataset("synthetic", "test", synthetic_size=200))


def small_cfg(**kw) -> TrainConfig:
    base = dict(net="tfc", method="bnn", dataset="synthetic", in_shape=(1, 28, 28),
                num_classes=10, epochs=2, batch_size=50, seed=7)
    base.update(kw)
    return TrainConfig(**base)


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs"


@pytest.mark.parametrize("method", sorted(METHODS))
def test_resume_is_bit_identical(tmp_path: Path, method: str) -> None:
    tr, te = synthetic_sets()
    cfg = small_cfg(method=method)
    full = train(cfg, tr, te, tmp_path / "full", progress=False)
    train(cfg, tr, te, tmp_path / "split", progress=False, stop_after=1)
    assert load_checkpoint(tmp_path / "split" / "checkpoint.pt")["epoch"] == 1
    split = train(cfg, tr, te, tmp_path / "split", resume=True, progress=False)
    assert_same_state(load_checkpoint(tmp_path / "full" / "checkpoint.pt")["model"],
                      load_checkpoint(tmp_path / "split" / "checkpoint.pt")["model"])
    assert [h["train_loss"] for h in full["history"]] == [h["train_loss"] for h in split["history"]]


def test_resume_keeps_training_quantizer_parameters(tmp_path: Path) -> None:
    """Parameters inside Brevitas quantizers (bnn_plus' alpha, SD-BNN's WSD a) are re-created when
    a state dict loads: the optimizer must hold the new ones, or they freeze after a resume."""
    tr, te = synthetic_sets(300)
    cfg = small_cfg(method="sd_bnn", epochs=3)
    train(cfg, tr, te, tmp_path, progress=False, stop_after=1)
    key = "features.4.weight_quant.tensor_quant.wsd_a"
    before = load_checkpoint(tmp_path / "checkpoint.pt")["model"][key].clone()
    train(cfg, tr, te, tmp_path, resume=True, progress=False)
    assert not torch.equal(before, load_checkpoint(tmp_path / "checkpoint.pt")["model"][key])


def test_same_seed_same_result_other_seed_differs(tmp_path: Path) -> None:
    tr, te = synthetic_sets(300)
    a = train(small_cfg(epochs=1), tr, te, tmp_path / "a", progress=False)
    b = train(small_cfg(epochs=1), tr, te, tmp_path / "b", progress=False)
    c = train(small_cfg(epochs=1, seed=8), tr, te, tmp_path / "c", progress=False)
    assert a["history"][0]["train_loss"] == b["history"][0]["train_loss"]
    assert a["history"][0]["train_loss"] != c["history"][0]["train_loss"]


def test_latent_weights_clipped(tmp_path: Path) -> None:
    tr, te = synthetic_sets(300)
    train(small_cfg(epochs=1, lr=0.5), tr, te, tmp_path, progress=False)
    from models.checkpoint import load_model

    model, _, _ = load_model(tmp_path / "checkpoint.pt")
    layers = binary_weight_layers(model)
    assert len(layers) == 4
    assert all(float(m.weight.detach().abs().max()) <= 1.0 for m in layers)
    assert any(float(m.weight.detach().abs().max()) == 1.0 for m in layers), "lr 0.5 should hit the clip"


def test_sqr_hinge_loss_formula() -> None:
    logits = torch.tensor([[0.5, -2.0, 1.5]])
    # t = [-1, -1, +1]: max(0, 1 + 0.5)^2 + max(0, 1 - 2)^2 + max(0, 1 - 1.5)^2 = 2.25
    assert float(sqr_hinge_loss(logits, torch.tensor([2]))) == pytest.approx(2.25 / 3)


def test_cli_writes_all_outputs(tmp_path: Path) -> None:
    out = tmp_path / "run"
    rc = train_cli.main(["--net", "tfc", "--method", "xnor", "--dataset", "synthetic",
                         "--epochs", "2", "--out", str(out), "--no-progress", "--no-finn-check",
                         "--loss", "sqr_hinge"])
    assert rc == 0
    for name in ("checkpoint.pt", "metrics.json", "curves.png", "model.onnx"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["test_accuracy"] <= 1.0 and len(metrics["history"]) == 2
    assert metrics["export"]["parity"]["ok"]
    meta = {p.key: p.value for p in onnx.load(str(out / "model.onnx")).metadata_props}
    assert meta["bnnforge.method"] == "xnor" and meta["bnnforge.net"] == "tfc"
    assert json.loads(meta["bnnforge.input_shape"]) == [1, 1, 28, 28]
    # resuming a finished run trains nothing and keeps the checkpoint
    before = (out / "checkpoint.pt").read_bytes()
    assert train_cli.main(["--out", str(out), "--resume", "--no-export", "--no-progress",
                           "--dataset", "synthetic"]) == 0
    assert (out / "checkpoint.pt").read_bytes() == before


def test_cli_resume_without_checkpoint_fails_clearly(tmp_path: Path, capsys) -> None:
    rc = train_cli.main(["--out", str(tmp_path / "none"), "--resume", "--dataset", "synthetic"])
    assert rc == 2
    assert "none holds no run to resume" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()


def test_cnv_trains_on_padded_images(tmp_path: Path) -> None:
    tr = load_dataset("synthetic", "train", pad_to=32, synthetic_size=100)
    te = load_dataset("synthetic", "test", pad_to=32, synthetic_size=50)
    cfg = small_cfg(net="cnv", in_shape=(1, 32, 32), epochs=1)
    metrics = train(cfg, tr, te, tmp_path, progress=False)
    assert metrics["epochs_completed"] == 1


@pytest.mark.slow
def test_tfc_fashion_mnist_reaches_75_percent(tmp_path: Path, fashion_dir: Path) -> None:
    """The issue's reference run: TFC-W1A1, Adam 0.02, batch 100, cross-entropy, 5 epochs."""
    out = tmp_path / "tfc"
    rc = train_cli.main(["--net", "tfc", "--method", "bnn", "--dataset", "fashion-mnist",
                         "--epochs", "5", "--out", str(out), "--no-progress"])
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_accuracy"] >= 0.75, metrics["test_accuracy"]
    assert metrics["export"]["parity"]["ok"]
    assert metrics["export"]["finn"]["op_types"]["XnorPopcountMatMul"] == 4


def test_resolve_device_names_what_is_wrong() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="'tpu7' is not a torch device name"):
        resolve_device("tpu7")
    with pytest.raises(ValueError, match="only cpu and cuda"):
        resolve_device("meta")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="--device cuda: this torch .* sees no CUDA device"):
            resolve_device("cuda")


@pytest.mark.gpu
def test_cuda_training_resumes_bit_identically_and_on_cpu(tmp_path: Path) -> None:
    """On the GPU, for every method: a split run equals the uninterrupted one (the CUDA RNG
    state is in the checkpoint: stochastic binarization draws from it), and the checkpoint
    resumes on the CPU."""
    for method in sorted(METHODS):
        check_cuda_resume(tmp_path / method, method)


def check_cuda_resume(tmp_path: Path, method: str) -> None:
    tr, te = synthetic_sets()
    cfg = small_cfg(method=method, epochs=3)
    full = train(cfg, tr, te, tmp_path / "full", progress=False, device="cuda")
    train(cfg, tr, te, tmp_path / "split", progress=False, stop_after=2, device="cuda")
    split = train(cfg, tr, te, tmp_path / "split", resume=True, progress=False, device="cuda")
    assert_same_state(load_checkpoint(tmp_path / "full" / "checkpoint.pt")["model"],
                      load_checkpoint(tmp_path / "split" / "checkpoint.pt")["model"])
    assert [h["train_loss"] for h in full["history"]] == [h["train_loss"] for h in split["history"]]
    assert {h["device"] for h in full["history"]} == {"cuda"}
    train(cfg, tr, te, tmp_path / "cpu", progress=False, stop_after=2, device="cuda")
    on_cpu = train(cfg, tr, te, tmp_path / "cpu", resume=True, progress=False, device="cpu")
    assert [h["device"] for h in on_cpu["history"]] == ["cuda", "cuda", "cpu"]
    assert on_cpu["test_accuracy"] > 0.3, f"{method}: the resumed model still classifies"


def test_cli_never_overwrites_a_run_unless_forced(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    base = ["--dataset", "synthetic", "--epochs", "1", "--out", str(out), "--no-export",
            "--no-progress"]
    assert train_cli.main(base) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert train_cli.main([*base, "--seed", "3"]) == 2
    err = capsys.readouterr().err
    assert "holds a training run (checkpoint.pt: 1 of 1 epochs): give --resume to continue " \
           "it, or --force to replace it" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert train_cli.main([*base, "--seed", "3", "--force"]) == 0
    assert load_checkpoint(out / "checkpoint.pt")["config"]["seed"] == 3


def test_interrupted_cli_run_resumes_to_the_uninterrupted_result(tmp_path: Path,
                                                                 fashion_dir: Path,
                                                                 capsys) -> None:
    """Ctrl-C (SIGINT) in epoch 2 stops with one line naming the checkpoint; ``--resume`` alone
    restores every recorded option (data subsets, method options, seed, batch size) and ends
    where an uninterrupted run ends; a differing option is refused, a longer --epochs extends."""
    import signal
    import subprocess
    import sys
    import time

    args = ["--net", "tfc", "--method", "bnn_plus", "--method-opt", "beta=2", "--dataset",
            "fashion-mnist", "--train-subset", "4000", "--test-subset", "500", "--epochs", "3",
            "--batch-size", "50", "--seed", "5", "--no-export", "--no-progress"]
    full, split = tmp_path / "full", tmp_path / "split"
    assert train_cli.main([*args, "--out", str(full)]) == 0
    proc = subprocess.Popen([sys.executable, "-m", "models.train", *args, "--out", str(split)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (split / "checkpoint.pt").is_file() and proc.poll() is None:
        assert time.time() < deadline, "no checkpoint after 300 s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if "interrupted" in ln]
    assert len(lines) == 1 and "interrupted (SIGINT): " in lines[0], err
    assert f"holds epoch 1 of 3; continue with: python -m models.train --out {split} --resume" \
        in lines[0]
    assert train_cli.main(["--out", str(split), "--resume", "--lr", "0.1"]) == 2
    assert ("--lr 0.1 differs from the run in " f"{split / 'checkpoint.pt'}, made with 0.02"
            in capsys.readouterr().err)
    assert train_cli.main(["--out", str(split), "--resume", "--epochs", "2"]) == 2
    assert "resume can extend a run, not shorten it" in capsys.readouterr().err
    # only --out and --resume: the rest comes from the checkpoint (an equal value is accepted)
    assert train_cli.main(["--out", str(split), "--resume", "--no-progress", "--no-export",
                           "--train-subset", "4000"]) == 0
    a = json.loads((full / "metrics.json").read_text())
    b = json.loads((split / "metrics.json").read_text())
    assert b["config"] == a["config"] and b["config"]["train_subset"] == 4000
    assert [h["train_loss"] for h in b["history"]] == [h["train_loss"] for h in a["history"]]
    assert_same_state(load_checkpoint(full / "checkpoint.pt")["model"],
                      load_checkpoint(split / "checkpoint.pt")["model"])
    assert train_cli.main(["--out", str(split), "--resume", "--no-progress", "--no-export",
                           "--epochs", "4"]) == 0
    assert load_checkpoint(split / "checkpoint.pt")["epoch"] == 4


@pytest.mark.parametrize(("opts", "message"), [
    (["beta=abc"], "bnn_plus option beta='abc': expected a finite number"),
    (["beta=-1"], "bnn_plus option beta=-1 must be > 0"),
    (["gamma=1"], "has no option(s) ['gamma']")])
def test_cli_method_options_are_checked_before_anything(tmp_path: Path, capsys, opts: list[str],
                                                       message: str) -> None:
    argv = ["--method", "bnn_plus", "--dataset", "synthetic", "--out", str(tmp_path / "run")]
    for opt in opts:
        argv += ["--method-opt", opt]
    assert train_cli.main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
