"""The datasets of paper 1 Sec. 7.1: MNIST and the CIFAR-10 ``batch1`` subset.

Preprocessing, as in the paper: pixels scaled to [0, 1] (Table 1's learning rates only make sense at
that scale), then the per-dimension mean of the *training* set subtracted from both sets
("normalize the data by subtracting mean of the training data along each input dimension").

Roots, in order: the ``root`` argument (config ``data.root``); ``../shared/data`` beside the project
when it exists; ``~/.cache/vsgd/data`` (downloaded through torchvision when a network is there).
Every dataset records the md5 of the files it came from, and whether they are the originals, so that
results computed on the approximate CIFAR copy can be marked as such.
"""

from __future__ import annotations

import hashlib
import pickle
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = Path.home() / ".cache" / "vsgd" / "data"

# md5 of the original, uncompressed files (MNIST's idx files; the CIFAR-10 python tarball's members).
ORIGINAL_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
CIFAR_FILES = ("data_batch_1", "test_batch")
CIFAR_FOLDERS = ("cifar-10-batches-py", "cifar-10-approx")  # original layout first, then the offline copy


class DataError(RuntimeError):
    """A dataset file is missing or unreadable. The message names the path and how to obtain it."""


@dataclass(frozen=True)
class Dataset:
    """A preprocessed dataset, held as tensors (float inputs, integer labels)."""

    name: str
    x_train: Tensor  # [N, D], mean-subtracted
    y_train: Tensor  # [N] int64
    x_test: Tensor  # [M, D]
    y_test: Tensor  # [M] int64
    md5: str  # one identifier of the source files: md5 of their md5s, in a fixed order
    original: bool  # True when every source file has its original md5
    files: tuple[tuple[str, str], ...]  # (path, md5) of each source file

    @property
    def n_train(self) -> int:
        return self.x_train.shape[0]

    def to(self, device: torch.device | str, dtype: torch.dtype) -> Dataset:
        return Dataset(
            self.name,
            self.x_train.to(device=device, dtype=dtype),
            self.y_train.to(device),
            self.x_test.to(device=device, dtype=dtype),
            self.y_test.to(device),
            self.md5,
            self.original,
            self.files,
        )


def file_md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def default_root() -> Path:
    shared = PROJECT_ROOT.parent / "shared" / "data"
    return shared if shared.is_dir() else DEFAULT_CACHE


def resolve_root(root: str | Path | None) -> Path:
    return Path(root).expanduser().resolve() if root else default_root()


def preprocess(x_train: np.ndarray, x_test: np.ndarray) -> tuple[Tensor, Tensor]:
    """Scale uint8 pixels to [0, 1], then subtract the training mean of each input dimension."""
    xtr = torch.from_numpy(x_train.astype(np.float64) / 255.0)
    xte = torch.from_numpy(x_test.astype(np.float64) / 255.0)
    mean = xtr.mean(dim=0, keepdim=True)
    return (xtr - mean).float(), (xte - mean).float()


def _identify(paths: list[Path]) -> tuple[str, bool, tuple[tuple[str, str], ...]]:
    sums = [(str(p), file_md5(p)) for p in paths]
    original = all(ORIGINAL_MD5.get(Path(p).name) == m for p, m in sums)
    combined = hashlib.md5("".join(m for _, m in sums).encode()).hexdigest()
    return combined, original, tuple(sums)


# ---------------------------------------------------------------------------------------------
# MNIST (torchvision reads the raw idx files offline)
# ---------------------------------------------------------------------------------------------
def load_mnist(root: str | Path | None = None) -> Dataset:
    root = resolve_root(root)
    raw = root / "MNIST" / "raw"
    missing = [raw / f for f in MNIST_FILES if not (raw / f).is_file()]
    if missing:
        try:
            _download_mnist(root)
        except Exception as exc:  # noqa: BLE001 - no network here, or a failed download: one clear error
            raise DataError(
                f"MNIST file {missing[0]} is missing and could not be downloaded ({type(exc).__name__}). "
                f"Put the four uncompressed idx files ({', '.join(MNIST_FILES)}) in {raw}, "
                "or point data.root=PATH at a folder holding MNIST/raw/."
            ) from None
    import torchvision

    try:
        train = torchvision.datasets.MNIST(str(root), train=True, download=False)
        test = torchvision.datasets.MNIST(str(root), train=False, download=False)
        x_train, y_train = train.data.numpy().reshape(len(train.data), -1), train.targets.numpy()
        x_test, y_test = test.data.numpy().reshape(len(test.data), -1), test.targets.numpy()
    except Exception as exc:  # noqa: BLE001 - whatever torchvision raises on bad files: one DataError
        raise DataError(
            f"MNIST files in {raw} could not be read ({type(exc).__name__}: {exc}). They may be truncated or corrupt: "
            f"check them with `md5sum -c {raw / 'MD5SUMS'}` (if present) or replace them with the original idx files."
        ) from None
    if len(x_train) != len(y_train) or len(x_test) != len(y_test):
        raise DataError(f"MNIST files in {raw} disagree in length (images vs labels): replace them with the originals.")
    md5, original, files = _identify([raw / f for f in MNIST_FILES])
    xtr, xte = preprocess(x_train, x_test)
    return Dataset("mnist", xtr, torch.from_numpy(y_train.astype(np.int64)), xte,
                   torch.from_numpy(y_test.astype(np.int64)), md5, original, files)


