"""Datasets: Fashion-MNIST, MNIST (IDX gzip), CIFAR-10 (python pickle batches) and a synthetic set.

Every dataset is held in memory as ``uint8`` images ``N x C x H x W`` plus ``int64`` labels, and
batches are served as float tensors scaled to ``[0, 1]`` (the contract of the exported model).

Where the files come from, in order:

* ``<data_dir>/<name>/`` when the files are there;
* Fashion-MNIST only: Debian's ``dataset-fashion-mnist`` at ``/usr/share/datasets/fashion-mnist``;
* otherwise a download from the canonical source into ``<data_dir>/<name>/``, each file checked
  against its published MD5 before use.

A corrupt or truncated file raises :class:`DatasetError` naming the file.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import pickle
import struct
import tarfile
import urllib.request
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


@dataclass(frozen=True)
class Source:
    """Where a dataset's files are published and their MD5 checksums."""

    urls: tuple[str, ...]  #: base URLs tried in order
    md5: dict[str, str]  #: file name -> expected MD5


SOURCES: dict[str, Source] = {
    "fashion-mnist": Source(
        urls=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        md5={
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
    ),
    "mnist": Source(
        urls=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
        md5={
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
    ),
    "cifar10": Source(
        urls=("https://www.cs.toronto.edu/~kriz/",),
        md5={"cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"},
    ),
}

CLASSES = {
    "fashion-mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
    "mnist": [str(i) for i in range(10)],
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer",
                "dog", "frog", "horse", "ship", "truck"],
    "synthetic": [f"class{i}" for i in range(10)],
}
DATASETS = tuple(CLASSES)
#: native image shape (C, H, W) of each dataset
SHAPES = {"fashion-mnist": (1, 28, 28), "mnist": (1, 28, 28), "cifar10": (3, 32, 32),
          "synthetic": (1, 28, 28)}


class DatasetError(RuntimeError):
    """A dataset file is missing, corrupt or truncated; the message names the file."""


@dataclass
class ImageDataset:
    """Images in memory with their labels."""

    name: str  #: dataset key, one of :data:`DATASETS`
    images: torch.Tensor  #: uint8, N x C x H x W
    labels: torch.Tensor  #: int64, N
    classes: list[str]  #: class names, index = label
    pad: int = 0  #: zero pixels added on each side of the native images
    augment: bool = False  #: random crop (padding 4) and horizontal flip when batching for training
    source: str = field(default="")  #: where the files were read from

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        """Image shape (C, H, W) as served, padding included."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def subset(self, n: int) -> ImageDataset:
        """The first ``n`` samples (all when ``n`` is 0 or larger than the set)."""
        if n <= 0 or n >= len(self):
            return self
        return ImageDataset(self.name, self.images[:n], self.labels[:n], self.classes,
                            self.pad, self.augment, self.source)


# --------------------------------------------------------------------------------------------
# readers

def _open_bytes(path: Path) -> bytes:
    """The decompressed content of a ``.gz`` file (or the raw file), with errors naming it."""
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if path.suffix == ".gz" else raw
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DatasetError(f"{path}: corrupt or truncated gzip file ({exc})") from None


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (``.gz`` or raw) of unsigned bytes into an array of its declared shape.

    Format: 2 zero bytes, type code 0x08 (ubyte), number of dimensions d, d big-endian uint32
    sizes, then the data in C order.
    """
    path = Path(path)
    data = _open_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DatasetError(f"{path}: not an IDX file (bad magic number)")
    if data[2] != 0x08:
        raise DatasetError(f"{path}: IDX type code 0x{data[2]:02x} is not unsigned byte (0x08)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"{path}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(dims)) if dims else 0
    if len(data) - header != expected:
        raise DatasetError(
            f"{path}: truncated or oversized IDX data: header declares {dims} "
            f"({expected} bytes), file holds {len(data) - header} bytes")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()


def read_idx_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N x 1 x H x W) and labels (N) from an IDX image file and its label file."""
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3:
        raise DatasetError(f"{images_path}: expected 3 dimensions (N, H, W), found {images.shape}")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise DatasetError(
            f"{labels_path}: {labels.shape[0] if labels.ndim else 0} labels for "
            f"{images.shape[0]} images in {images_path}")
    return images[:, None, :, :], labels


def read_cifar_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N x 3 x 32 x 32) and labels from one CIFAR-10 python pickle batch file."""
    path = Path(path)
    raw = _open_bytes(path)
    try:
        batch = pickle.loads(raw, encoding="bytes")
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except Exception as exc:  # pickle raises many types on bad input
        raise DatasetError(f"{path}: corrupt or truncated CIFAR-10 batch ({exc!r})") from None
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels.shape[0] != data.shape[0]:
        raise DatasetError(f"{path}: CIFAR-10 batch has data {data.shape} and "
                           f"{labels.shape[0]} labels; expected N x 3072 and N labels")
    return data.reshape(-1, 3, 32, 32), labels


# --------------------------------------------------------------------------------------------
# locating and downloading

def md5sum(path: Path) -> str:
    """Hex MD5 of a file."""
    h = hashlib.md5()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download(name: str, filename: str, dest: Path) -> Path:
    """Download ``filename`` of dataset ``name`` into ``dest`` and verify its MD5."""
    src = SOURCES[name]
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / filename
    errors = []
    for base in src.urls:
        url = base + filename
        log.info("downloading %s", url)
        tmp = target.with_suffix(target.suffix + ".part")
        try:
            urllib.request.urlretrieve(url, tmp)
        except OSError as exc:
            errors.append(f"{url}: {exc}")
            continue
        got = md5sum(tmp)
        if got != src.md5[filename]:
            tmp.unlink()
            errors.append(f"{url}: MD5 {got} != expected {src.md5[filename]}")
            continue
        tmp.rename(target)
        return target
    raise DatasetError(f"could not download {filename} of {name} into {dest}: " + "; ".join(errors))


