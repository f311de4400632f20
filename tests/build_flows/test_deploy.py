"""The deployment package and its driver: the simulation backend runs the very packing, stream and
unpacking code the board runs, and must reproduce the software's predictions on real images."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from build_flows import checks, verify
from build_flows.deploy.driver import (Accelerator, DriverError, beats_from_buffer,
                                       buffer_from_beats)
from tests.build_flows.conftest import run_build
from tests.build_flows.test_build import CONFIGS

pytestmark = [pytest.mark.finn, pytest.mark.verilator]

FOLDING = {"tfc": "tfc_w1a1.json"}
SELF_TEST_FRAMES = {"tfc": 20}
#: real test images through the simulated driver
IMAGES = {"tfc": 100}
FASHION = verify.DEBIAN["fashion-mnist"]


@pytest.fixture(scope="module")
def packages(build_models, tmp_path_factory):
    """Builds (to the deploy step) of calibrated TFC bnn models with the published folding;
    each happens once, when a test first asks for it: {net: (build dir, report, model path)}."""
    root = tmp_path_factory.mktemp("deploy")

    class Lazy(dict):
        def __missing__(self, net: str):
            model = build_models[net, "bnn"]
            # the verification images become the package's self-test frames; CNV's Python
            # execution takes about a second per image and step, so it verifies on fewer
            rc, report = run_build("--model", model, "--out", root / net, "--folding",
                                   CONFIGS / FOLDING[net], "--verify-samples",
                                   SELF_TEST_FRAMES[net], "--to-step", "deploy")
            assert rc == 0
            self[net] = (root / net, report, model)
            return self[net]

    return Lazy()


def fashion_images(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` Fashion-MNIST test images as the dataset stores them (28x28) and labels."""
    if not (FASHION / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.fail(f"{FASHION} missing: `make setup` as root installs dataset-fashion-mnist")
    x = verify._read_idx(FASHION / "t10k-images-idx3-ubyte.gz")[:n]
    return x, verify._read_idx(FASHION / "t10k-labels-idx1-ubyte.gz")[:n].astype(np.int64)


def software_top1(model_path: Path, images: np.ndarray, pad: int) -> np.ndarray:
    """The exported QONNX model's class (first maximum of its logits) for each image."""
    model = checks.load_onnx(model_path)
    x = np.pad(images[:, None], ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    logits = verify.reference(model, verify.Inputs(x, None, "test"))
    return np.argmax(logits, axis=1)


def test_package_without_vivado(packages) -> None:
    out, report, _ = packages["tfc"]
    deploy = out / "deploy"
    for name in ("driver.py", "validate.py", "throughput.py", "README.md",
                 "driver/settings.json", "driver/selftest.npz"):
        assert (deploy / name).is_file(), name
    assert not (deploy / "bitfile").exists()
    assert report["deploy"]["directory"] == str(deploy) and report["deploy"]["bitfile"] is None
    assert "Vivado" in report["deploy"]["reason"]
    settings = json.loads((deploy / "driver" / "settings.json").read_text())
    info = settings["driver_information"]
    assert info["driver_type"] == "FINNDMAOverlay" and info["platform"] == "zynq-iodma"
    io = info["io_shape_dict"]  # the first unit takes 49 pixels per beat: 16 beats per frame
    assert io["idt"] == ["DataType['UINT8']"] and io["ishape_packed"] == [[1, 16, 49]]
    assert io["oshape_normal"] == [[1, 1]] and io["oshape_packed"] == [[1, 1, 1]]
    assert [n["op"] for n in settings["bnnforge"]["host_pre"]] == ["Reshape"]
    assert "Vivado" in settings["bnnforge"]["bitfile_reason"]
    readme = (deploy / "README.md").read_text()
    assert "PYNQ v3.0.1" in readme and "no bitfile in this package" in readme


def check_simulated_driver(out: Path, model: Path, n: int, pad: int = 0) -> None:
    """``n`` real test images (28x28; the driver pads them for CNV) through the simulation
    backend of the package in ``out/deploy``: every prediction equals the exported model's."""
    images, _ = fashion_images(n)
    acc = Accelerator.simulation(out / "deploy", batch_size=32)
    got = acc.classify(images)
    want = software_top1(model, images, pad)
    bad = np.flatnonzero(got != want)
    assert not len(bad), f"{len(bad)} predictions differ; first at image {bad[0]}: " \
                         f"driver {got[bad[0]]}, software {want[bad[0]]}"
    assert acc.backend.last_cycles and len(got) == n


def test_simulated_driver_equals_software(packages) -> None:
    """TFC here; CNV's package is built and checked so in ``test_build_cnv.py``."""
    out, _, model = packages["tfc"]
    check_simulated_driver(out, model, IMAGES["tfc"])


def test_scripts_in_simulation(packages, tmp_path: Path) -> None:
    """validate.py (dataset and self-test) and throughput.py, run as on the board but --sim."""
    out, _, model = packages["tfc"]
    deploy = out / "deploy"

    def script(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(deploy / args[0]), *args[1:], "--sim"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=600)

    proc = script("validate.py", "--images", str(FASHION / "t10k-images-idx3-ubyte.gz"),
                  "--labels", str(FASHION / "t10k-labels-idx1-ubyte.gz"), "--limit", "100",
                  "--out", "v.json")
    assert proc.returncode == 0, proc.stderr
    res = json.loads((tmp_path / "v.json").read_text())
    images, labels = fashion_images(100)
    want = software_top1(model, images, 0)
    assert res["images"] == 100 and res["predictions"] == want.tolist()
    assert res["accuracy"] == pytest.approx(np.mean(want == labels))
    assert "accuracy" in proc.stderr

    proc = script("validate.py", "--self-test", "--out", "s.json")
    assert proc.returncode == 0, proc.stderr
    res = json.loads((tmp_path / "s.json").read_text())
    assert res["frames"] == 20 and res["mismatches"] == 0

    proc = script("throughput.py", "--batch-sizes", "1,8", "--out", "t.json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads((tmp_path / "t.json").read_text())["rows"]
    assert [r["batch_size"] for r in rows] == [1, 8]
    # TFC, published folding: 64 cycles per frame, but the simulation, as the board, reads the
    # input at the DMA's 64 bits per cycle: one frame (16 beats of 392 bits) per 98 cycles
    assert 7 * 98 * 0.98 <= rows[1]["cycles"] - rows[0]["cycles"] <= 7 * 98 * 1.05
    assert rows[1]["fps_at_fclk"] > rows[0]["fps_at_fclk"] > 0
    assert (tmp_path / "t.png").is_file()


def test_self_test_reports_the_first_mismatch(packages, tmp_path: Path) -> None:
    out, _, _ = packages["tfc"]
    acc = Accelerator.simulation(out / "deploy", batch_size=8)
    data = dict(np.load(out / "deploy" / "driver" / "selftest.npz"))
    data["outputs"][13, 0] = (data["outputs"][13, 0] + 1) % 10
    np.savez(tmp_path / "bad.npz", **data)
    res = acc.self_test(tmp_path / "bad.npz")
    assert res["mismatches"] == 1 and res["first_mismatch"]["frame"] == 13
    assert acc.self_test()["mismatches"] == 0


def test_packing_is_the_rtl_stream_encoding(packages) -> None:
    """Buffer bytes read as the IODMA reads them give exactly the beats our RTL's encoding
    (``hw.units.beats_of``) gives for the same frames; and back for outputs."""
    from hw import units

    out, _, _ = packages["tfc"]
    acc = Accelerator.simulation(out / "deploy", batch_size=4)
    frames = np.random.default_rng(0).integers(0, 256, (4, 784)).astype(np.uint8)
    packed = acc.pack(frames, host_pre=False)
    assert beats_from_buffer(packed, acc.spec.in_beat_bytes) == units.beats_of(
        frames.reshape(-1), 49, 8)
    beats = [3, 9, 0, 7]
    assert acc.unpack(buffer_from_beats(beats, 1).reshape(4, 1, 1), False).reshape(-1).tolist() \
        == beats


def test_malformed_inputs_get_clear_errors(packages, tmp_path: Path) -> None:
    out, _, _ = packages["tfc"]
    acc = Accelerator.simulation(out / "deploy", batch_size=4)
    ok = np.zeros((4, 1, 28, 28), np.uint8)
    with pytest.raises(DriverError, match=r"input shape \(4, 28, 28\): expected \(batch, 1, 28, "):
        acc.execute(ok[:, 0])
    with pytest.raises(DriverError, match="input dtype float32: expected integers of UINT8"):
        acc.execute(ok.astype(np.float32))
    with pytest.raises(DriverError, match=r"batch of 5 frames is larger than the buffers \(4"):
        acc.execute(np.zeros((5, 1, 28, 28), np.uint8))
    bad = ok.astype(np.int64)
    bad[2, 0, 3, 4] = 300
    with pytest.raises(DriverError, match=r"value 300 at index \(2, 0, 3, 4\) is not a UINT8"):
        acc.execute(bad)
    with pytest.raises(DriverError, match="empty batch"):
        acc.execute(ok[:0])
    with pytest.raises(DriverError, match="settings.json not found"):
        Accelerator.simulation(tmp_path)
    with pytest.raises(DriverError, match="no bitfile"):
        Accelerator.board(out / "deploy")
    assert acc.classify(np.zeros((9, 28, 28), np.uint8)).shape == (9,)  # split into batches


def test_board_backend_moves_the_buffers_as_finn_plus_driver_expects(packages, tmp_path: Path,
                                                                       monkeypatch) -> None:
    """The board path without a board: a stand-in for finn-plus-driver's FINNDMAOverlay (its
    buffer allocation, flush/invalidate and execute_on_buffers(batch_size=n)) whose DMAs feed
    the simulated accelerator. Predictions must equal the simulation backend's."""
    import types

    out, _, _ = packages["tfc"]
    sim = Accelerator.simulation(out / "deploy", batch_size=16)
    calls = []

    class Buffer(np.ndarray):
        def flush(self) -> None:
            calls.append("flush")

        def invalidate(self) -> None:
            calls.append("invalidate")

    class FakeOverlay:
        def __init__(self, bitfile, batch_size, io_shape_dict, platform, **kwargs) -> None:
            assert platform == "zynq-iodma" and Path(bitfile).name == "finn-accel.bit"
            self.io = io_shape_dict
            io_shape_dict["idt"] = [object()]  # as FINNDMAOverlay does (DataType objects)
            self.batch_size = batch_size

        @property
        def batch_size(self) -> int:
            return self._b

        @batch_size.setter
        def batch_size(self, b: int) -> None:
            self._b = b
            self.ibuf_packed_device = [np.zeros((b, *self.io["ishape_packed"][0][1:]),
                                                np.uint8).view(Buffer)]
            self.obuf_packed_device = [np.zeros((b, *self.io["oshape_packed"][0][1:]),
                                                np.uint8).view(Buffer)]

        def execute_on_buffers(self, batch_size: int) -> None:
            assert calls[-1] == "flush"
            packed = np.asarray(self.ibuf_packed_device[0][:batch_size])
            self.obuf_packed_device[0][:batch_size] = sim.backend.run(packed)

    mod = types.ModuleType("finn_plus_driver.overlays.dma")
    mod.FINNDMAOverlay = FakeOverlay
    monkeypatch.setitem(sys.modules, "finn_plus_driver.overlays.dma", mod)
    bit = tmp_path / "finn-accel.bit"
    bit.write_bytes(b"")
    board = Accelerator.board(out / "deploy", batch_size=16, bitfile=bit)
    images, _ = fashion_images(40)
    assert board.classify(images).tolist() == sim.classify(images).tolist()
    assert calls.count("invalidate") == 3  # 40 images in batches of 16
    assert board.self_test()["mismatches"] == 0


class _NoBackend:
    def resize(self, batch_size: int) -> None:
        pass


def _io(idt: str, odt: str, in_per_beat: int, in_bits: int, out_per_beat: int,
        out_bits: int, beats: int) -> dict:
    ib, ob = -(-in_per_beat * in_bits // 8), -(-out_per_beat * out_bits // 8)
    return {"driver_information": {"io_shape_dict": {
        "idt": [f"DataType['{idt}']"], "odt": [f"DataType['{odt}']"],
        "ishape_normal": [[1, beats * in_per_beat]], "ishape_folded": [[1, beats, in_per_beat]],
        "ishape_packed": [[1, beats, ib]], "oshape_normal": [[1, beats * out_per_beat]],
        "oshape_folded": [[1, beats, out_per_beat]], "oshape_packed": [[1, beats, ob]]}}}


@pytest.mark.parametrize("idt,ipb,ibits,odt,opb,obits", [
    ("UINT8", 49, 8, "UINT4", 3, 4), ("INT4", 5, 4, "INT16", 2, 16),
    ("BIPOLAR", 12, 1, "INT7", 3, 7), ("UINT3", 7, 3, "BIPOLAR", 10, 1)])
def test_buffers_hold_the_rtl_stream_encoding(idt, ipb, ibits, odt, opb, obits) -> None:
    """Several elements per beat, padding bits, signed and bipolar elements: the driver's
    packed buffers, read and written as the IODMA does, carry exactly the beats of our RTL's
    stream encoding (``hw.units.beats_of``: element 0 in the low bits, two's complement, bipolar
    as bits)."""
    from build_flows.backend.elem import decode, dtype_elem, encode
    from build_flows.deploy.driver import _datatype
    from hw import units

    rng = np.random.default_rng(1)
    acc = Accelerator(_io(idt, odt, ipb, ibits, opb, obits, beats=4), _NoBackend(), 3)
    ein, eout = dtype_elem(_datatype(idt)), dtype_elem(_datatype(odt))

    def values(dt, elem, n):
        d = _datatype(dt)
        v = rng.integers(int(d.min()), int(d.max()) + 1, n)
        return 2 * (v > 0) - 1 if elem.bipolar else v

    x = values(idt, ein, 3 * 4 * ipb).reshape(3, -1)
    packed = acc.pack(x, host_pre=False)
    assert beats_from_buffer(packed, acc.spec.in_beat_bytes) == units.beats_of(
        encode(x.reshape(-1), ein), ipb, ibits)
    y = values(odt, eout, 3 * 4 * opb).reshape(3, -1)
    beats = units.beats_of(encode(y.reshape(-1), eout), opb, obits)
    buf = buffer_from_beats(beats, acc.spec.out_beat_bytes).reshape(3, *acc.spec.opacked)
    got = acc.unpack(buf, host_post=False)
    assert np.array_equal(got, y) and np.array_equal(decode(encode(y, eout), eout), y)
    if idt == "BIPOLAR":
        with pytest.raises(DriverError, match=r"input value 0 at index \(0, 0\) is not a BIPOLAR"):
            acc.pack(np.zeros_like(x), host_pre=False)


def test_validate_refuses_bad_dataset_files(packages, tmp_path: Path) -> None:
    out, _, _ = packages["tfc"]
    bad = tmp_path / "t10k-images-idx3-ubyte"
    bad.write_bytes(b"\x00\x00\x08\x03\x00\x00")  # truncated IDX header
    for args, message in (([str(bad), "--labels", str(bad)], "truncated IDX header"),
                          ([str(tmp_path / "missing.gz")], "no such file"),
                          ([str(bad)], "need --labels")):
        proc = subprocess.run([sys.executable, str(out / "deploy" / "validate.py"), "--sim",
                               "--images", *args], cwd=tmp_path, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr  # refused, not run
        assert "Traceback" not in proc.stderr


def test_validate_hands_the_driver_the_data_unconverted(packages, tmp_path: Path) -> None:
    """validate.py refuses what is not the model's input (float, negative or >255 pixels) through
    the driver's own checks, and bad label files before the accelerator runs; nothing written."""
    out, _, _ = packages["tfc"]
    deploy = out / "deploy"

    def validate(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(deploy / "validate.py"), "--sim", *args,
                               "--out", "v.json"], cwd=tmp_path, capture_output=True, text=True,
                              timeout=600)

    images, labels = fashion_images(8)
    cases = {"float": (images.astype(np.float32) / 255, labels, "input dtype float32"),
             "negative": (images.astype(np.int16) - 1, labels, "input value -1 at index"),
             "above 255": (images.astype(np.int16) + 256, labels, "is not a UINT8 value"),
             "short labels": (images, labels[:5], "has 8 images but"),
             "float labels": (images, labels.astype(np.float32), "labels must be one integer"),
             "label 10": (images, np.full(8, 10), "label 10 is not one of the model's 10")}
    for name, (x, y, message) in cases.items():
        np.savez(tmp_path / "set.npz", images=x, labels=y)
        proc = validate("--images", str(tmp_path / "set.npz"))
        assert proc.returncode in (1, 2), name
        assert message in proc.stderr and "Traceback" not in proc.stderr, (name, proc.stderr)
        assert not (tmp_path / "v.json").exists(), name
    proc = validate("--images", str(FASHION / "t10k-images-idx3-ubyte.gz"), "--labels",
                    str(FASHION / "t10k-images-idx3-ubyte.gz"))
    assert proc.returncode == 2 and "not an IDX labels file" in proc.stderr
    (tmp_path / "v.json").write_text("{}")
    proc = validate("--self-test")
    assert proc.returncode == 2 and "v.json exists: give --force" in proc.stderr
    assert (tmp_path / "v.json").read_text() == "{}"
