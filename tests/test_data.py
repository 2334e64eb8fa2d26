"""Data readers on tiny files in the real formats, a corrupt one included."""

import pickle
import struct
import warnings

import numpy as np
import pytest
import torch

from experiments import data as D


def write_idx_images(path, images):
    n, r, c = images.shape
    path.write_bytes(struct.pack(">IIII", 0x0803, n, r, c) + images.astype(np.uint8).tobytes())


def write_idx_labels(path, labels):
    path.write_bytes(struct.pack(">II", 0x0801, len(labels)) + np.asarray(labels, np.uint8).tobytes())


@pytest.fixture
def mnist_root(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    write_idx_images(raw / "train-images-idx3-ubyte", rng.integers(0, 256, (12, 28, 28)))
    write_idx_labels(raw / "train-labels-idx1-ubyte", rng.integers(0, 10, 12))
    write_idx_images(raw / "t10k-images-idx3-ubyte", rng.integers(0, 256, (5, 28, 28)))
    write_idx_labels(raw / "t10k-labels-idx1-ubyte", rng.integers(0, 10, 5))
    return tmp_path


def write_cifar(path, n, seed):
    rng = np.random.default_rng(seed)
    batch = {b"data": rng.integers(0, 256, (n, 3072)).astype(np.uint8), b"labels": list(rng.integers(0, 10, n))}
    path.write_bytes(pickle.dumps(batch))
    return batch


@pytest.fixture
def cifar_root(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    write_cifar(folder / "data_batch_1", 9, 0)
    write_cifar(folder / "test_batch", 4, 1)
    return tmp_path


def test_mnist_reader_preprocesses_like_the_paper(mnist_root):
    ds = D.load_mnist(mnist_root)
    raw = np.frombuffer((mnist_root / "MNIST/raw/train-images-idx3-ubyte").read_bytes()[16:], np.uint8)
    x = raw.reshape(12, 784) / 255.0
    torch.testing.assert_close(ds.x_train.double(), torch.from_numpy(x - x.mean(0)), atol=1e-6, rtol=0)
    assert ds.x_train.mean(0).abs().max() < 1e-6  # training mean removed per dimension
    assert ds.x_test.shape == (5, 784) and ds.y_train.dtype == torch.int64
    assert not ds.original and len(ds.md5) == 32


def test_mnist_missing_file_is_one_clear_error(mnist_root, monkeypatch):
    monkeypatch.setattr(D, "_download_mnist", lambda root: (_ for _ in ()).throw(OSError("offline")))
    (mnist_root / "MNIST/raw/t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(D.DataError, match="t10k-labels-idx1-ubyte.*data.root"):
        D.load_mnist(mnist_root)


def test_mnist_truncated_file_is_one_clear_error(mnist_root):
    path = mnist_root / "MNIST/raw/train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(D.DataError, match="truncated or corrupt"):
        D.load_mnist(mnist_root)


def test_cifar_reader_warns_on_non_original_md5(cifar_root):
    with pytest.warns(UserWarning, match="not the originals"):
        ds = D.load_cifar_batch1(cifar_root)
    assert ds.x_train.shape == (9, 3072) and ds.y_test.shape == (4,)
    assert ds.x_train.min() >= -1 and ds.x_train.max() <= 1
    assert not ds.original


def test_cifar_corrupt_file_is_one_clear_error(cifar_root):
    (cifar_root / "cifar-10-batches-py" / "test_batch").write_bytes(b"\x80\x04garbage")
    with warnings.catch_warnings(), pytest.raises(D.DataError, match="test_batch.*corrupt"):
        D.load_cifar_batch1(cifar_root)


def test_cifar_missing_folder_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(D, "_download_cifar", lambda root: (_ for _ in ()).throw(OSError("offline")))
    with pytest.raises(D.DataError, match="cifar-10-python.tar.gz"):
        D.load_cifar_batch1(tmp_path)


def test_md5_identifies_original_files(cifar_root, monkeypatch):
    folder = cifar_root / "cifar-10-batches-py"
    monkeypatch.setitem(D.ORIGINAL_MD5, "data_batch_1", D.file_md5(folder / "data_batch_1"))
    monkeypatch.setitem(D.ORIGINAL_MD5, "test_batch", D.file_md5(folder / "test_batch"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert D.load_cifar_batch1(cifar_root).original


def test_the_shared_mnist_copy_is_recognised_as_original():
    """The offline copy in ../shared/data holds the original idx files: records must not be marked approximate."""
    raw = D.default_root() / "MNIST" / "raw"
    if not (raw / "MD5SUMS").is_file():
        pytest.skip("no shared MNIST copy on this machine")
    listed = dict(line.split()[::-1] for line in (raw / "MD5SUMS").read_text().splitlines() if line.strip())
    assert all(D.ORIGINAL_MD5[name] == md5 for name, md5 in listed.items())
