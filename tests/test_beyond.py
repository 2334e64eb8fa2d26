"""Issue 9: the PyPI tuning-free optimizers in the harness (experiments/torch_members.py).

* the stacked path (one optimizer over K-stacked parameters) equals K separate optimizers, for every
  optimizer registered as element-wise, compared in float64 after a few steps;
* every registered optimizer lowers the training loss of a tiny MLP at its defaults;
* a member's results do not depend on which other members share its ensemble;
* the fast path (flat layout, in-place gradients, kernel options, compiled steps) equals the plain path
  to float rounding;
* bad hyper-parameter names raise one clear ValueError;
* the runner's progress bar hears from these trainers too (it stood at 0 % for whole jobs before).
"""

from __future__ import annotations

import shutil

import pytest
import torch

from experiments import torch_members
from experiments.data import Dataset
from experiments.mlp import EnsembleMLP, MLPSpec, glorot_init
from experiments.torch_members import REGISTRY, check_hp, make_optimizers, set_grads, train_torch_members
from experiments.trainer import Member

pytest.importorskip("dadaptation")
pytest.importorskip("prodigyopt")
pytest.importorskip("schedulefree")
pytest.importorskip("dog")
pytest.importorskip("parameterfree")

SPEC = MLPSpec((10, 6, 3), "cross_entropy")
DT = torch.float64




