"""The bnnforge accelerator driver: one class for the PYNQ board and for the Verilator simulation.

Copied into every deployment package (``out/deploy/driver.py``); it needs numpy and the
``finn-plus-driver`` package (its packing functions, and on a board its ``FINNDMAOverlay`` for the
bitfile, buffers and DMAs of the shell FINN builds around our RTL). Everything between the user's
images and the accelerator's buffers is in this file and runs the same way on both backends:

1. checks (shape, dtype and value range of the input, batch size against the buffers);
2. the host nodes before the accelerator (data layout: Reshape/Flatten/Transpose);
3. folding and packing into the input buffer: ``finnpy_to_packed_bytearray(x, idt,
   reverse_inner=True, reverse_endian=True)``, the call ``FINNDMAOverlay.pack_input`` makes;
4. the backend moves the packed buffer through the accelerator:
   :class:`BoardBackend` with the shell's IODMAs, :class:`SimBackend` through the stitched
   Verilator build, reading each stream beat from the buffer as the IODMA does (little-endian
   bytes, the first element in the least significant bits);
5. unpacking the output buffer (``packed_bytearray_to_finnpy``) and the host nodes after the
   accelerator (a per-class affine, top-1).

The simulation runs our stitched accelerator (``accel.sv``: the same units with our FIFOs and
width converters between them); the bitfile holds FINN's stitch of the same units' per-node
tops. Both are verified against FINN's execution of the graph; that they agree on a board is
what ``validate.py --self-test`` checks there.

Usage::

    acc = Accelerator.board("deploy/", batch_size=100)        # on the board
    acc = Accelerator.simulation("deploy/", batch_size=100)   # anywhere with Verilator
    labels = acc.classify(images)                              # uint8, (N, C, H, W) or (N, H, W)
"""

from __future__ import annotations

import json
import logging
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("bnnforge.driver")


class DriverError(ValueError):
    """Bad input for the accelerator, or a deployment package the driver cannot use."""


def _datatype(name: str) -> Any:
    from qonnx.core.datatype import DataType

    return DataType[name.replace("DataType[", "").strip("]'\"")]


class IOSpec:
    """The accelerator's input and output as the build described them in ``settings.json``
    (finn-plus's ``io_shape_dict``: datatypes and normal/folded/packed shapes, batch 1)."""

    def __init__(self, io: dict[str, Any]) -> None:
        if io.get("num_inputs", 1) != 1 or io.get("num_outputs", 1) != 1:
            raise DriverError("the driver supports accelerators with one input and one output")
        try:
            self.idt, self.odt = _datatype(io["idt"][0]), _datatype(io["odt"][0])
            self.ishape = tuple(io["ishape_normal"][0])[1:]
            self.ifolded = tuple(io["ishape_folded"][0])[1:]
            self.ipacked = tuple(io["ishape_packed"][0])[1:]
            self.oshape = tuple(io["oshape_normal"][0])[1:]
            self.ofolded = tuple(io["oshape_folded"][0])[1:]
            self.opacked = tuple(io["oshape_packed"][0])[1:]
        except (KeyError, IndexError, TypeError) as exc:
            raise DriverError(f"settings.json: io_shape_dict lacks {exc}") from None

    @property
    def in_beat_bytes(self) -> int:
        return int(self.ipacked[-1])

    @property
    def out_beat_bytes(self) -> int:
        return int(self.opacked[-1])


def run_host_nodes(nodes: list[dict[str, Any]], x: np.ndarray) -> np.ndarray:
    """Run the host part of the graph (a chain of data-layout, elementwise and top-1 nodes, as
    ``settings.json`` lists them) on a batch ``x``; ONNX semantics, float32 arithmetic."""
    for node in nodes:
        op = node["op"]
        if op in ("Reshape", "Flatten"):
            x = x.reshape(len(x), *node["shape"][1:])
        elif op == "Transpose":
            x = x.transpose(node["perm"])
        elif op in ("Mul", "Add", "Sub", "Div"):
            c = np.asarray(node["value"], dtype=np.float32)
            x = getattr(np, {"Mul": "multiply", "Add": "add", "Sub": "subtract",
                             "Div": "divide"}[op])(x.astype(np.float32), c)
        elif op in ("TopK", "ArgMax"):  # k = 1: the first maximum, as ONNX TopK/ArgMax
            x = np.argmax(x, axis=node["axis"])
            x = np.expand_dims(x, node["axis"]) if node.get("keepdims", 1) else x
        else:
            raise DriverError(f"host node {node.get('name', '?')}: op {op} is not supported")
    return x