def _download_mnist(root: Path) -> None:
    import torchvision

    torchvision.datasets.MNIST(str(root), train=True, download=True)
    torchvision.datasets.MNIST(str(root), train=False, download=True)


# ---------------------------------------------------------------------------------------------
# CIFAR-10 batch1 subset (python-pickle format)
# ---------------------------------------------------------------------------------------------
def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 python batch: ``b'data'`` uint8 [N, 3072], ``b'labels'`` list of int."""
    try:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever the pickle reader raises on bad files: one DataError
        raise DataError(
            f"CIFAR-10 file {path} could not be read ({type(exc).__name__}); it may be truncated or corrupt. "
            "Replace it with data_batch_1 / test_batch from the CIFAR-10 python archive (cifar-10-python.tar.gz)."
        ) from None
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise DataError(
            f"CIFAR-10 file {path} has data of shape {data.shape} and {len(labels)} labels; expected [N, 3072] "
            "and N labels. Replace it with the original file."
        )
    return data, labels


def find_cifar_folder(root: Path) -> Path | None:
    for name in CIFAR_FOLDERS:
        folder = root / name
        if all((folder / f).is_file() for f in CIFAR_FILES):
            return folder
    return None


def load_cifar_batch1(root: str | Path | None = None) -> Dataset:
    root = resolve_root(root)
    folder = find_cifar_folder(root)
    if folder is None:
        try:
            _download_cifar(root)
            folder = find_cifar_folder(root)
        except Exception:  # noqa: BLE001 - no folder found: the error below names the paths tried
            folder = None
    if folder is None:
        raise DataError(
            f"CIFAR-10 files {CIFAR_FILES} not found in {root / CIFAR_FOLDERS[0]} or {root / CIFAR_FOLDERS[1]}, "
            "and they could not be downloaded. Extract cifar-10-python.tar.gz into that root "
            "or point data.root=PATH at a folder holding cifar-10-batches-py/."
        )
    paths = [folder / f for f in CIFAR_FILES]
    x_train, y_train = read_cifar_batch(paths[0])
    x_test, y_test = read_cifar_batch(paths[1])
    md5, original, files = _identify(paths)
    if not original:
        warnings.warn(
            f"CIFAR-10 files in {folder} are not the originals (md5 differs from "
            f"{ORIGINAL_MD5['data_batch_1']} / {ORIGINAL_MD5['test_batch']}); results are recorded with "
            f"data_md5={md5} and marked as computed on a non-original copy.",
            stacklevel=2,
        )
    xtr, xte = preprocess(x_train, x_test)
    return Dataset("cifar10_batch1", xtr, torch.from_numpy(y_train), xte, torch.from_numpy(y_test), md5, original, files)


def _download_cifar(root: Path) -> None:
    import torchvision

    torchvision.datasets.CIFAR10(str(root), train=True, download=True)


LOADERS = {"mnist": load_mnist, "cifar10_batch1": load_cifar_batch1}


@lru_cache(maxsize=4)
def _load_cached(name: str, root: str) -> Dataset:
    return LOADERS[name](root)


def load(name: str, root: str | Path | None = None) -> Dataset:
    """Load a dataset by name (``mnist`` or ``cifar10_batch1``), cached in this process."""
    if name not in LOADERS:
        raise ValueError(f"Unknown dataset {name!r}. Available: {', '.join(LOADERS)}.")
    return _load_cached(name, str(resolve_root(root)))
