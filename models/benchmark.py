"""Comparison benchmark: every registered binarization method, same nets, budget and seeds.

``python -m models.benchmark --dataset fashion-mnist --nets tfc,cnv --epochs 5``

Trains each (net, method, seed) into ``<runs>/<dataset>/<net>_<method>_s<seed>`` (a finished run
is reused, an interrupted one resumes from its checkpoint), then writes
``<out>/methods_<dataset>.json`` (every run's config and history), ``methods_<dataset>.md`` (a
table: method, net, test accuracy, epochs, seconds per epoch, deployable) and
``methods_<dataset>.png`` (test-accuracy curves, one panel per net).
``--epochs`` is one number for every net or a per-net list such as ``tfc=10,cnv=3``.
``--methods`` takes registry keys or variants with options, ``bnn_plus:beta=2:lam=0`` (their own
run dirs, ``cnv_bnn_plus+beta=2+lam=0_s0``, and table rows).
``--device cuda --jobs 4`` trains four runs at once on the GPU (jobs on an embedded Ray;
``--ray-address`` sends them to a cluster); ``--collect`` tabulates the run
dirs as they stand without training (unfinished runs marked); ``--update`` re-runs some methods
and replaces only their rows in the existing table.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from models import setup_logging
from models.binarize import METHODS, get_method
from models.checkpoint import load_checkpoint
from models.data import DATASETS, SHAPES, DatasetError, load_dataset
from models.export import deployability
from models.nets import NETS, required_input_side
from models.train import parse_options
from models.trainer import TrainConfig, resolve_device, train

log = logging.getLogger("models.benchmark")


def parse_epochs(spec: str, nets: list[str]) -> dict[str, int]:
    """'5' -> {net: 5}; 'tfc=10,cnv=3' -> per net (every net in ``nets`` must be given)."""
    if "=" not in spec:
        return {net: int(spec) for net in nets}
    out = {}
    for item in spec.split(","):
        net, _, n = item.partition("=")
        out[net.strip()] = int(n)
    missing = [n for n in nets if n not in out]
    if missing:
        raise ValueError(f"--epochs {spec!r} gives no epochs for net(s) {missing}")
    return out


def parse_methods(spec: str) -> list[tuple[str, str, dict[str, Any]]]:
    """'all' -> every registered method; 'bnn,bnn_plus:beta=2' -> [(name, key, options)]: a
    variant's name is its spec text, its options are checked against the method now."""
    if spec == "all":
        return [(key, key, {}) for key in METHODS]
    out = []
    for name in (m.strip() for m in spec.split(",")):
        if name:
            key, *items = name.split(":")
            try:
                options = parse_options(items)
                get_method(key, **options)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"--methods {name!r}: {exc}") from None
            out.append((name if options else key, key, options))
    return out


def row_name(run: dict[str, Any]) -> str:
    """A result's table name: the variant spec (``bnn_plus:beta=2``) or the method key."""
    return run.get("variant") or run["method"]


def check_config(saved: dict[str, Any], cfg: TrainConfig, where: Path) -> None:
    """A run dir may only be resumed or tabulated for the config it was trained with."""
    if TrainConfig.from_dict(saved).to_dict() != cfg.to_dict():
        raise ValueError(f"{where} holds a run with another config; remove it or use --runs")


def run_one(cfg: TrainConfig, run: Path, data: tuple[Any, Any], progress: bool,
            device: str = "cpu") -> dict[str, Any]:
    """Train (or resume, or reuse) one run; return its metrics."""
    ckpt = run / "checkpoint.pt"
    resume = False
    if ckpt.exists():
        check_config(load_checkpoint(ckpt)["config"], cfg, run)
        resume = True
    return train(cfg, data[0], data[1], run, resume=resume, progress=progress, device=device)


def collect_one(cfg: TrainConfig, run: Path) -> dict[str, Any] | None:
    """A run's metrics.json as it stands (None when the run has not started); no training."""
    path = run / "metrics.json"
    if not path.is_file():
        log.warning("%s: no metrics.json yet; left out of the table", run)
        return None
    m = json.loads(path.read_text())
    check_config(m["config"], cfg, path)
    if not m["history"]:
        return None
    return m


