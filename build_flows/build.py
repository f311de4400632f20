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
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from build_flows import checks, finn_env, reports, verify  # noqa: E402
from build_flows.boards import BOARDS, BoardName, get_board  # noqa: E402
from build_flows.checks import BuildError  # noqa: E402
from build_flows.deploy import package  # noqa: E402
from build_flows.pipeline import STEP_NAMES, STEPS, BuildConfig, record, search, vivado  # noqa: E402
from build_flows.pipeline.folding import DEFAULT_FPS  # noqa: E402
from build_flows.pipeline.graph import partition_node  # noqa: E402
from hw.contract import (Float, InDir, InFile, Int, Interrupted, OutDir, claim_output,  # noqa: E402
                         interruptible, parse, refuse)

#: steps whose output graph equals their input (nothing to verify against the reference)
UNVERIFIED = ("estimates", "rtl", "rtlsim", "deploy", "resources")
#: cfg.hw entry -> the step that produces it
HW_RESULTS = {"search": "folding", "rtl": "rtl", "rtlsim": "rtlsim", "performance": "rtlsim",
              "deploy": "deploy", "resources": "resources"}

log = logging.getLogger("build_flows.build")


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


def export_checkpoint(path: Path, out_dir: Path, data_dir: Path | None) -> Path:
    """Export a training checkpoint with ``python -m models.export`` (its own process) into
    ``out_dir/model.onnx``."""
    onnx_path = out_dir / "model.onnx"
    cmd = [sys.executable, "-m", "models.export", "--checkpoint", str(path), "--out",
           str(onnx_path), "--no-finn-check", "--force"]
    if data_dir is not None:
        cmd += ["--data-dir", str(data_dir)]
    log.info("exporting %s", path)
    proc = subprocess.run(cmd, capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1])
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise BuildError(f"{path}: export failed: {last}")
    return onnx_path


@dataclass
class Plan:
    """A checked build request: everything :func:`run` needs, found before anything is written."""

    out: Path  #: the build directory (absolute)
    model_path: Path  #: the QONNX model (a checkpoint's export in ``staging`` until run copies it)
    original: Any  #: the model, shapes inferred and checked
    options: dict[str, Any]  #: the recorded options (:mod:`build_flows.pipeline.record`)
    start: int  #: index of the first step to run
    stop: int  #: one past the last step to run
    state: dict[str, Any]  #: state.json of the build being resumed ({} for a fresh one)
    staging: Any = None  #: TemporaryDirectory holding a checkpoint's export


def prepare(args: argparse.Namespace, explicit: set[str],
            ap: argparse.ArgumentParser) -> Plan:
    """Check the request before any file is written: the model (exported from a checkpoint into
    a temporary directory), the folding file, the step range, and what ``--out`` holds; on
    ``--resume``/``--from-step`` the recorded options (:mod:`~build_flows.pipeline.record`).
    Raises BuildError or ValueError with one sentence."""
    out = Path(args.out).absolute()
    if args.target_fps == "max" and args.folding_engine == "finn":
        raise ValueError("--target-fps max needs our folding search: drop --folding-engine finn")
    if args.from_step and args.to_step and \
            STEP_NAMES.index(args.from_step) > STEP_NAMES.index(args.to_step):
        raise ValueError(f"--from-step {args.from_step} comes after --to-step {args.to_step}")
    staging = None
    model_path = Path(args.model)
    if model_path.suffix == ".pt":
        staging = tempfile.TemporaryDirectory(prefix="bnnforge-build-")
        model_path = export_checkpoint(model_path, Path(staging.name), args.data_dir)
    original = checks.load_onnx(model_path)
    original = checks.infer_shapes(original, model_path)
    checks.check_deployable(original, model_path)
    checks.check_binarized(original)
    checks.check_padding(original)
    folding_cfg = checks.read_folding_file(Path(args.folding)) if args.folding else None
    given = record.options_record(args, record.sha256(model_path), folding_cfg)
    continuing = bool(args.resume or args.from_step)
    claim_output(out, record.holds_build, args.force or bool(args.from_step), args.resume)
    state = {} if args.force else record.read_state(out)
    start = 0
    if continuing:
        dirs = record.step_dirs(out)
        if args.resume:  # the first step without a finished output
            start = next((i for i, d in enumerate(dirs) if not (d / "done.json").is_file()),
                         len(dirs))
        else:
            start = STEP_NAMES.index(args.from_step)
        if start > 0 and not (dirs[start - 1] / "done.json").is_file():
            raise BuildError(f"--from-step {args.from_step}: step {STEP_NAMES[start - 1]} has "
                             f"not finished in {out}")
        recorded = state.get("options")
        if start > 0 and recorded is None:
            raise BuildError(f"{out}: its state.json records no options (an older build): "
                             "start over with --force")
        if start > 0:
            given = record.resume_options(ap, explicit, given, recorded, start, out)
    stop = STEP_NAMES.index(args.to_step) + 1 if args.to_step else len(STEP_NAMES)
    return Plan(out=out, model_path=model_path, original=original, options=given, start=start,
                stop=stop, state=state, staging=staging)


