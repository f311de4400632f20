"""The comparison benchmark CLI on the synthetic set: runs, resumes, writes JSON, table, plot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.benchmark import main, markdown_table, parse_epochs, summarize


def test_parse_epochs() -> None:
    assert parse_epochs("3", ["tfc", "cnv"]) == {"tfc": 3, "cnv": 3}
    assert parse_epochs("tfc=10,cnv=2", ["tfc", "cnv"]) == {"tfc": 10, "cnv": 2}
    with pytest.raises(ValueError, match=r"no epochs for net\(s\) \['cnv'\]"):
        parse_epochs("tfc=10", ["tfc", "cnv"])


def test_table_compares_with_bnn_and_averages_seeds() -> None:
    runs = [{"net": "tfc", "method": m, "seed": s, "epochs": 2, "test_accuracy": a,
             "seconds_per_epoch": 1.0, "deployable": True, "deployment": "x"}
            for m, s, a in (("bnn", 0, 0.80), ("bnn", 1, 0.82), ("xnor", 0, 0.85))]
    rows = summarize(runs)
    bnn = next(r for r in rows if r["method"] == "bnn")
    assert bnn["test_accuracy"] == pytest.approx(0.81) and bnn["test_accuracy_std"] > 0
    table = markdown_table(rows, "synthetic", {"budget": "b", "seeds": "0,1", "machine": "m",
                                               "command": "c"})
    assert "| `xnor` | tfc | 85.00 | +4.00 | 2 | 1.0 | yes |" in table
    assert table.index("`xnor`") < table.index("`bnn`"), "sorted by accuracy"


def test_benchmark_cli_synthetic(tmp_path: Path) -> None:
    args = ["--dataset", "synthetic", "--nets", "tfc", "--methods", "bnn,si_bnn", "--epochs", "2",
            "--train-subset", "300", "--runs", str(tmp_path / "runs"), "--out",
            str(tmp_path / "out"), "--no-progress"]
    assert main(args) == 0
    data = json.loads((tmp_path / "out" / "methods_synthetic.json").read_text())
    assert {(r["method"], r["epochs"]) for r in data["runs"]} == {("bnn", 2), ("si_bnn", 2)}
    assert all(len(r["history"]) == 2 and r["deployable"] for r in data["runs"])
    md = (tmp_path / "out" / "methods_synthetic.md").read_text()
    assert "| `si_bnn` | tfc |" in md and "Budget: tfc: 2 epochs" in md
    assert (tmp_path / "out" / "methods_synthetic.png").stat().st_size > 10_000
    # a second call reuses the finished runs (same numbers, no retraining)
    assert main(args) == 0
    again = json.loads((tmp_path / "out" / "methods_synthetic.json").read_text())
    assert [r["history"] for r in again["runs"]] == [r["history"] for r in data["runs"]]
    assert main(args[:-7] + ["--epochs", "3", "--runs", str(tmp_path / "runs"), "--out",
                             str(tmp_path / "out")]) == 1, "a run dir with another config"
    assert main(["--nets", "tfc,nope"]) == 1


def test_benchmark_parallel_jobs(tmp_path: Path) -> None:
    """--jobs trains runs in child processes (logs in the run dirs), then collects them; a child
    that fails is named with its log."""
    args = ["--dataset", "synthetic", "--nets", "tfc", "--methods", "bnn,xnor,bbg", "--epochs", "2",
            "--train-subset", "300", "--runs", str(tmp_path / "runs"), "--out",
            str(tmp_path / "out"), "--no-progress", "--device", "cpu"]
    assert main(args + ["--jobs", "2"]) == 0
    data = json.loads((tmp_path / "out" / "methods_synthetic.json").read_text())
    assert sorted(r["method"] for r in data["runs"]) == ["bbg", "bnn", "xnor"]
    assert all(len(r["history"]) == 2 for r in data["runs"])
    assert "2 runs trained at once" in data["meta"]["budget"]
    run_dir = tmp_path / "runs" / "synthetic"
    assert "epoch 2/2" in (run_dir / "tfc_bnn_s0" / "benchmark.log").read_text()
    # the serial pass reuses what the children trained
    assert main(args) == 0
    again = json.loads((tmp_path / "out" / "methods_synthetic.json").read_text())
    assert [r["history"] for r in again["runs"]] == [r["history"] for r in data["runs"]]
    bad = args[:7] + ["3"] + args[8:] + ["--jobs", "2"]
    assert main(bad) == 1, "children meet run dirs with another config"
    assert "another config" in (run_dir / "tfc_xnor_s0" / "benchmark.log").read_text()
    assert main(args + ["--jobs", "0"]) == 1


def test_benchmark_collect_marks_unfinished_runs(tmp_path: Path) -> None:
    """--collect trains nothing: it tabulates the run dirs, an unfinished run as 'k of N'."""
    from models.data import load_dataset
    from models.trainer import TrainConfig, train

    cfg = TrainConfig(net="tfc", method="bnn", dataset="synthetic", in_shape=(1, 28, 28),
                      num_classes=10, epochs=3, seed=0)
    run = tmp_path / "runs" / "synthetic" / "tfc_bnn_s0"
    train(cfg, load_dataset("synthetic", "train").subset(300), load_dataset("synthetic", "test"),
          run, progress=False, stop_after=1)
    args = ["--dataset", "synthetic", "--nets", "tfc", "--methods", "bnn,xnor", "--epochs", "3",
            "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--collect"]
    assert main(args) == 0
    data = json.loads((tmp_path / "out" / "methods_synthetic.json").read_text())
    assert [(r["method"], r["epochs_completed"]) for r in data["runs"]] == [("bnn", 1)]
    assert not (tmp_path / "runs" / "synthetic" / "tfc_xnor_s0").exists(), "nothing trained"
    md = (tmp_path / "out" / "methods_synthetic.md").read_text()
    assert "| `bnn` | tfc |" in md and "| 1 of 3 |" in md and "unfinished" in md
    assert main(args[:7] + ["2"] + args[8:]) == 1, "a run dir with another config"


def test_benchmark_update_replaces_only_the_given_methods(tmp_path: Path, caplog) -> None:
    base = ["--dataset", "synthetic", "--nets", "tfc", "--epochs", "2", "--train-subset", "300",
            "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--no-progress"]
    assert main(base + ["--methods", "bnn,xnor"]) == 0
    path = tmp_path / "out" / "methods_synthetic.json"
    first = json.loads(path.read_text())
    bnn = next(r for r in first["runs"] if r["method"] == "bnn")
    # xnor again, in fresh run dirs with another seed's numbers: only its row changes
    fresh = ["--runs", str(tmp_path / "runs2"), "--seeds", "0"]
    assert main(base + fresh + ["--methods", "xnor", "--update"]) == 0
    merged = json.loads(path.read_text())
    assert sorted(r["method"] for r in merged["runs"]) == ["bnn", "xnor"]
    assert next(r for r in merged["runs"] if r["method"] == "bnn") == bnn
    assert merged["meta"]["updates"][0]["methods"] == ["xnor"]
    assert "Then xnor re-run by" in (tmp_path / "out" / "methods_synthetic.md").read_text()
    other_budget = [a if a != "2" else "1" for a in base]
    assert main(other_budget + ["--runs", str(tmp_path / "runs3"), "--methods", "xnor",
                                "--update"]) == 1
    assert "one table holds one budget" in caplog.text
    assert json.loads(path.read_text()) == merged, "a refused update writes nothing"


def test_benchmark_method_variants(tmp_path: Path, caplog) -> None:
    """key:opt=value runs a method with options in its own run dirs and row, beside the
    default; unknown methods and options are refused with the spec named."""
    args = ["--dataset", "synthetic", "--nets", "tfc", "--epochs", "1", "--train-subset", "300",
            "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--no-progress",
            "--methods", "bnn,bnn_plus,bnn_plus:beta=2:lam=0"]
    assert main(args) == 0
    data = json.loads((tmp_path / "out" / "methods_synthetic.json").read_text())
    by_name = {r.get("variant", r["method"]): r for r in data["runs"]}
    assert set(by_name) == {"bnn", "bnn_plus", "bnn_plus:beta=2:lam=0"}
    variant = by_name["bnn_plus:beta=2:lam=0"]
    assert variant["method"] == "bnn_plus"
    assert variant["config"]["method_options"] == {"beta": 2, "lam": 0}
    assert variant["run"].endswith("tfc_bnn_plus+beta=2+lam=0_s0")
    assert variant["history"] != by_name["bnn_plus"]["history"]
    md = (tmp_path / "out" / "methods_synthetic.md").read_text()
    assert "| `bnn_plus:beta=2:lam=0` | tfc |" in md and "| `bnn_plus` | tfc |" in md
    refused = (("bnn_plus:gamma=1", "gamma"), ("nope", "nope"), ("bnn_plus:beta", "KEY=VALUE"))
    for bad, what in refused:
        caplog.clear()
        assert main(args[:-1] + [bad]) == 1
        assert f"--methods {bad!r}" in caplog.text and what in caplog.text
