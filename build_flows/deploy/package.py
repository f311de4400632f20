"""The deployment package a build writes to ``out/deploy/`` (the ``deploy`` step).

Layout, as finn-plus's own deployment package (``bitfile/`` and ``driver/settings.json``, read by
``finn-plus-driver`` on the board) plus our driver and scripts::

    deploy/
      bitfile/finn-accel.bit, finn-accel.hwh   only when Vivado built them
      driver/settings.json   finn-plus's driver_information (io_shape_dict: datatypes, normal,
                             folded and packed shapes; platform zynq-iodma; fclk) and a
                             "bnnforge" section: host nodes, input shape/padding, classes,
                             the stitched RTL for the simulation backend, why there is no bitfile
      driver.py  validate.py  throughput.py  contract.py  README.md

Without Vivado the package is complete except for ``bitfile/``; its README and settings say why.
:func:`finish` completes it after finn-plus's Vivado steps, checking that the
``settings.json`` finn-plus wrote describes the same buffers as ours.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from build_flows import checks
from build_flows.backend import accel
from build_flows.backend.elem import Elem, dtype_elem
from build_flows.checks import BuildError

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
#: the scripts the package ships (``contract.py`` is :mod:`hw.contract`, the options' checks)
SHIPPED = ("driver.py", "validate.py", "throughput.py", "contract.py")
#: PYNQ images and Vivado versions each board's package is meant for (README, docs)
PYNQ_IMAGES = {"Pynq-Z1": "PYNQ v3.0.1 (Pynq-Z1 image)", "Pynq-Z2": "PYNQ v3.0.1 (Pynq-Z2 image)",
               "Ultra96": "PYNQ v3.0.1 (Ultra96-V2 image)",
               "Ultra96-V2": "PYNQ v3.0.1 (Ultra96-V2 image)",
               "ZCU104": "PYNQ v3.0.1 (ZCU104 image)",
               "KV260": "Kria-PYNQ v3.0 on Ubuntu 22.04 (KV260)"}


def _io_shapes(dt: Any, folded: tuple[int, ...], normal: list[int]
               ) -> tuple[str, list[int], list[int], list[int]]:
    packed = [*folded[:-1], math.ceil(folded[-1] * dt.bitwidth() / 8)]
    return f"DataType['{dt.name}']", list(normal), list(folded), packed


def driver_information(child: Any, fclk_mhz: float) -> dict[str, Any]:
    """finn-plus's ``driver_information`` for the dataflow graph ``child`` in the Zynq shell
    (``get_driver_shapes``: folded shapes of the first/last node, bytes packed per beat)."""
    from qonnx.custom_op.registry import getCustomOp

    first, last = getCustomOp(child.graph.node[0]), getCustomOp(child.graph.node[-1])
    iname, oname = child.graph.input[0].name, child.graph.output[0].name
    idt, ishape_n, ishape_f, ishape_p = _io_shapes(
        child.get_tensor_datatype(iname), tuple(first.get_folded_input_shape()),
        child.get_tensor_shape(iname))
    odt, oshape_n, oshape_f, oshape_p = _io_shapes(
        child.get_tensor_datatype(oname), tuple(last.get_folded_output_shape()),
        child.get_tensor_shape(oname))
    io = {"idt": [idt], "idma_names": ["idma0"], "ishape_normal": [ishape_n],
          "ishape_folded": [ishape_f], "ishape_packed": [ishape_p],
          "odt": [odt], "odma_names": ["odma0"], "oshape_normal": [oshape_n],
          "oshape_folded": [oshape_f], "oshape_packed": [oshape_p],
          "num_inputs": 1, "num_outputs": 1, "number_of_external_weights": 0,
          "external_weights_input_shapes": {}}
    return {"driver_type": "FINNDMAOverlay", "io_shape_dict": io, "external_weights": False,
            "runtime_weights": False, "platform": "zynq-iodma", "fclk_mhz": fclk_mhz}


def check_streams(rtl_dir: Path, child: Any, io: dict[str, Any]) -> None:
    """The accelerator the rtl step stitched in ``rtl_dir`` must read and write exactly the beats
    the buffers hold: elements per beat = the folded innermost dimension, input elements of the
    input datatype's width."""
    meta = accel.read_meta(Path(rtl_dir))
    elem_in, elem_out = Elem(**meta["elem_in"]), Elem(**meta["elem_out"])
    idt = child.get_tensor_datatype(child.graph.input[0].name)
    for side, per_beat, folded in (
            ("input", meta["in_width"] // elem_in.width, io["ishape_folded"][0]),
            ("output", meta["out_width"] // elem_out.width, io["oshape_folded"][0])):
        if per_beat != folded[-1]:
            raise BuildError(f"the accelerator's {side} stream carries {per_beat} elements per "
                             f"beat, the driver's {side} buffer {folded[-1]}")
    if dtype_elem(idt) != elem_in:
        raise BuildError(f"the accelerator's input elements ({elem_in}) are not {idt.name}")


def host_nodes(parent: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The parent graph's nodes before and after the dataflow partition, as the driver runs them
    (``driver.run_host_nodes``); BuildError for a node it cannot run."""
    from qonnx.util.basic import get_by_name

    pre: list[dict[str, Any]] = []
    post: list[dict[str, Any]] = []
    seen = False
    for node in parent.graph.node:
        if node.op_type == "StreamingDataflowPartition":
            seen = True
            continue
        entry: dict[str, Any] = {"op": node.op_type, "name": node.name}
        if node.op_type in ("Reshape", "Flatten"):
            entry["shape"] = parent.get_tensor_shape(node.output[0])
        elif node.op_type == "Transpose":
            entry["perm"] = [int(p) for p in get_by_name(node.attribute, "perm").ints]
            if entry["perm"][0] != 0:
                raise BuildError(f"host node {node.name}: Transpose moves the batch axis")
        elif node.op_type in checks.HOST_TAIL_OPS:
            c = parent.get_initializer(node.input[1])
            if c is None:
                raise BuildError(f"host node {node.name} ({node.op_type}): second input is not "
                                 "a constant")
            entry["value"] = np.asarray(c, dtype=np.float32).tolist()
        elif node.op_type in ("TopK", "ArgMax"):
            k = parent.get_initializer(node.input[1]) if node.op_type == "TopK" else [1]
            axis = get_by_name(node.attribute, "axis")
            keep = get_by_name(node.attribute, "keepdims")
            if int(np.asarray(k).reshape(-1)[0]) != 1 or (
                    node.op_type == "TopK" and parent.graph.output[0].name != node.output[1]):
                raise BuildError(f"host node {node.name}: only top-1 indices run on the host")
            entry.update({"axis": axis.i if axis else -1, "keepdims": keep.i if keep else 1})
        else:
            raise BuildError(f"host node {node.name} ({node.op_type}) has no implementation in "
                             "the driver")
        (post if seen else pre).append(entry)
    return pre, post


def write(parent: Any, child: Any, cfg: Any, rtl_dir: Path, bitfile_reason: str | None) -> Path:
    """Write ``cfg.out/deploy``; returns its path."""
    out = cfg.out / "deploy"
    (out / "driver").mkdir(parents=True, exist_ok=True)
    info = driver_information(child, 1e3 / cfg.clock_ns)
    check_streams(rtl_dir, child, info["io_shape_dict"])
    pre, post = host_nodes(parent)
    meta = checks.metadata(parent)
    classes = meta.get("bnnforge.classes")
    settings = {"driver_information": info, "experiment_information": {},
                "bnnforge": {
                    "board": cfg.board.name, "part": cfg.board.part,
                    "dma_bits": cfg.board.dma_bits,
                    "input_shape": parent.get_tensor_shape(parent.graph.input[0].name),
                    "input_padding": int(meta.get("bnnforge.input_padding", "0") or 0),
                    "dataset": meta.get("bnnforge.dataset"),
                    "classes": json.loads(classes) if classes else None,
                    "host_pre": pre, "host_post": post,
                    "rtl_dir": str(Path(rtl_dir).resolve()),
                    "sim_top": cfg.hw["rtl"]["sim_top"],
                    "sim_filelist": cfg.hw["rtl"]["sim_filelist"],
                    "repository": str(HERE.parents[1]),
                    "bitfile_reason": bitfile_reason}}
    (out / "driver" / "settings.json").write_text(json.dumps(settings, indent=2))
    expected = Path(rtl_dir) / "expected.npz"
    if expected.is_file():  # the verification frames and the software's outputs: validate.py
        shutil.copyfile(expected, out / "driver" / "selftest.npz")  # --self-test
    for name in SHIPPED:
        shutil.copyfile(HERE / name, out / name)
    (out / "README.md").write_text(readme(settings, cfg))
    log.info("deployment package: %s (%s)", out, "no bitfile: " + bitfile_reason
             if bitfile_reason else "with bitfile")
    return out


def finish(out: Path, bitfile: dict[str, Any], cfg: Any) -> dict[str, Any]:
    """After the Vivado steps (``bitfile`` is report.json's entry): copy finn-plus's bitfile and
    hardware handoff into the package, or record why there is none. finn-plus's
    ``settings.json`` must describe the same buffers as ours (its IODMA names are then kept)."""
    deploy = out / "deploy"
    path = deploy / "driver" / "settings.json"
    ours = json.loads(path.read_text())
    reason = bitfile.get("reason")
    if bitfile.get("path"):
        finn_deploy = Path(bitfile["deploy_dir"])
        theirs = json.loads((finn_deploy / "driver" / "settings.json").read_text())
        ti = theirs["driver_information"]
        if ti.get("external_weights") or ti.get("runtime_weights"):
            raise BuildError(f"{finn_deploy / 'driver'}: finn-plus made weights external or "
                             "runtime-writable; our units embed their weights")
        a = ours["driver_information"]["io_shape_dict"]
        b = theirs["driver_information"]["io_shape_dict"]
        for key in ("idt", "odt", "ishape_folded", "ishape_packed", "oshape_folded",
                    "oshape_packed"):
            if [list(map(str, x)) for x in a[key]] != [list(map(str, x)) for x in b[key]]:
                raise BuildError(f"finn-plus's settings.json disagrees with ours on {key}: "
                                 f"{b[key]} vs {a[key]} ({finn_deploy / 'driver'})")
        ours["driver_information"] = {**ours["driver_information"],
                                      **theirs["driver_information"]}
        shutil.copytree(finn_deploy / "bitfile", deploy / "bitfile", dirs_exist_ok=True)
        reason = None
    ours["bnnforge"]["bitfile_reason"] = reason
    path.write_text(json.dumps(ours, indent=2))
    (deploy / "README.md").write_text(readme(ours, cfg))
    bit = deploy / "bitfile" / "finn-accel.bit"
    return {"directory": str(deploy), "bitfile": str(bit) if bit.is_file() else None,
            "reason": reason}


def readme(settings: dict[str, Any], cfg: Any) -> str:
    """The package's README: what it holds, the PYNQ image, the commands on the board."""
    bn, io = settings["bnnforge"], settings["driver_information"]["io_shape_dict"]
    board = bn["board"]
    bit = ("`bitfile/finn-accel.bit` and `.hwh`: built by Vivado" if not bn["bitfile_reason"]
           else f"no bitfile in this package: {bn['bitfile_reason']}. Rebuild on a machine with "
                "Vivado to add `bitfile/`; the simulation backend works without it")
    rows = [("input", io["idt"][0], bn["input_shape"], io["ishape_packed"][0]),
            ("output", io["odt"][0], io["oshape_normal"][0], io["oshape_packed"][0])]
    table = "| | datatype | shape | packed buffer per frame |\n|---|---|---|---|\n" + "".join(
        f"| {r[0]} | {r[1]} | {r[2]} | {r[3][1:]} bytes |\n" for r in rows)
    host = ", ".join(n["op"] for n in bn["host_pre"] + bn["host_post"]) or "none"
    dataset = bn.get("dataset") or "the model's dataset"
    data = ("--images test_batch.bin" if dataset == "cifar10" else
            "--images t10k-images-idx3-ubyte.gz --labels t10k-labels-idx1-ubyte.gz")
    return f"""# bnnforge deployment package: {board} ({bn['part']})

{bit}.

Built for **{PYNQ_IMAGES.get(board, 'PYNQ v3.0.1')}**, clock {1e3 / cfg.clock_ns:.0f} MHz.

{table}
Host nodes run by the driver around the accelerator: {host}.

## On the board
Copy this directory to the board (e.g. `scp -r deploy xilinx@pynq:~/bnnforge`), then, as root
in PYNQ's Python environment (`sudo -i; source /etc/profile.d/pynq_venv.sh`):

    pip install finn-plus-driver==1.6.1
    python validate.py --self-test --out selftest.json
    python validate.py {data}
    python throughput.py --batch-sizes 1,10,100,1000

`validate.py --self-test` runs the build's verification frames and requires the outputs the
build computed in software, bit for bit; with a dataset file it prints the test-set accuracy
({dataset}) and writes `validate.json`; `throughput.py` writes
`throughput.json` (frames per second per batch size). None of them overwrites an earlier
result file unless given `--force`; options are checked before anything runs. The same commands with `--sim` run on
the Verilator simulation of the accelerator instead (on the build machine, with the
bnnforge repository and Verilator).

## From Python
    from driver import Accelerator
    acc = Accelerator.board(".", batch_size=100)   # or Accelerator.simulation(".")
    labels = acc.classify(images)                  # uint8, (N, C, H, W) or (N, H, W)

## Files
- `driver/settings.json`: finn-plus-driver's settings (buffers, datatypes, clock) and ours
  (host nodes, input padding, classes, the RTL used by the simulation backend).
- `driver.py`: the `Accelerator` class (checks, host nodes, packing, board or simulation).
- `validate.py`, `throughput.py`: the two scripts above; `contract.py`: their option checks.
"""