def _idx_dir(name: str, data_dir: Path, allow_download: bool) -> Path:
    files = [f for pair in IDX_FILES.values() for f in pair]
    candidates = [data_dir / name]
    if name == "fashion-mnist":
        candidates.append(DEBIAN_FASHION_MNIST)
    for cand in candidates:
        if all((cand / f).is_file() for f in files):
            return cand
    if not allow_download:
        raise DatasetError(f"{name}: files not found in {' or '.join(map(str, candidates))} "
                           "and downloading is disabled")
    for f in files:
        if not (data_dir / name / f).is_file():
            download(name, f, data_dir / name)
    return data_dir / name


def _cifar_dir(data_dir: Path, allow_download: bool) -> Path:
    root = data_dir / "cifar10" / "cifar-10-batches-py"
    if (root / "test_batch").is_file():
        return root
    archive = data_dir / "cifar10" / "cifar-10-python.tar.gz"
    if not archive.is_file():
        if not allow_download:
            raise DatasetError(f"cifar10: {root} not found and downloading is disabled")
        download("cifar10", archive.name, archive.parent)
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(archive.parent, filter="data")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DatasetError(f"{archive}: corrupt or truncated archive ({exc})") from None
    return root


# --------------------------------------------------------------------------------------------
# public API

def synthetic(split: str, n: int = 2000, shape: tuple[int, int, int] = (1, 28, 28),
              num_classes: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A learnable synthetic set: one random binary prototype per class, 10% of pixels flipped.

    The prototypes depend only on ``seed``; ``split`` selects independent noise.
    """
    proto_rng = np.random.default_rng(seed)
    protos = proto_rng.random((num_classes, *shape)) < 0.5
    rng = np.random.default_rng([seed, 1 if split == "train" else 2])
    labels = rng.integers(0, num_classes, n)
    flips = rng.random((n, *shape)) < 0.1
    images = (protos[labels] ^ flips).astype(np.uint8) * 255
    return images, labels.astype(np.int64)


def load_dataset(name: str, split: str, data_dir: str | Path = "data", pad_to: int | None = None,
                 allow_download: bool = True, synthetic_size: int = 2000) -> ImageDataset:
    """Load ``split`` ("train" or "test") of dataset ``name`` into memory.

    ``pad_to`` zero-pads images symmetrically to a square side (28x28 -> 32x32 for CNV).
    CIFAR-10's training split is augmented (random crop with 4-pixel padding, horizontal flip)
    when batched with ``train=True``.
    """
    if name not in CLASSES:
        raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    if split not in ("train", "test"):
        raise ValueError(f"unknown split {split!r}; choose 'train' or 'test'")
    data_dir = Path(data_dir)
    if name == "synthetic":
        images, labels = synthetic(split, synthetic_size)
        source = "synthetic"
    elif name == "cifar10":
        root = _cifar_dir(data_dir, allow_download)
        files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        parts = [read_cifar_batch(root / f) for f in files]
        images = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
        source = str(root)
        if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < 10:
            raise DatasetError(f"{root}: CIFAR-10 labels outside 0..9 in {', '.join(files)}")
    else:
        root = _idx_dir(name, data_dir, allow_download)
        img_file, lbl_file = IDX_FILES[split]
        images, labels = read_idx_pair(root / img_file, root / lbl_file)
        source = str(root)
        if len(labels) and int(labels.max()) >= len(CLASSES[name]):  # a corrupt label file
            raise DatasetError(f"{root / lbl_file}: label {int(labels.max())} is not one of "
                               f"{name}'s {len(CLASSES[name])} classes")
    pad = 0
    if pad_to is not None and pad_to != images.shape[-1]:
        if pad_to < images.shape[-1] or (pad_to - images.shape[-1]) % 2:
            raise ValueError(f"cannot pad {images.shape[-1]}-pixel images to {pad_to}")
        pad = (pad_to - images.shape[-1]) // 2
        images = np.pad(images, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    log.info("%s/%s: %d images %s from %s", name, split, len(labels), images.shape[1:], source)
    return ImageDataset(
        name=name, images=torch.from_numpy(np.ascontiguousarray(images)),
        labels=torch.from_numpy(labels.astype(np.int64)), classes=list(CLASSES[name]), pad=pad,
        augment=(name == "cifar10" and split == "train"), source=source)


def augment_batch(x: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Random crop with zero padding ``padding`` and random horizontal flip, per image."""
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (padding,) * 4)
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    rows = (dy[:, None] + torch.arange(h)[None, :])  # n x h
    cols = (dx[:, None] + torch.arange(w)[None, :])  # n x w
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    idx_n = torch.arange(n)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[idx_n, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()


def batches(ds: ImageDataset, batch_size: int, train: bool = False,
            generator: torch.Generator | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(images in [0, 1] as float32, labels)``; shuffled and augmented when ``train``."""
    n = len(ds)
    if train:
        if generator is None:
            raise ValueError("training batches need a torch.Generator for reproducible shuffling")
        order = torch.randperm(n, generator=generator)
    else:
        order = torch.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        x = ds.images[idx].float().div_(255.0)
        if train and ds.augment:
            x = augment_batch(x, generator)  # type: ignore[arg-type]
        yield x, ds.labels[idx]