def merge_existing(path: Path, results: list[dict[str, Any]],
                   meta: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """--update: the runs of the table at ``path`` that ``results`` does not redo, plus
    ``results``; the table's meta gains an ``updates`` entry. One budget per net is enforced."""
    if not path.is_file():
        return results, meta
    old = json.loads(path.read_text())
    redone = {(r["net"], row_name(r), r["seed"]) for r in results}
    budget = {r["net"]: r["epochs"] for r in results}
    kept = [r for r in old["runs"] if (r["net"], row_name(r), r["seed"]) not in redone]
    for r in kept:
        if r["net"] in budget and r["epochs"] != budget[r["net"]]:
            raise ValueError(f"--update: {path} has {r['net']} {row_name(r)} at {r['epochs']} "
                             f"epochs, this run {budget[r['net']]}; one table holds one budget")
    merged = dict(old["meta"])
    merged["updates"] = old["meta"].get("updates", []) + [{
        "methods": sorted({row_name(r) for r in results}), "command": meta["command"],
        "machine": meta["machine"], "wall_seconds": meta["wall_seconds"]}]
    return kept + results, merged


def run_dir(runs: str, dataset: str, net: str, name: str, seed: int) -> Path:
    """``<runs>/<dataset>/<net>_<name>_s<seed>``, a variant's ':' written as '+'."""
    return Path(runs) / dataset / f"{net}_{name.replace(':', '+')}_s{seed}"


def train_child(cmd: list[str], log_path: str, env: dict[str, str]) -> int:
    """One run as a child process of a Ray job: this CLI on that run, logging to ``log_path``;
    its exit status."""
    with open(log_path, "wb") as logf:
        return subprocess.run(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env).returncode


def run_parallel(args: argparse.Namespace, nets: list[str], methods: list[str],
                 seeds: list[int], epochs: dict[str, int]) -> list[str]:
    """Train every (net, method, seed) as jobs on Ray (:mod:`hw.jobs`): ``args.jobs`` at once on
    an embedded local Ray, or on the cluster at ``--ray-address``.

    Each job runs this CLI on one run in a child process (so it resumes or reuses exactly as a
    serial run would), logging to ``<run>/benchmark.log``; the serial pass afterwards only
    collects the finished runs. Local CPU children share the cores (``OMP_NUM_THREADS`` = cores
    / jobs unless set). Returns the log paths of the runs that failed.
    """
    from hw.jobs import run as run_jobs

    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // args.jobs)))
    calls = []
    with tempfile.TemporaryDirectory() as tmp:
        for net in nets:
            for method in methods:
                for seed in seeds:
                    run = run_dir(args.runs, args.dataset, net, method, seed)
                    run.mkdir(parents=True, exist_ok=True)
                    cmd = [sys.executable, "-m", "models.benchmark", "--dataset", args.dataset,
                           "--data-dir", args.data_dir, "--nets", net, "--methods", method,
                           "--seeds", str(seed), "--epochs", str(epochs[net]),
                           "--train-subset", str(args.train_subset), "--runs", args.runs,
                           "--out", str(Path(tmp) / run.name), "--device", args.device,
                           "--jobs", "1", "--no-progress"]
                    calls.append((run.name, (cmd, str(run / "benchmark.log"), env)))
        log.info("training %d runs, %d at once; logs in each run's benchmark.log", len(calls),
                 args.jobs)
        outcomes = run_jobs(train_child, calls, jobs=args.jobs, address=args.ray_address)
    failed = []
    for (_, (_, log_path, _)), o in zip(calls, outcomes, strict=True):
        if o.error is not None or o.value:
            failed.append(log_path)
            log.error("%s failed (%s); see %s", o.name, o.error or f"exit {o.value}", log_path)
    return failed


def summarize(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (net, method): mean over seeds of final test accuracy and s/epoch."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for r in results:
        key = (r["net"], row_name(r))
        row = rows.setdefault(key, {"net": r["net"], "method": row_name(r), "accuracies": [],
                                    "seconds": [], "epochs": r["epochs"],
                                    "deployable": r["deployable"], "deployment": r["deployment"]})
        row["epochs_completed"] = min(row.get("epochs_completed", r["epochs"]),
                                      r.get("epochs_completed", r["epochs"]))
        row["accuracies"].append(r["test_accuracy"])
        row.setdefault("curves", []).append([h["test_accuracy"] for h in r.get("history", [])])
        row["seconds"].append(r["seconds_per_epoch"])
    for row in rows.values():
        row["test_accuracy"] = statistics.mean(row["accuracies"])
        row["test_accuracy_std"] = (statistics.stdev(row["accuracies"])
                                    if len(row["accuracies"]) > 1 else 0.0)
        row["seconds_per_epoch"] = statistics.mean(row["seconds"])
    return list(rows.values())


def markdown_table(rows: list[dict[str, Any]], dataset: str, meta: dict[str, Any]) -> str:
    """The results table as Markdown, with the budget it was measured on."""
    lines = [f"# Binarization methods on {dataset}", "",
             f"Budget: {meta['budget']}. Seeds: {meta['seeds']}. Machine: {meta['machine']}. "
             f"Generated by `{meta['command']}`." + "".join(
                 f" Then {', '.join(u['methods'])} re-run by `{u['command']}` ({u['machine']})."
                 for u in meta.get("updates", [])), "",
             "| method | net | test accuracy (%) | vs bnn (points) | epochs | s / epoch | "
             "deployable |", "|---|---|---|---|---|---|---|"]
    base = {r["net"]: r for r in rows if r["method"] == "bnn"}

    def bnn_at(net: str, done: int, epochs: int) -> float | None:
        """bnn's accuracy at the same epoch (its final one when both runs finished)."""
        b = base.get(net)
        if b is None:
            return None
        if done == epochs and b["epochs_completed"] == b["epochs"]:
            return b["test_accuracy"]
        at = [c[done - 1] for c in b["curves"] if len(c) >= done]
        return statistics.mean(at) if at else None

    for r in sorted(rows, key=lambda r: (r["net"], -r["test_accuracy"])):
        acc = f"{100 * r['test_accuracy']:.2f}"
        if r["test_accuracy_std"]:
            acc += f" ± {100 * r['test_accuracy_std']:.2f}"
        done = r.get("epochs_completed", r["epochs"])
        ref = bnn_at(r["net"], done, r["epochs"])
        delta = f"{100 * (r['test_accuracy'] - ref):+.2f}" if ref is not None else ""
        ep = f"{done} of {r['epochs']}" if done < r["epochs"] else str(r["epochs"])
        lines.append(f"| `{r['method']}` | {r['net']} | {acc} | {delta} | {ep} | "
                     f"{r['seconds_per_epoch']:.1f} | {'yes' if r['deployable'] else 'no'} |")
    if any(r.get("epochs_completed", r["epochs"]) < r["epochs"] for r in rows):
        lines += ["", "Rows with 'k of N' epochs are unfinished: their accuracy is epoch k's, "
                  "before the schedule's end, and 'vs bnn' compares with bnn's epoch k."]
    return "\n".join(lines) + "\n"


def plot_results(results: list[dict[str, Any]], path: Path, dataset: str) -> Path:
    """Test accuracy per epoch, one panel per net, one line per method (seed 0's run)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nets = sorted({r["net"] for r in results})
    fig, axes = plt.subplots(1, len(nets), figsize=(6 * len(nets), 4.5), squeeze=False)
    for ax, net in zip(axes[0], nets, strict=True):
        for r in results:
            if r["net"] == net and r["seed"] == min(x["seed"] for x in results):
                hist = r["history"]
                ax.plot([h["epoch"] for h in hist], [100 * h["test_accuracy"] for h in hist],
                        "o-", label=row_name(r), markersize=3)
        ax.set_title(f"{net.upper()} on {dataset}")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def machine_description(device: Any) -> str:
    """Where the runs trained: the CPU and its torch threads, or the CUDA device's name."""
    import torch

    text = f"{platform.machine()}, CPU threads: {torch.get_num_threads()}"
    if device.type == "cuda":
        text += f", {torch.cuda.get_device_name(device)} (torch {torch.__version__})"
    return text


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m models.benchmark", description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", choices=DATASETS, default="fashion-mnist")
    ap.add_argument("--data-dir", default="data")
    ap.add_argument("--nets", default="tfc,cnv", help="comma-separated nets (default tfc,cnv)")
    ap.add_argument("--methods", default="all",
                    help="comma-separated methods (default all); a variant with method options "
                         "is key:opt=value[:opt=value], e.g. bnn_plus:beta=2")
    ap.add_argument("--epochs", default="5", help="epochs: N, or per net like tfc=10,cnv=3")
    ap.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    ap.add_argument("--train-subset", type=int, default=0, help="first N training images only")
    ap.add_argument("--runs", default="runs/benchmark", help="run directories (resumable)")
    ap.add_argument("--out", default="results", help="where the JSON, table and plot go")
    ap.add_argument("--device", default="auto",
                    help="cpu, cuda, cuda:N, or auto (cuda when available; default)")
    ap.add_argument("--jobs", type=int, default=1,
                    help="runs trained at once, each in its own process, as jobs on an "
                         "embedded local Ray (default 1: no Ray)")
    ap.add_argument("--ray-address", default=None,
                    help="run the jobs on the Ray cluster at this address instead (its nodes "
                         "need this checkout and shared --runs storage)")
    ap.add_argument("--collect", action="store_true",
                    help="train nothing: tabulate the run dirs as they stand (unfinished runs "
                         "are marked, e.g. while a --jobs benchmark runs)")
    ap.add_argument("--update", action="store_true",
                    help="replace only these runs in an existing table (same budget), keep the rest")
    ap.add_argument("--no-progress", action="store_true")
    return ap


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    args = build_parser().parse_args(argv)
    setup_logging()
    try:
        nets = [n.strip() for n in args.nets.split(",") if n.strip()]
        bad = [n for n in nets if n not in NETS]
        if bad:
            raise ValueError(f"unknown net(s) {bad}; nets: {', '.join(NETS)}")
        variants = parse_methods(args.methods)
        methods = [name for name, _, _ in variants]
        epochs = parse_epochs(args.epochs, nets)
        seeds = [int(s) for s in args.seeds.split(",")]
        device = resolve_device(args.device)
        if args.jobs < 1:
            raise ValueError(f"--jobs {args.jobs}: give at least 1")
        results = []
        t_start = time.time()
        if (args.jobs > 1 or args.ray_address) and not args.collect:
            failed = run_parallel(args, nets, methods, seeds, epochs)
            if failed:
                raise ValueError(f"{len(failed)} run(s) failed; logs: {', '.join(failed)}")
        for net in nets:
            c, h, _ = SHAPES[args.dataset]
            side = required_input_side(net, h)
            data = None if args.collect else (
                load_dataset(args.dataset, "train", args.data_dir, pad_to=side)
                .subset(args.train_subset),
                load_dataset(args.dataset, "test", args.data_dir, pad_to=side))
            for name, method, options in variants:
                for seed in seeds:
                    cfg = TrainConfig(net=net, method=method, method_options=options,
                                      dataset=args.dataset, in_shape=(c, side, side),
                                      num_classes=10, epochs=epochs[net], seed=seed,
                                      train_subset=args.train_subset)
                    run = run_dir(args.runs, args.dataset, net, name, seed)
                    log.info("[%d/%d] %s %s seed %d: %d epochs -> %s", len(results) + 1,
                             len(nets) * len(methods) * len(seeds), net, name, seed,
                             epochs[net], run)
                    m = (collect_one(cfg, run) if args.collect else
                         run_one(cfg, run, data, not args.no_progress, str(device)))
                    if m is None:
                        continue
                    ok, how = deployability(net, method, options)
                    results.append({"net": net, "method": method, "seed": seed,
                                    **({"variant": name} if options else {}),
                                    "epochs": epochs[net], "test_accuracy": m["test_accuracy"],
                                    "epochs_completed": m["epochs_completed"],
                                    "best_test_accuracy": m["best_test_accuracy"],
                                    "seconds_per_epoch": m["seconds_per_epoch"],
                                    "deployable": ok, "deployment": how, "run": str(run),
                                    "history": m["history"], "config": m["config"]})
    except (DatasetError, FileNotFoundError, ValueError) as exc:
        log.error("error: %s", exc)
        return 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    budget = ", ".join(f"{n}: {e} epochs" for n, e in epochs.items())
    if args.train_subset:
        budget += f", first {args.train_subset} training images"
    budget += " (Adam lr 0.02, batch 100, cross-entropy, cosine schedule)"
    if args.jobs > 1:
        budget += f"; {args.jobs} runs trained at once, so s / epoch is under contention"
    meta = {"budget": budget,
            "seeds": ",".join(map(str, seeds)),
            "machine": (machine_description(device) if not args.collect else
                        "trained on " + ", ".join(sorted({h.get("device", "cpu") for r in results
                                                          for h in r["history"]}))),
            "command": "python -m models.benchmark " + " ".join(sys.argv[1:] if argv is None
                                                                 else argv),
            "wall_seconds": round(time.time() - t_start, 1)}
    stem = out / f"methods_{args.dataset}"
    if args.update:
        try:
            results, meta = merge_existing(stem.with_suffix(".json"), results, meta)
        except ValueError as exc:
            log.error("error: %s", exc)
            return 1
    rows = summarize(results)
    stem.with_suffix(".json").write_text(json.dumps({"meta": meta, "summary": rows,
                                                     "runs": results}, indent=2))
    stem.with_suffix(".md").write_text(markdown_table(rows, args.dataset, meta))
    plot_results(results, stem.with_suffix(".png"), args.dataset)
    log.info("wrote %s.{json,md,png}", stem)
    sys.stdout.write(markdown_table(rows, args.dataset, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