def run(plan: Plan, args: argparse.Namespace) -> dict[str, Any]:
    """The build; returns the report (also written to ``out/report.json``)."""
    out, opts, start, stop = plan.out, plan.options, plan.start, plan.stop
    board = get_board(opts["board"])
    clock = opts["clock_ns"] or board.clock_ns
    folding = opts["folding"]
    if args.force:
        record.remove_build(out)
    out.mkdir(parents=True, exist_ok=True)
    model_path = plan.model_path
    if plan.staging is not None:  # the checkpoint's export, kept with the build
        shutil.copyfile(model_path, out / "model.onnx")
        model_path = out / "model.onnx"
        plan.staging.cleanup()
    finn_env.prepare(out / "finn_build")
    cfg = BuildConfig(out=out, board=board, clock_ns=clock, target_fps=opts["target_fps"],
                      folding_config=folding["contents"] if folding else None,
                      mvau_wwidth_max=opts["mvau_wwidth_max"], per_node=args.per_node,
                      folding_engine=opts["folding_engine"], budget=opts["budget"])
    dirs = record.step_dirs(out)
    names = STEP_NAMES
    state_path = out / "state.json"
    if start > 0:
        state = plan.state
        cfg.host_postproc = state.get("host_postproc", [])
        cfg.estimates = state.get("estimates", {})
        cfg.host_nodes = state.get("host_nodes", [])
        cfg.hw = {k: v for k, v in state.get("hw", {}).items()
                  if k in HW_RESULTS and names.index(HW_RESULTS[k]) < start}
        model = checks.load_onnx(dirs[start - 1] / "model.onnx")
        log.info("resuming after step %s", names[start - 1])
    else:
        model = plan.original
        for d in dirs:  # a fresh build: earlier step outputs no longer match
            shutil.rmtree(d, ignore_errors=True)
    original = plan.original
    data_dir = Path(opts["data_dir"]) if opts["data_dir"] else None
    inputs = verify.make_inputs(original, opts["verify_samples"], data_dir, opts["seed"])
    try:
        ref = verify.reference(original, inputs)
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
                if name not in UNVERIFIED:
                    result = verify.verify_step(name, model, inputs, ref,
                                                uint8_input=i >= names.index("pre_post"),
                                                residual=residual)
        except (BuildError, Interrupted):
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
        state_path.write_text(json.dumps({"options": opts,
                                          "model_sha256": opts["model"]["sha256"],
                                          "host_postproc": cfg.host_postproc,
                                          "host_nodes": cfg.host_nodes,
                                          "estimates": cfg.estimates, "hw": cfg.hw},
                                         default=float))
        log.info("[%2d/%d] %-20s %6.1f s  (total %6.1f s)%s", i + 1, len(names), name, secs,
                 total, f"  verified: {result.kind}" if result else "")

    report = make_report(opts, out, model_path, board, clock, cfg, inputs, dirs)
    if stop == len(names):
        report["bitfile"] = vivado.finish(model, cfg, out)
        if cfg.hw.get("deploy"):
            report["deploy"] = package.finish(out, report["bitfile"], cfg)
    reports.write_json(report, out / "report.json")
    reports.write_markdown(report, out / "report.md")
    if cfg.estimates:
        reports.plot_cycles(cfg.estimates, out / "cycles.png")
    return report