def toy_data(n: int = 64) -> Dataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 10, generator=g, dtype=DT)
    y = x[:, :3].argmax(dim=1)  # a learnable labelling
    return Dataset("toy", x, y, x[: n // 2], y[: n // 2], "toy", False, ())


ELEMENTWISE = sorted(n for n, o in REGISTRY.items() if not o.needs_per_member)


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_stacked_equals_separate_instances(name):
    """One instance over [K, ...] == K instances over [...], on the same gradient sequence."""
    K, steps = 3, 12
    opt = REGISTRY[name]
    stacked = glorot_init(SPEC, range(K), dtype=DT)
    separate = [[p[k].clone() for p in stacked] for k in range(K)]
    groups = make_optimizers(name, stacked, [{}] * K)
    assert len(groups) == 1  # one instance for the whole ensemble
    singles = [opt.factory(ps) for ps in separate]
    if opt.schedule_free:
        for o in singles:
            o.train()
    model = EnsembleMLP(SPEC)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(K, 10, generator=g, dtype=DT)
        y = torch.randint(0, 3, (K,), generator=g)
        _, grads, _ = model.loss_and_grads(stacked, x, y)
        set_grads(groups, stacked, grads)
        groups[0][1].step()
        for k, o in enumerate(singles):
            _, gk, _ = model.loss_and_grads([p.unsqueeze(0) for p in separate[k]], x[k : k + 1], y[k : k + 1])
            for p, gg in zip(separate[k], gk):
                p.grad = gg[0].clone()
            o.step()
    for k in range(K):
        for p, q in zip(stacked, separate[k]):
            torch.testing.assert_close(p[k], q, rtol=1e-12, atol=1e-14)
    # and the optimizer really moved the parameters
    assert not torch.equal(stacked[0][0], glorot_init(SPEC, [0], dtype=DT)[0][0])


def test_stacked_adam_equals_torch_adam_runs():
    """The brief's identity by name: stacked Adam == K torch.optim.Adam runs, through the full trainer path."""
    data = toy_data()
    members = [Member(s) for s in (3, 4, 5)]
    together = train_torch_members(SPEC, "adam", members, data, epochs=1, dtype=DT)
    model = EnsembleMLP(SPEC)
    for m, r in zip(members, together):
        ps = [p.clone() for p in glorot_init(SPEC, [m.seed], dtype=DT)]
        o = torch.optim.Adam(ps)
        gen = torch.Generator().manual_seed(m.seed + 7919)
        perm = torch.randperm(data.n_train, generator=gen)
        for i in perm.tolist():
            _, grads, _ = model.loss_and_grads(ps, data.x_train[i : i + 1], data.y_train[i : i + 1])
            for p, gg in zip(ps, grads):
                p.grad = gg
            o.step()
        _, loss = model.evaluate(ps, data.x_train, data.y_train)
        assert r.train_loss == pytest.approx(float(loss[0]), rel=1e-10)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_lowers_the_loss(name):
    data = toy_data()
    res = train_torch_members(SPEC, name, [Member(0)], data, epochs=8, dtype=DT)[0]
    _, loss0 = EnsembleMLP(SPEC).evaluate(glorot_init(SPEC, [0], dtype=DT), data.x_train, data.y_train)
    assert not res.diverged
    assert res.train_loss < 0.99 * float(loss0[0]), (name, res.train_loss, float(loss0[0]))
    assert [c["step"] for c in res.curve] == sorted(c["step"] for c in res.curve)


@pytest.mark.parametrize("name", ["adam", "prodigy", "adamw_schedulefree"])
def test_member_independent_of_ensemble(name):
    """Member seed 7's curve is the same alone, first of three, or last of two (stacked and per-member paths)."""
    data = toy_data()
    alone = train_torch_members(SPEC, name, [Member(7)], data, epochs=1, dtype=DT)[0]
    first = train_torch_members(SPEC, name, [Member(7), Member(8), Member(9)], data, epochs=1, dtype=DT)[0]
    last = train_torch_members(SPEC, name, [Member(9), Member(7)], data, epochs=1, dtype=DT)[1]
    for other in (first, last):
        assert len(other.curve) == len(alone.curve)
        for a, b in zip(alone.curve, other.curve):
            assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-10, abs=1e-12)
            assert b["test_error"] == a["test_error"]
    assert first.member.seed == 7 and last.member.seed == 7


def test_members_with_different_settings_get_their_own_instances():
    params = glorot_init(SPEC, range(4), dtype=DT)
    groups = make_optimizers("adam", params, [{"lr": 1e-3}, {"lr": 1e-3}, {"lr": 1e-2}, {"lr": 1e-3}])
    assert [idx for idx, _ in groups] == [[0, 1], [2], [3]]
    assert [o.param_groups[0]["lr"] for _, o in groups] == [1e-3, 1e-2, 1e-3]
    per_member = make_optimizers("dog", params, [{}] * 4)
    assert [idx for idx, _ in per_member] == [[0], [1], [2], [3]]


@pytest.mark.parametrize("name", ["adam", "dog"])  # a stacked and a per-member one
def test_progress_is_reported_through_the_runner(name):
    from experiments.run import trainer_for

    calls: list[int] = []
    members = [Member(0), Member(1)]
    trainer_for(name, SPEC).train(members, toy_data(), epochs=32, device="cpu", dtype=DT, progress=calls.append)
    assert calls == [1000 * len(members)] * 2  # 2048 steps: a report every 1000, of the member-updates done


def test_unknown_hyperparameter_is_a_clear_error():
    with pytest.raises(ValueError, match="Unknown hyper-parameter.*'learning_rate'.*prodigy.*accepts: lr"):
        check_hp("prodigy", {"learning_rate": 1.0})
    with pytest.raises(ValueError, match="Unknown torch optimizer 'adamm'"):
        check_hp("adamm", {})


@pytest.mark.parametrize("name, compile, flat", [("adam", False, True), ("dadapt_adam", False, True), ("dog", True, True),
                                                 ("prodigy", True, False), ("sgd_schedulefree", False, True),
                                                 ("cocob", True, True)])
def test_fast_path_equals_plain_path(name, compile, flat, monkeypatch):
    """Same members, same 24 samples each: the fast path's curves equal the plain path's to float64 rounding
    (stacked Adam through its fused kernel; per-member D-Adaptation Adam and DoG over one flat tensor each,
    DoG's gradients written by the compiled function; Prodigy per member over per-layer views, as on the
    larger benchmarks; Schedule-Free through eval()/train(); COCOB through the compiled gradient write
    and torch.compile of its own step)."""
    if compile and not shutil.which("g++"):
        pytest.skip("torch.compile on the CPU needs a C++ compiler")
    if not flat:
        monkeypatch.setattr(torch_members, "FLAT_MAX", 0)
    data = toy_data(24)
    members = [Member(s) for s in (3, 4, 5)]
    plain = train_torch_members(SPEC, name, members, data, epochs=1, dtype=DT, fast=False)
    fast = train_torch_members(SPEC, name, members, data, epochs=1, dtype=DT, fast=True, compile=compile)
    for a, b in zip(plain, fast):
        assert len(a.curve) == len(b.curve) >= 4
        for pa, pb in zip(a.curve, b.curve):
            assert pb["train_loss"] == pytest.approx(pa["train_loss"], rel=1e-9)
            assert pb["test_loss"] == pytest.approx(pa["test_loss"], rel=1e-9)
    _, loss0 = EnsembleMLP(SPEC).evaluate(glorot_init(SPEC, [3], dtype=DT), data.x_train, data.y_train)
    assert fast[0].train_loss != pytest.approx(float(loss0[0]), rel=1e-6)  # and it did train


def test_per_member_instances_are_flat_on_an_accelerator_and_on_small_cpu_models():
    """use_flat: on the CPU only up to FLAT_MAX parameters per member (memory traffic decides there); on any
    other device always (kernel launches and host syncs decide there; ``beyond_throughput.py --ops``)."""
    big = [torch.empty(2, torch_members.FLAT_MAX), torch.empty(2, 1)]
    assert not torch_members.use_flat(big)
    assert torch_members.use_flat([big[0][:, :10], big[1]])
    assert torch_members.use_flat([t.to("meta") for t in big])
