import os

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "disabled")


@pytest.fixture(autouse=True)
def one_thread():
    """Every test on one thread: tiny tensors, and thread start-up dominates on a shared machine (up to
    50x slower with the default); restored afterwards in case a test changed it."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def make_dataset(n_train=64, n_test=32, dim=6, classes=3, seed=0, regression=False):
    """A tiny synthetic experiments.data.Dataset (float64) for trainer tests."""
    from experiments.data import Dataset

    g = torch.Generator().manual_seed(seed)
    x_train = torch.randn(n_train, dim, generator=g, dtype=torch.float64)
    x_test = torch.randn(n_test, dim, generator=g, dtype=torch.float64)
    w = torch.randn(dim, classes, generator=g, dtype=torch.float64)
    y_train = (x_train @ w).argmax(1)
    y_test = (x_test @ w).argmax(1)
    return Dataset("tiny", x_train, y_train, x_test, y_test, "0" * 32, False, ())


@pytest.fixture
def tiny_data():
    return make_dataset()
