"""Dataset readers on files the tests write, corrupt files, and the Debian Fashion-MNIST copy."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from models import data
from models.data import DatasetError


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> Path:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(payload) if compress else payload)
    return path


def write_mnist_like(root: Path, n_train: int = 30, n_test: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        imgs = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        lbls = rng.integers(0, 10, n, dtype=np.uint8)
        img_f, lbl_f = data.IDX_FILES[split]
        write_idx(root / img_f, imgs)
        write_idx(root / lbl_f, lbls)
        arrays[split] = (imgs, lbls)
    return arrays


def write_cifar(root: Path, n_per_batch: int = 7, seed: int = 0):
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        d = rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8)
        lbl = rng.integers(0, 10, n_per_batch).tolist()
        (root / name).write_bytes(pickle.dumps({b"data": d, b"labels": lbl}))
        arrays[name] = (d, lbl)
    return arrays


@pytest.mark.parametrize("compress", [True, False])
def test_read_idx_roundtrip(tmp_path: Path, compress: bool) -> None:
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = write_idx(tmp_path / ("a.gz" if compress else "a"), arr, compress)
    np.testing.assert_array_equal(data.read_idx(path), arr)


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_load_idx_dataset_from_data_dir(tmp_path: Path, name: str) -> None:
    arrays = write_mnist_like(tmp_path / name)
    ds = data.load_dataset(name, "test", tmp_path, allow_download=False)
    assert ds.source == str(tmp_path / name)
    np.testing.assert_array_equal(ds.images[:, 0].numpy(), arrays["test"][0])
    np.testing.assert_array_equal(ds.labels.numpy(), arrays["test"][1])
    padded = data.load_dataset(name, "train", tmp_path, pad_to=32, allow_download=False)
    assert padded.shape == (1, 32, 32) and padded.pad == 2
    np.testing.assert_array_equal(padded.images[:, 0, 2:30, 2:30].numpy(), arrays["train"][0])
    assert int(padded.images[:, :, :2].sum()) == 0 and int(padded.images[:, :, :, 30:].sum()) == 0


def test_load_cifar10_from_data_dir(tmp_path: Path) -> None:
    arrays = write_cifar(tmp_path / "cifar10" / "cifar-10-batches-py")
    train = data.load_dataset("cifar10", "train", tmp_path, allow_download=False)
    test = data.load_dataset("cifar10", "test", tmp_path, allow_download=False)
    assert len(train) == 35 and len(test) == 7 and train.augment and not test.augment
    np.testing.assert_array_equal(test.images.reshape(7, -1).numpy(), arrays["test_batch"][0])
    assert test.labels.tolist() == arrays["test_batch"][1]
    # channel-major layout: the first 1024 bytes are the red plane
    np.testing.assert_array_equal(test.images[0, 0].reshape(-1).numpy(),
                                  arrays["test_batch"][0][0, :1024])


def test_cifar_archive_is_extracted(tmp_path: Path) -> None:
    import tarfile

    src = tmp_path / "src" / "cifar-10-batches-py"
    write_cifar(src)
    archive = tmp_path / "data" / "cifar10" / "cifar-10-python.tar.gz"
    archive.parent.mkdir(parents=True)
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname="cifar-10-batches-py")
    ds = data.load_dataset("cifar10", "test", tmp_path / "data", allow_download=False)
    assert len(ds) == 7


def test_truncated_gzip_names_file(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "x.gz", np.zeros((10, 28, 28), np.uint8))
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(DatasetError, match=str(path)):
        data.read_idx(path)


def test_truncated_idx_payload_names_file(tmp_path: Path) -> None:
    path = tmp_path / "x"
    write_idx(path, np.zeros((10, 28, 28), np.uint8), compress=False)
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(DatasetError, match=rf"{path}: truncated"):
        data.read_idx(path)


def test_bad_magic_names_file(tmp_path: Path) -> None:
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(b"\x01\x02\x08\x01\x00\x00\x00\x01\x05"))
    with pytest.raises(DatasetError, match=rf"{path}: not an IDX file"):
        data.read_idx(path)


def test_label_count_mismatch_names_file(tmp_path: Path) -> None:
    imgs = write_idx(tmp_path / "i.gz", np.zeros((4, 28, 28), np.uint8))
    lbls = write_idx(tmp_path / "l.gz", np.zeros(3, np.uint8))
    with pytest.raises(DatasetError, match=str(lbls)):
        data.read_idx_pair(imgs, lbls)


def test_corrupt_cifar_batch_names_file(tmp_path: Path) -> None:
    root = tmp_path / "cifar10" / "cifar-10-batches-py"
    write_cifar(root)
    bad = root / "test_batch"
    bad.write_bytes(bad.read_bytes()[:100])
    with pytest.raises(DatasetError, match=str(bad)):
        data.load_dataset("cifar10", "test", tmp_path, allow_download=False)


def test_missing_files_without_download(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="downloading is disabled"):
        data.load_dataset("mnist", "test", tmp_path, allow_download=False)


def test_download_verifies_md5(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """download() over a file:// mirror: good file accepted, altered file rejected by MD5."""
    mirror = tmp_path / "mirror"
    arrays = write_mnist_like(mirror)
    md5 = {f: data.md5sum(mirror / f) for pair in data.IDX_FILES.values() for f in pair}
    monkeypatch.setitem(data.SOURCES, "mnist", data.Source((mirror.as_uri() + "/",), md5))
    ds = data.load_dataset("mnist", "test", tmp_path / "dl")
    np.testing.assert_array_equal(ds.labels.numpy(), arrays["test"][1])
    bad = dict(md5, **{"t10k-labels-idx1-ubyte.gz": "0" * 32})
    monkeypatch.setitem(data.SOURCES, "mnist", data.Source((mirror.as_uri() + "/",), bad))
    with pytest.raises(DatasetError, match="MD5"):
        data.download("mnist", "t10k-labels-idx1-ubyte.gz", tmp_path / "dl2")
    assert not (tmp_path / "dl2" / "t10k-labels-idx1-ubyte.gz").exists()


def test_batches_reproducible_and_scaled() -> None:
    ds = data.load_dataset("synthetic", "train", synthetic_size=50)
    a = list(data.batches(ds, 16, train=True, generator=torch.Generator().manual_seed(3)))
    b = list(data.batches(ds, 16, train=True, generator=torch.Generator().manual_seed(3)))
    assert all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b))
    x, _ = a[0]
    assert x.dtype == torch.float32 and 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert sum(len(y) for _, y in a) == 50


def test_augment_batch_crop_and_flip() -> None:
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    out = data.augment_batch(x, torch.Generator().manual_seed(0), padding=2)
    assert out.shape == x.shape
    # every output row is a (possibly flipped, shifted, zero-filled) window of the padded input
    padded = torch.nn.functional.pad(x, (2,) * 4)
    found = False
    for dy in range(5):
        for dx in range(5):
            win = padded[0, :, dy:dy + 8, dx:dx + 8]
            found |= torch.equal(win, out[0]) or torch.equal(win.flip(-1), out[0])
    assert found


def test_debian_fashion_mnist(fashion_dir: Path) -> None:
    # Debian recompresses the files, so their MD5s differ from the published ones: check content
    test = data.load_dataset("fashion-mnist", "test", allow_download=False)
    train = data.load_dataset("fashion-mnist", "train", allow_download=False)
    assert len(test) == 10000 and len(train) == 60000 and test.shape == (1, 28, 28)
    assert np.bincount(test.labels.numpy()).tolist() == [1000] * 10