class BoardBackend:
    """The bitfile on a PYNQ board: finn-plus-driver's ``FINNDMAOverlay`` owns the buffers and
    starts the IODMAs; this class only moves packed buffers."""

    def __init__(self, bitfile: Path, driver_information: dict[str, Any], batch_size: int) -> None:
        try:
            from finn_plus_driver.overlays.dma import FINNDMAOverlay
        except ImportError as exc:
            raise DriverError(f"the board backend needs PYNQ and finn-plus-driver ({exc}); "
                              "on the board run: sudo pip install finn-plus-driver") from exc
        # a copy: FINNDMAOverlay turns the datatype names in io_shape_dict into objects
        info = {k: v for k, v in json.loads(json.dumps(driver_information)).items()
                if k != "driver_type"}
        try:
            self.overlay = FINNDMAOverlay(str(bitfile), batch_size=batch_size, **info)
        except Exception as exc:  # PYNQ: not root, no such IP in the .hwh, ...
            raise DriverError(f"{bitfile}: the overlay did not load: {type(exc).__name__}: "
                              f"{exc}") from exc
        self.fclk_mhz = float(getattr(self.overlay, "fclk_mhz_actual", info.get("fclk_mhz", 100)))
        self.last_cycles: int | None = None

    def resize(self, batch_size: int) -> None:
        self.overlay.batch_size = batch_size  # reallocates the DMA buffers

    def run(self, packed: np.ndarray) -> np.ndarray:
        n = len(packed)
        ov = self.overlay
        ov.ibuf_packed_device[0][:n] = packed
        ov.ibuf_packed_device[0].flush()
        ov.execute_on_buffers(batch_size=n)
        ov.obuf_packed_device[0].invalidate()
        return np.array(ov.obuf_packed_device[0][:n])


class SimBackend:
    """The stitched accelerator simulated with Verilator (``out/rtl`` of a build: ``accel_io.f``,
    the accelerator with the stream ports the IODMAs see, and the memory files). Input beats are
    read from the packed buffer as the IODMA reads them, output beats written as it writes them;
    with ``dma_bits``, at most that many input bits a cycle, as the board's DMA delivers them."""

    def __init__(self, rtl_dir: Path, top: str, filelist: Path, spec: IOSpec, fclk_mhz: float,
                 repository: Path | None, seed: int = 0, p_valid: float = 1.0,
                 p_ready: float = 1.0, dma_bits: int | None = None) -> None:
        if repository is not None and str(repository) not in sys.path:
            sys.path.insert(0, str(repository))
        try:
            from hw import verilator
        except ImportError as exc:
            raise DriverError(f"the simulation backend needs the bnnforge repository on the "
                              f"Python path ({exc})") from exc
        filelist = Path(filelist)  # the stitched top with the IODMAs' ports
        if not filelist.is_file():
            raise DriverError(f"{filelist} not found: give the rtl/ directory of a build")
        self.verilator, self.dir, self.spec = verilator, Path(rtl_dir), spec
        try:
            self.sim = verilator.build(top, [Path(s) for s in filelist.read_text().split()])
        except (verilator.SimError, OSError) as exc:
            raise DriverError(f"the simulation of {filelist} did not build: {exc}") from exc
        self.fclk_mhz, self.seed, self.p_valid, self.p_ready = fclk_mhz, seed, p_valid, p_ready
        pace = spec.in_beat_bytes * 8 / dma_bits if dma_bits else 0.0
        self.in_interval = pace if pace > 1 else 0.0  # cycles per input beat
        self.last_cycles: int | None = None

    def resize(self, batch_size: int) -> None:
        pass  # no physical buffers; the driver still enforces its batch size

    def run(self, packed: np.ndarray) -> np.ndarray:
        n = len(packed)
        beats = beats_from_buffer(packed, self.spec.in_beat_bytes)
        n_out = n * int(np.prod(self.spec.opacked)) // self.spec.out_beat_bytes
        try:
            got, cycles, _ = self.verilator.run(self.sim, beats, n_out, self.dir, seed=self.seed,
                                                p_valid=self.p_valid, p_ready=self.p_ready,
                                                max_cycles=50_000_000 + 10_000_000 * n,
                                                in_interval=self.in_interval)
        except self.verilator.SimError as exc:
            raise DriverError(str(exc)) from exc
        self.last_cycles = cycles
        return buffer_from_beats(got, self.spec.out_beat_bytes).reshape(n, *self.spec.opacked)