def make_report(opts: dict[str, Any], out: Path, model_path: Path, board: Any, clock: float,
                cfg: Any, inputs: verify.Inputs, dirs: list[Path]) -> dict[str, Any]:
    done = [json.loads((d / "done.json").read_text()) for d in dirs if (d / "done.json").is_file()]
    folding = opts["folding"]
    return {
        "model": str(model_path),
        "board": board.name,
        "part": board.part,
        "clock_ns": clock,
        "folding": reports.folding_table(cfg.estimates),
        "folding_source": (folding["path"] if folding else
                           f"{'our search' if opts['folding_engine'] == 'bnnforge' else 'SetFolding'}"
                           f", target {opts['target_fps'] or DEFAULT_FPS} FPS"),
        "target": reports.target_status(opts["target_fps"] or DEFAULT_FPS,
                                         opts["folding"] is not None, cfg.estimates,
                                         cfg.hw.get("performance"), cfg.hw.get("search")),
        "folding_search": cfg.hw.get("search"),
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
        "options": opts,
    }


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python build_flows/build.py", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True,
                    type=InFile("QONNX model or training checkpoint", (".onnx", ".pt")),
                    help="QONNX model.onnx, or a checkpoint.pt")
    ap.add_argument("--board", default="Pynq-Z2", type=BoardName(),
                    help=f"one of {', '.join(BOARDS)}")
    ap.add_argument("--out", required=True, type=OutDir(), help="build directory")
    fold = ap.add_mutually_exclusive_group()
    fold.add_argument("--target-fps", type=search.TargetFps(),
                      help=f"fold for this rate (default {DEFAULT_FPS:g}) in the fewest "
                           "resources, or 'max': the highest rate within --budget")
    fold.add_argument("--folding", type=InFile("folding JSON", (".json",)),
                      help="folding JSON ({layer: {PE, SIMD}})")
    ap.add_argument("--budget", type=search.BudgetSpec(),
                    help="fractions of the part the folding search may fill, e.g. "
                         "lut=0.8,bram=0.9,dsp=1.0,ff=1.0 (the defaults)")
    ap.add_argument("--folding-engine", choices=("bnnforge", "finn"), default="bnnforge",
                    help="without --folding: our search on our cost model (default), or "
                         "FINN's SetFolding")
    ap.add_argument("--clock-ns", type=Float(0.0, hi=1000.0),
                    help="clock period in ns (default: the board's)")
    ap.add_argument("--verify-samples", type=Int(1, 10_000), default=10,
                    help="images verified after every step and in rtlsim (default 10)")
    ap.add_argument("--data-dir", type=InDir("the dataset's directory"),
                    help="where the dataset's test files are")
    ap.add_argument("--seed", type=Int(0, 2**32 - 1), default=0,
                    help="seed of random verification inputs")
    again = ap.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="restart after the last finished step, with the recorded options")
    again.add_argument("--from-step", choices=STEP_NAMES,
                       help="redo the build from this step on (earlier steps must have finished)")
    again.add_argument("--force", action="store_true",
                       help="replace the build already in --out (else it is refused)")
    ap.add_argument("--to-step", choices=STEP_NAMES)
    ap.add_argument("--mvau-wwidth-max", type=Int(1, 4096), default=36,
                    help="SetFolding's cap on SIMD x weight bits (default 36)")
    ap.add_argument("--per-node", action="store_true",
                    help="Yosys resources per unit as well as for the stitched top")
    ap.add_argument("-v", "--verbose", action="store_true")
    return ap


def interrupted_line(out: Path, exc: Interrupted, args: argparse.Namespace) -> str:
    """One line: the signal, the last finished step and how to resume."""
    done = record.finished(out) if out.is_dir() else []
    if not done:
        return f"interrupted ({exc}) before the first step finished: nothing to resume"
    return (f"interrupted ({exc}): steps up to {done[-1]} are kept in {out / 'steps'}; continue "
            f"with: python build_flows/build.py --model {args.model} --out {args.out} --resume")


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: exit 0, 1 (a step failed; finished steps kept), 2 (refused before
    anything was written) or 128 + signal (interrupted; finished steps kept)."""
    ap = parser()
    args, explicit = parse(ap, argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(message)s")
    logging.captureWarnings(True)
    logging.getLogger("py.warnings").propagate = False  # FINN's warnings go to the step logs
    for noisy in ("finn", "qonnx", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        with interruptible():
            plan = prepare(args, explicit, ap)
    except Interrupted as exc:
        log.error("interrupted (%s): nothing was written", exc)
        return exc.exit_status
    except (BuildError, ValueError) as exc:
        return refuse(ap.prog, str(exc))
    try:
        with interruptible():
            report = run(plan, args)
    except Interrupted as exc:
        log.error("%s", interrupted_line(plan.out, exc, args))
        return exc.exit_status
    except (BuildError, ValueError) as exc:
        print(f"build failed: {exc}", file=sys.stderr)
        return 1
    reports.log_summary(report, Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
