"""Build a trained, exported binarized network into a folded FINN dataflow accelerator.

``python build_flows/build.py --model runs/x/model.onnx --board Pynq-Z2 --out builds/x``

Runs the named steps of :data:`build_flows.pipeline.STEPS`, writing each step's graph and log to
``out/steps/NN_<name>/`` and verifying it against the input QONNX model (see
:mod:`build_flows.verify`); after folding, our RTL for the graph is stitched, simulated on the
same images and synthesized (:mod:`build_flows.pipeline.hw_steps`). ``--resume`` restarts after
the last finished step; a failing step leaves every earlier output. With Vivado and Vitis HLS
found, :mod:`build_flows.pipeline.vivado` goes on to the bitfile; otherwise the build ends after
the open steps with ``bitfile: null`` and the reason.
Writes ``report.json``, ``report.md`` and ``cycles.png`` to ``out``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from build_flows import checks, finn_env, reports, verify  # noqa: E402
from build_flows.boards import BOARDS, get_board  # noqa: E402
from build_flows.checks import BuildError  # noqa: E402
from build_flows.deploy import package  # noqa: E402
from build_flows.pipeline import STEP_NAMES, STEPS, BuildConfig, vivado  # noqa: E402
from build_flows.pipeline.graph import partition_node  # noqa: E402

#: steps whose output graph equals their input (nothing to verify against the reference)
UNVERIFIED = ("estimates", "rtl", "rtlsim", "deploy", "resources")
#: cfg.hw entry -> the step that produces it
HW_RESULTS = {"rtl": "rtl", "rtlsim": "rtlsim", "performance": "rtlsim", "deploy": "deploy",
              "resources": "resources"}

log = logging.getLogger("build_flows.build")


def step_dirs(out: Path) -> list[Path]:
    return [out / "steps" / f"{i:02d}_{name}" for i, name in enumerate(STEP_NAMES, 1)]


def save_step(model: Any, d: Path) -> None:
    """Save a step's graph (and a copy of its dataflow child, which the saved parent points to)."""
    from qonnx.custom_op.registry import getCustomOp

    d.mkdir(parents=True, exist_ok=True)
    node = partition_node(model)
    if node is not None:
        inst = getCustomOp(node)
        child = d / "dataflow.onnx"
        src = Path(inst.get_nodeattr("model"))
        if src.resolve() != child.resolve():
            shutil.copyfile(src, child)
        inst.set_nodeattr("model", str(child.resolve()))
    model.save(str(d / "model.onnx"))