def beats_from_buffer(packed: np.ndarray, beat_bytes: int) -> list[int]:
    """Stream beats as an IODMA reads them from a packed buffer: ``beat_bytes`` consecutive
    bytes per beat, little-endian (byte 0 holds the first element's low bits)."""
    rows = np.ascontiguousarray(packed, dtype=np.uint8).reshape(-1, beat_bytes)
    return [int.from_bytes(r.tobytes(), "little") for r in rows]


def buffer_from_beats(beats: list[int], beat_bytes: int) -> np.ndarray:
    """The bytes an IODMA writes for output ``beats`` (inverse of :func:`beats_from_buffer`)."""
    return np.frombuffer(b"".join(b.to_bytes(beat_bytes, "little") for b in beats),
                         dtype=np.uint8).copy()


class Accelerator:
    """One accelerator, on a board or in simulation: checks, packs, runs and unpacks batches of up
    to ``batch_size`` frames (the size of the DMA buffers)."""

    def __init__(self, settings: dict[str, Any], backend: BoardBackend | SimBackend,
                 batch_size: int = 1, directory: Path | None = None) -> None:
        info = settings["driver_information"]
        self.directory = Path(directory) if directory else None  # the deployment package
        self.settings, self.backend = settings, backend
        self.spec = IOSpec(info["io_shape_dict"])
        self.meta: dict[str, Any] = settings.get("bnnforge", {})
        self.pre: list[dict[str, Any]] = self.meta.get("host_pre", [])
        self.post: list[dict[str, Any]] = self.meta.get("host_post", [])
        self.input_shape = tuple(self.meta.get("input_shape", [1, *self.spec.ishape]))[1:]
        self._batch = 0
        self.batch_size = batch_size

    @staticmethod
    def load_settings(deploy_dir: Path) -> dict[str, Any]:
        path = Path(deploy_dir) / "driver" / "settings.json"
        if not path.is_file():
            raise DriverError(f"{path} not found: give a deployment package (a build's deploy/)")
        try:
            settings = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise DriverError(f"{path}: not valid JSON ({exc})") from None
        try:
            info = settings["driver_information"]
            IOSpec(info["io_shape_dict"])
            float(info.get("fclk_mhz", 100.0))
            meta = settings.get("bnnforge", {})
            if not isinstance(meta, dict):
                raise TypeError("the bnnforge section is not an object")
            for key in ("input_shape", "host_pre", "host_post", "classes"):
                if key in meta and not isinstance(meta[key], list):
                    raise TypeError(f"bnnforge.{key} is not a list")
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise DriverError(f"{path}: not the settings of a bnnforge package "
                              f"({type(exc).__name__}: {exc})") from None
        return settings

    @classmethod
    def board(cls, deploy_dir: Path, batch_size: int = 1,
              bitfile: Path | None = None) -> Accelerator:
        """The accelerator programmed on this PYNQ board from the package's bitfile."""
        if int(batch_size) < 1:
            raise DriverError(f"batch_size must be at least 1, got {batch_size}")
        settings = cls.load_settings(deploy_dir)
        bit = Path(bitfile) if bitfile else Path(deploy_dir) / "bitfile" / "finn-accel.bit"
        if not bit.is_file():
            why = settings.get("bnnforge", {}).get("bitfile_reason") or "not built"
            raise DriverError(f"{bit} not found: this package has no bitfile ({why})")
        return cls(settings, BoardBackend(bit, settings["driver_information"], batch_size),
                   batch_size, deploy_dir)

    @classmethod
    def simulation(cls, deploy_dir: Path, batch_size: int = 1, rtl_dir: Path | None = None,
                   **sim_options: Any) -> Accelerator:
        """The same accelerator simulated with Verilator from the build's stitched RTL."""
        settings = cls.load_settings(deploy_dir)
        meta = settings.get("bnnforge", {})
        if not isinstance(meta.get("sim_top"), str) or not isinstance(meta.get("sim_filelist"),
                                                                         str):
            raise DriverError("settings.json names no simulation top: rebuild the package")
        rtl = Path(rtl_dir or meta.get("rtl_dir", ""))
        filelist = rtl / Path(meta["sim_filelist"]).name
        repo = Path(meta["repository"]) if meta.get("repository") else None
        fclk = float(settings["driver_information"].get("fclk_mhz", 100.0))
        backend = SimBackend(rtl, meta["sim_top"], filelist,
                             IOSpec(settings["driver_information"]["io_shape_dict"]), fclk, repo,
                             **{"dma_bits": meta.get("dma_bits"), **sim_options})
        return cls(settings, backend, batch_size, deploy_dir)

    @property
    def batch_size(self) -> int:
        return self._batch

    @batch_size.setter
    def batch_size(self, value: int) -> None:
        if int(value) < 1:
            raise DriverError(f"batch_size must be at least 1, got {value}")
        if int(value) != self._batch:
            self._batch = int(value)
            self.backend.resize(self._batch)

    # --- the steps every batch takes, on either backend ---------------------------------------
    def check_input(self, x: np.ndarray, shape: tuple[int, ...] | None = None) -> np.ndarray:
        """Raise DriverError unless ``x`` is (n, *shape) integers of the input datatype with
        1 <= n <= batch_size (``shape``: the model's input shape)."""
        x = np.asarray(x)
        shape = shape or self.input_shape
        if x.ndim != 1 + len(shape) or tuple(x.shape[1:]) != tuple(shape):
            raise DriverError(f"input shape {x.shape}: expected (batch, "
                              f"{', '.join(map(str, shape))})")
        if len(x) == 0:
            raise DriverError("empty batch")
        if len(x) > self.batch_size:
            raise DriverError(f"batch of {len(x)} frames is larger than the buffers "
                              f"({self.batch_size} frames): set batch_size or use classify()")
        if x.dtype.kind not in "iub":
            raise DriverError(f"input dtype {x.dtype}: expected integers of "
                              f"{self.spec.idt.name} (e.g. numpy uint8 images)")
        lo, hi = self.spec.idt.min(), self.spec.idt.max()
        bad = np.argwhere((x < lo) | (x > hi) | ((x == 0) & (self.spec.idt.name == "BIPOLAR")))
        if len(bad):
            idx = tuple(int(i) for i in bad[0])
            raise DriverError(f"input value {x[idx]} at index {idx} is not a "
                              f"{self.spec.idt.name} value ([{lo}, {hi}]"
                              f"{', no 0' if self.spec.idt.name == 'BIPOLAR' else ''})")
        return x

    def pack(self, x: np.ndarray, host_pre: bool = True) -> np.ndarray:
        """Host nodes before the accelerator, folding and packing: the input buffer's bytes
        (without ``host_pre``, ``x`` is already in the accelerator's own input layout)."""
        from finn_plus_driver.packing import finnpy_to_packed_bytearray

        x = run_host_nodes(self.pre, self.check_input(x)) if host_pre else \
            self.check_input(x, self.spec.ishape)
        folded = x.reshape(len(x), *self.spec.ifolded)
        if self.spec.idt.bitwidth() == 8 and not self.spec.idt.signed():
            folded = folded.astype(np.uint8)  # the whole-byte fast path
        packed = finnpy_to_packed_bytearray(folded, self.spec.idt, reverse_inner=True,
                                            reverse_endian=True)
        return np.ascontiguousarray(packed).reshape(len(x), *self.spec.ipacked)

    def unpack(self, packed: np.ndarray, host_post: bool = True) -> np.ndarray:
        """Unpacking of the output buffer and the host nodes after the accelerator."""
        from finn_plus_driver.packing import packed_bytearray_to_finnpy

        n = len(packed)
        folded = packed_bytearray_to_finnpy(packed, self.spec.odt, (n, *self.spec.ofolded),
                                            reverse_inner=True, reverse_endian=True)
        y = np.asarray(folded).reshape(n, *self.spec.oshape)
        return run_host_nodes(self.post, y) if host_post else y

    def execute(self, x: np.ndarray, host_nodes: bool = True) -> np.ndarray:
        """One batch through the accelerator: the graph's output for each frame (without
        ``host_nodes``: the accelerator's own input and output)."""
        return self.unpack(self.backend.run(self.pack(x, host_nodes)), host_nodes)

    def self_test(self, path: Path | None = None) -> dict[str, Any]:
        """The build's verification frames (``driver/selftest.npz``) through the accelerator; the
        outputs must equal the build's software execution of the dataflow graph bit for bit."""
        path = Path(path) if path else Path(self.directory or ".") / "driver" / "selftest.npz"
        if not path.is_file():
            raise DriverError(f"{path} not found: the build wrote no self-test frames")
        try:
            with np.load(path) as data:
                frames, want = data["frames"], data["outputs"]
            if want.ndim != 2 or len(frames) != len(want):
                raise ValueError(f"{len(frames)} frames but outputs of shape {want.shape}")
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise DriverError(f"{path}: not the build's self-test frames "
                              f"({type(exc).__name__}: {exc})") from None
        got = np.concatenate([self.execute(frames[i:i + self.batch_size], host_nodes=False)
                              .reshape(-1, want.shape[1])
                              for i in range(0, len(frames), self.batch_size)])
        bad = np.argwhere(got != want)
        first = None if not len(bad) else {
            "frame": int(bad[0][0]), "position": int(bad[0][1]),
            "accelerator": float(got[tuple(bad[0])]), "software": float(want[tuple(bad[0])])}
        return {"frames": int(len(frames)), "mismatches": int(len(bad)), "first_mismatch": first}

    # --- conveniences -----------------------------------------------------------------------
    def prepare(self, images: np.ndarray) -> np.ndarray:
        """Dataset images (N, C, H, W) or (N, H, W) as the model's input: the build's zero
        padding (e.g. 28x28 Fashion-MNIST to CNV's 32x32) is applied here."""
        x = np.asarray(images)
        if x.ndim == len(self.input_shape) and len(self.input_shape) == 3:
            x = x[:, None]
        pad = int(self.meta.get("input_padding", 0))
        if pad and x.ndim == 4 and tuple(x.shape[2:]) != tuple(self.input_shape[1:]):
            x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
        return x

    def classify(self, images: np.ndarray) -> np.ndarray:
        """Top-1 class of every image, in batches of ``batch_size``."""
        x = self.prepare(images)
        out = [self.execute(x[i:i + self.batch_size]) for i in range(0, len(x), self.batch_size)]
        y = np.concatenate(out).reshape(len(x), -1)
        return y[:, 0].astype(np.int64) if y.shape[1] == 1 else np.argmax(y, axis=1)

    def throughput(self, batch_sizes: list[int], seed: int = 0) -> list[dict[str, Any]]:
        """Frames per second per batch size: the time of the packed buffers' round trip
        through the backend (DMAs and accelerator, or the simulation; packing excluded); in
        simulation also the simulated cycles and the FPS they mean at the clock."""
        rng = np.random.default_rng(seed)
        lo, hi = int(self.spec.idt.min()), int(self.spec.idt.max())
        rows = []
        for b in batch_sizes:
            self.batch_size = b
            x = rng.integers(lo, hi + 1, size=(b, *self.input_shape)).astype(
                np.uint8 if hi <= 255 and lo >= 0 else np.int64)
            if self.spec.idt.name == "BIPOLAR":
                x = 2 * (x > 0) - 1
            packed = self.pack(x)
            t0 = time.perf_counter()
            self.backend.run(packed)
            secs = time.perf_counter() - t0
            row = {"batch_size": b, "seconds": secs, "fps_wall": b / secs}
            cycles = getattr(self.backend, "last_cycles", None)
            if cycles:
                row.update({"cycles": cycles,
                            "fps_at_fclk": b * self.backend.fclk_mhz * 1e6 / cycles})
            rows.append(row)
            log.info("batch %d: %.0f frames/s%s", b, row["fps_wall"],
                     f", {row['fps_at_fclk']:,.0f} FPS at {self.backend.fclk_mhz:g} MHz "
                     f"({cycles} cycles)" if cycles else "")
        return rows
