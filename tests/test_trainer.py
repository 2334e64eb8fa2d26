"""The lock-step ensemble trainer: batched members equal separate runs; divergence stays local."""

import pytest
import torch

from experiments.mlp import MLPSpec
from experiments.trainer import Member, checkpoint_steps, train_ensemble
from vsgd.core import get_rule

SPEC = MLPSpec((6, 5, 3), "cross_entropy", l2=1e-3)


def _run(members, data, **kw):
    return train_ensemble(SPEC, get_rule("sgd"), members, data, epochs=2, dtype=torch.float64, **kw)


def test_members_together_equal_members_alone(tiny_data):
    members = [Member(0, {"eta0": 0.1}), Member(1, {"eta0": 0.03, "gamma": 1.0}), Member(0, {"eta0": 0.3})]
    together = _run(members, tiny_data)
    for m, r in zip(members, together):
        alone = _run([m], tiny_data)[0]
        assert r.train_error == alone.train_error
        assert r.test_loss == alone.test_loss  # bit-identical for layers this small (BLAS-sized: next tests)
        assert [c["train_loss"] for c in r.curve] == [c["train_loss"] for c in alone.curve]


def test_divergence_is_recorded_for_that_member_only(tiny_data, monkeypatch):
    from experiments import trainer

    monkeypatch.setattr(trainer, "CHECK_EVERY", 10)
    healthy = Member(0, {"eta0": 0.1})
    members = [healthy, Member(1, {"eta0": 1e30}), Member(2, {"eta0": 0.05})]
    out = _run(members, tiny_data)
    assert out[1].diverged and out[1].test_error == 100.0 and out[1].test_loss == float("inf")
    assert out[1].diverged_step is not None and out[1].diverged_step % 10 == 0
    assert not out[0].diverged and not out[2].diverged
    alone = _run([healthy], tiny_data)[0]
    assert out[0].test_loss == alone.test_loss


def test_generic_path_equals_fused_sgd(tiny_data, monkeypatch):
    """Forcing SGD through the generic update path gives the same numbers as the fused step."""
    import dataclasses

    members = [Member(0, {"eta0": 0.1, "gamma": 0.5}), Member(3, {"eta0": 0.02})]
    fused = _run(members, tiny_data)
    generic_rule = dataclasses.replace(get_rule("sgd"), scalar_rate=None)
    generic = train_ensemble(SPEC, generic_rule, members, tiny_data, epochs=2, dtype=torch.float64)
    for a, b in zip(fused, generic):
        assert a.test_loss == pytest.approx(b.test_loss, rel=1e-10)


def test_checkpoints_are_log_spaced_and_end_at_the_last_step():
    steps = checkpoint_steps(60000, 6)
    assert steps[0] == 938 and steps[-1] == 360000
    assert {60000 * e for e in range(1, 7)} <= set(steps)
    assert checkpoint_steps(100, 0.5)[-1] == 50


def test_members_together_equal_members_alone_at_blas_sizes():
    """At sizes where BLAS picks kernels by batch size, members in an ensemble equal the same members
    trained alone up to float32 rounding (bit-identity holds only for tiny layers, see FusedSGD)."""
    from conftest import make_dataset

    data = make_dataset(n_train=300, n_test=100, dim=200, classes=10, seed=1)
    spec = MLPSpec((200, 64, 10), "cross_entropy", l2=1e-3)
    members = [Member(0, {"eta0": 0.05}), Member(1, {"eta0": 0.02, "gamma": 1.0}), Member(2, {"eta0": 0.1})]
    run = lambda ms: train_ensemble(spec, get_rule("sgd"), ms, data, epochs=1, dtype=torch.float32)
    together = run(members)
    for m, r in zip(members, together):
        alone = run([m])[0]
        assert r.test_loss == pytest.approx(alone.test_loss, rel=1e-4)
        assert r.train_loss == pytest.approx(alone.train_loss, rel=1e-4)


@pytest.mark.parametrize("name,members", [
    ("vsgd_l", [Member(0, {}), Member(1, {"n0": 0.05}), Member(2, {"c": 1.0})]),  # through the slow start
    ("smd", [Member(0, {"eta0": 0.05}), Member(1, {"eta0": 0.01, "mu": 0.1})]),  # Hessian-vector products
])
def test_compiled_generic_step_equals_eager(tiny_data, name, members):
    """torch.compile of the generic step (the runner's compile: auto) changes only float rounding."""
    from experiments import trainer

    rule = get_rule(name)
    kw = {"epochs": 1.5, "dtype": torch.float64}
    old = trainer.CHECK_EVERY
    try:
        trainer.CHECK_EVERY = 16
        eager = train_ensemble(SPEC, rule, members, tiny_data, **kw)
        compiled = train_ensemble(SPEC, rule, members, tiny_data, compile=True, **kw)
    finally:
        trainer.CHECK_EVERY = old
    for a, b in zip(eager, compiled):
        assert a.diverged == b.diverged
        assert a.test_loss == pytest.approx(b.test_loss, rel=1e-9)
        assert [c["rate_median"] for c in a.curve] == pytest.approx([c["rate_median"] for c in b.curve], rel=1e-9)