def export_checkpoint(path: Path, out: Path, data_dir: Path | None) -> Path:
    """Export a training checkpoint with ``python -m models.export`` (its own process)."""
    onnx_path = out / "model.onnx"
    cmd = [sys.executable, "-m", "models.export", "--checkpoint", str(path), "--out",
           str(onnx_path), "--no-finn-check"]
    if data_dir is not None:
        cmd += ["--data-dir", str(data_dir)]
    log.info("exporting %s", path)
    proc = subprocess.run(cmd, capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1])
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise BuildError(f"{path}: export failed: {last}")
    return onnx_path


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The build; returns the report (also written to ``out/report.json``)."""
    out = Path(args.out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    finn_env.prepare(out / "finn_build")
    board = get_board(args.board)
    clock = args.clock_ns or board.clock_ns
    folding_cfg = checks.read_folding_file(Path(args.folding)) if args.folding else None
    if folding_cfg is not None and args.target_fps:
        raise BuildError("--folding and --target-fps both given: choose one")
    model_path = Path(args.model)
    if model_path.suffix == ".pt":
        model_path = export_checkpoint(model_path, out, args.data_dir)
    original = checks.load_onnx(model_path)
    original = checks.infer_shapes(original, model_path)
    checks.check_deployable(original, model_path)
    checks.check_binarized(original)
    checks.check_padding(original)

    cfg = BuildConfig(out=out, board=board, clock_ns=clock, target_fps=args.target_fps,
                        folding_config=folding_cfg, mvau_wwidth_max=args.mvau_wwidth_max,
                        per_node=args.per_node)
    dirs = step_dirs(out)
    names = STEP_NAMES
    start = 0
    state_path = out / "state.json"
    digest = hashlib.sha256(model_path.read_bytes()).hexdigest()
    state = json.loads(state_path.read_text()) if state_path.is_file() else {}
    if args.resume or args.from_step:
        if args.resume:  # the first step without a finished output
            start = next((i for i, d in enumerate(dirs) if not (d / "done.json").is_file()),
                         len(dirs))
        else:
            start = names.index(args.from_step)
        if start > 0 and not (dirs[start - 1] / "done.json").is_file():
            raise BuildError(f"--from-step {args.from_step}: step {names[start - 1]} has not "
                             f"finished in {out}")
        if start > 0 and state.get("model_sha256") not in (None, digest):
            raise BuildError(f"{out} holds a build of a different model than {model_path}: "
                             "drop --resume/--from-step to start over")
    stop = names.index(args.to_step) + 1 if args.to_step else len(names)
    if start > 0:
        cfg.host_postproc = state.get("host_postproc", [])
        cfg.estimates = state.get("estimates", {})
        cfg.host_nodes = state.get("host_nodes", [])
        cfg.hw = {k: v for k, v in state.get("hw", {}).items()
                  if k in HW_RESULTS and names.index(HW_RESULTS[k]) < start}
        model = checks.load_onnx(dirs[start - 1] / "model.onnx")
        log.info("resuming after step %s", names[start - 1])
    else:
        model = original
        for d in dirs:  # a fresh build: earlier step outputs no longer match
            shutil.rmtree(d, ignore_errors=True)

    inputs = verify.make_inputs(original, args.verify_samples, args.data_dir, args.seed)
    try:
        ref = verify.reference(original, inputs) if args.verify_samples else None
        residual = verify.is_residual(original)
    except Exception as exc:
        raise BuildError(f"{model_path}: qonnx cannot execute the model: "
                         f"{type(exc).__name__}: {str(exc).splitlines()[0]}") from exc
    cfg.inputs = inputs
    log.info("verifying on %d %s", len(inputs.images), inputs.source)
    total = 0.0
    for d in dirs[:start]:
        total += json.loads((d / "done.json").read_text())["seconds"]
    for i in range(start, stop):
        name, fn = STEPS[i]
        d = dirs[i]
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        t0 = time.time()
        handler = logging.FileHandler(d / "log.txt")
        logging.getLogger().addHandler(handler)
        logging.getLogger("py.warnings").addHandler(handler)
        try:
            with open(d / "log.txt", "a") as f, contextlib.redirect_stdout(f):
                model = fn(model, cfg)
                save_step(model, d)
                result = None
                if ref is not None and name not in UNVERIFIED:
                    result = verify.verify_step(name, model, inputs, ref,
                                                uint8_input=i >= names.index("pre_post"),
                                                residual=residual)
        except BuildError:
            raise
        except Exception as exc:
            raise BuildError(f"step {name} failed: {type(exc).__name__}: {exc} "
                             f"(log: {d / 'log.txt'})") from exc
        finally:
            logging.getLogger().removeHandler(handler)
            logging.getLogger("py.warnings").removeHandler(handler)
            handler.close()
        secs = time.time() - t0
        total += secs
        (d / "done.json").write_text(json.dumps(
            {"step": name, "seconds": secs,
             "verification": result.to_json() if result else None}, indent=2))
        state_path.write_text(json.dumps({"model_sha256": digest,
                                          "host_postproc": cfg.host_postproc,
                                          "host_nodes": cfg.host_nodes,
                                          "estimates": cfg.estimates, "hw": cfg.hw},
                                         default=float))
        log.info("[%2d/%d] %-20s %6.1f s  (total %6.1f s)%s", i + 1, len(names), name, secs,
                 total, f"  verified: {result.kind}" if result else "")

    report = make_report(args, out, model_path, board, clock, cfg, inputs, dirs)
    if stop == len(names):
        report["bitfile"] = vivado.finish(model, cfg, out)
        if cfg.hw.get("deploy"):
            report["deploy"] = package.finish(out, report["bitfile"], cfg)
    reports.write_json(report, out / "report.json")
    reports.write_markdown(report, out / "report.md")
    if cfg.estimates:
        reports.plot_cycles(cfg.estimates, out / "cycles.png")
    return report


def make_report(args: argparse.Namespace, out: Path, model_path: Path, board: Any, clock: float,
                cfg: Any, inputs: verify.Inputs, dirs: list[Path]) -> dict[str, Any]:
    done = [json.loads((d / "done.json").read_text()) for d in dirs if (d / "done.json").is_file()]
    return {
        "model": str(model_path),
        "board": board.name,
        "part": board.part,
        "clock_ns": clock,
        "folding": reports.folding_table(cfg.estimates),
        "folding_source": args.folding or f"SetFolding, target {args.target_fps or 1000} FPS",
        "estimates": cfg.estimates or None,
        "host_nodes": cfg.host_nodes,
        "verification": {"inputs": inputs.source,
                         "labels": None if inputs.labels is None else inputs.labels.tolist(),
                         "steps": [s["verification"] for s in done if s["verification"]],
                         "rtlsim": cfg.hw.get("rtlsim")},
        "rtl": cfg.hw.get("rtl"),
        "performance": cfg.hw.get("performance"),
        "resources": cfg.hw.get("resources"),
        "deploy": cfg.hw.get("deploy"),
        "bitfile": {"path": None, "reason": "the build stopped before the last open step"},
        "steps": [{"name": s["step"], "seconds": s["seconds"]} for s in done],
    }


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python build_flows/build.py", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="QONNX model.onnx, or a checkpoint.pt")
    ap.add_argument("--board", default="Pynq-Z2", help=f"one of {', '.join(BOARDS)}")
    ap.add_argument("--out", required=True, help="build directory")
    fold = ap.add_mutually_exclusive_group()
    fold.add_argument("--target-fps", type=float, help="FINN's automatic folding for this rate")
    fold.add_argument("--folding", help="folding JSON ({layer: {PE, SIMD}})")
    ap.add_argument("--clock-ns", type=float, help="clock period (default: the board's)")
    ap.add_argument("--verify-samples", type=int, default=10)
    ap.add_argument("--data-dir", type=Path, help="where the dataset's test files are")
    ap.add_argument("--seed", type=int, default=0, help="seed of random verification inputs")
    ap.add_argument("--from-step", choices=STEP_NAMES)
    ap.add_argument("--to-step", choices=STEP_NAMES)
    ap.add_argument("--resume", action="store_true", help="restart after the last finished step")
    ap.add_argument("--mvau-wwidth-max", type=int, default=36)
    ap.add_argument("--per-node", action="store_true",
                    help="Yosys resources per unit as well as for the stitched top")
    ap.add_argument("-v", "--verbose", action="store_true")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(message)s")
    logging.captureWarnings(True)
    logging.getLogger("py.warnings").propagate = False  # FINN's warnings go to the step logs
    for noisy in ("finn", "qonnx", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        report = run(args)
    except (BuildError, ValueError) as exc:
        print(f"build failed: {exc}", file=sys.stderr)
        return 1
    est = report.get("estimates") or {}
    if est:
        log.info("estimated %s FPS at %s ns (bottleneck %s, %d cycles); report: %s",
                 f"{est['estimated_fps']:,.0f}", report["clock_ns"], est["bottleneck"],
                 est["max_cycles"], Path(args.out) / "report.json")
    perf, res = report.get("performance"), report.get("resources")
    sim = report["verification"].get("rtlsim")
    if sim:
        log.info("rtlsim: %d samples, %d mismatches", sim["samples"], sim["mismatches"])
        if "accuracy_rtlsim" in sim:
            log.info("accuracy on these %d test images: %.1f %% in rtlsim, %.1f %% in software "
                     "(FINN's execution of the same graph)", sim["samples"],
                     100 * sim["accuracy_rtlsim"], 100 * sim["accuracy_finn"])
    if perf:
        log.info("measured %.0f cycles per frame (estimate %s), %s FPS at %.0f MHz, latency %d "
                 "cycles", perf["cycles_per_frame"], perf["estimated_cycles_per_frame"],
                 f"{perf['fps']:,.0f}", perf["fclk_mhz"], perf["latency_cycles"])
    if res:
        log.info("resources: %d LUT, %d FF, %.1f BRAM36, %d DSP (%s)", res["LUT"], res["FF"],
                 res["BRAM36"], res["DSP"], res["tool"])
    dep = report.get("deploy")
    if dep:
        log.info("deployment package: %s (run its validate.py --sim here, or copy it to the "
                 "board)", dep["directory"])
    bit = report["bitfile"]
    if bit.get("path") is None:
        log.info("no bitfile: %s", bit.get("reason"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
