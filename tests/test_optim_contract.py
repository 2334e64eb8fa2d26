"""The optimizers' torch.optim contract (issue 37): one test per item, each failing on the code before the fix.

Small models only: the whole file runs in seconds on one CPU thread.
"""

from __future__ import annotations

import copy
import gc
import itertools
import re
import runpy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import vsgd
from vsgd import VSGD, VSGDfd

ROOT = Path(__file__).resolve().parents[1]


def mlp(seed=0, dtype=torch.float32, sizes=(6, 8, 3)):
    torch.manual_seed(seed)
    layers = []
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b), nn.Tanh()]
    return nn.Sequential(*layers[:-1]).to(dtype)


def batch(seed=1, n=16, d=6, classes=3, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g).to(dtype), torch.randint(0, classes, (n,), generator=g)


def _close(opt):
    getattr(opt, "close", lambda: None)()  # VSGD(model=...) hooks; close() is new (item 6)


def make_closure(opt, model, x, y, counter=None):
    def closure():
        if counter is not None:
            counter.append(1)
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return loss

    return closure


def train(opt, model, steps, seed=1, **kw):
    for t in range(steps):
        x, y = batch(seed + t, **kw)
        opt.step(make_closure(opt, model, x, y))


# -- correctness of the two closure evaluations (VSGDfd) --------------------------------------------
def test_item01_closure_called_twice_whatever_the_groups():
    for n_groups in (1, 2, 3):
        model = mlp()
        params = list(model.parameters())  # 4 tensors
        groups = [{"params": params[i::n_groups]} for i in range(n_groups)]
        opt = VSGDfd(groups, n0=2)
        calls = []
        for t in range(4):
            x, y = batch(t)
            opt.step(make_closure(opt, model, x, y, calls))
        assert len(calls) == 8, f"{n_groups} groups: {len(calls)} closure calls in 4 steps"
    # the rule is element-wise: with one evaluation for all groups, splitting into groups changes nothing
    one, three = mlp(), mlp()
    opt1 = VSGDfd(one.parameters(), n0=2)
    p3 = list(three.parameters())
    opt3 = VSGDfd([{"params": p3[i::3]} for i in range(3)], n0=2)
    train(opt1, one, 6)
    train(opt3, three, 6)
    for a, b in zip(one.parameters(), three.parameters()):
        assert torch.equal(a, b)
    # the per-sample path evaluates twice per step too
    model = mlp()
    p = list(model.parameters())
    opt = VSGDfd([{"params": p[:2]}, {"params": p[2:]}], n0=2)
    calls = []
    original = vsgd.PerSampleClosure.per_sample_grads

    def counted(self, shifts=None):
        calls.append(1)
        return original(self, shifts)

    for t in range(3):
        x, y = batch(t)
        c = vsgd.PerSampleClosure(model, F.cross_entropy, x, y)
        c.per_sample_grads = counted.__get__(c)
        opt.step(c)
    assert len(calls) == 6


def test_item02_shifted_evaluation_sees_the_same_random_state():
    model = mlp()
    opt = VSGDfd(model.parameters(), n0=2)
    x, y = batch()
    noises = []

    def closure():
        noise = torch.rand(4)  # stands for a dropout mask
        noises.append(noise)
        opt.zero_grad()
        loss = F.cross_entropy(model(x) + 0.1 * noise[:3], y)
        loss.backward()
        return loss

    torch.manual_seed(123)
    for _ in range(3):
        opt.step(closure)
    after = torch.rand(1)
    assert len(noises) == 6
    for k in range(3):
        assert torch.equal(noises[2 * k], noises[2 * k + 1]), f"step {k}: the two evaluations saw different noise"
    assert not torch.equal(noises[0], noises[2])  # the stream still advances from step to step
    # ... exactly as if the closure had been called once per step
    torch.manual_seed(123)
    for _ in range(3):
        torch.rand(4)
    assert torch.equal(after, torch.rand(1))
    # a dropout model: both evaluations use the same mask
    torch.manual_seed(0)
    drop = nn.Sequential(nn.Linear(6, 8), nn.Dropout(0.5), nn.Linear(8, 3))
    opt = VSGDfd(drop.parameters(), n0=100)  # bootstrap: no update, the shift is the only change
    masks = []
    drop[1].register_forward_hook(lambda m, a, o: masks.append((o != 0) | (a[0] == 0)))
    opt.step(make_closure(opt, drop, x, y))
    assert len(masks) == 2 and torch.equal(masks[0], masks[1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_item03_parameters_come_back_bit_identical(dtype):
    model = mlp(dtype=dtype, sizes=(6, 64, 32, 3))
    before = [p.detach().clone() for p in model.parameters()]
    opt = VSGDfd(model.parameters(), n0=1000)  # bootstrap: no update is made, only shift and restore
    train(opt, model, 10, dtype=dtype)
    changed = sum(int((a != b).sum()) for a, b in zip(before, model.parameters()))
    assert changed == 0, f"{changed} parameters changed during the bootstrap"


# -- cost and memory --------------------------------------------------------------------------------
class _LargestTensor(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_item04_bbprop_never_materialises_per_sample_curvature():
    B, d_in, d_out = 64, 48, 32
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(d_in, d_out)).double()
    opt = VSGD(model.parameters(), model=model, loss="cross_entropy", n0=1)
    x, y = torch.randn(B, d_in, dtype=torch.float64), torch.randint(0, d_out, (B,))
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    probe = _LargestTensor()
    with probe:
        curv = opt._curvatures()
    assert probe.largest <= max(B * d_in, B * d_out, d_out * d_in), f"a tensor of {probe.largest} elements (per-sample [B, out, in] = {B * d_out * d_in})"
    p = torch.softmax(model(x).detach(), dim=1)
    want = ((p * (1 - p)).unsqueeze(2) * (x * x).unsqueeze(1)).mean(dim=0)  # mean_b d2L/da_bj^2 x_bi^2
    torch.testing.assert_close(curv[id(model[0].weight)], want, rtol=1e-12, atol=1e-15)


def test_item05_state_only_for_parameters_with_gradients():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 200), nn.Tanh(), nn.Linear(200, 200), nn.Tanh(), nn.Linear(200, 3))
    for p in [*model[0].parameters(), *model[2].parameters()]:
        p.requires_grad_(False)  # fine-tuning: only the head trains
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    for opt in (VSGDfd(model.parameters(), n0=2), VSGD(model.parameters(), model=model, loss="cross_entropy", n0=2)):
        train(opt, model, 3)
        stored = sum(v.numel() for s in opt.state.values() for v in s.values() if isinstance(v, torch.Tensor))
        # (a group's pooled statistics, [1]-sized, live on its first parameter under "group." keys)
        frozen_with_state = [p for p in model.parameters() if not p.requires_grad
                             and any(not k.startswith("group.") for k in opt.state.get(p, {}))]
        assert not frozen_with_state, f"{type(opt).__name__}: state for {len(frozen_with_state)} frozen tensors"
        assert stored <= 8 * trainable, f"{type(opt).__name__}: {stored} state elements for {trainable} trainable"
        assert all(torch.isfinite(r).all() for r in opt.learning_rates())
        _close(opt)
    # bbprop skips the frozen layers' weight curvature, and the head's is unchanged
    x, _ = batch()
    inputs = [x]
    for m in model:
        inputs.append(m(inputs[-1]).detach())
    full = vsgd.bbprop.bbprop_from_activations(model, inputs, "cross_entropy")
    head = vsgd.bbprop.bbprop_from_activations(model, inputs, "cross_entropy", only=list(model[4].parameters()))
    assert set(head) == set(model[4].parameters())
    for p in head:
        assert torch.equal(head[p], full[p])


def _hook_count(model):
    return len(model._forward_hooks) + sum(len(m._forward_pre_hooks) for m in model)


def test_item06_bbprop_hooks_go_with_the_optimizer():
    model = mlp()
    assert _hook_count(model) == 0
    opts = [VSGD(model.parameters(), model=model, loss="cross_entropy") for _ in range(3)]
    assert _hook_count(model) == 3 * (4 + 1)  # bbprop's 4, the step cap's input recorder
    del opts
    gc.collect()
    assert _hook_count(model) == 0, "hooks left after the optimizers were deleted"
    opt = VSGD(model.parameters(), model=model, loss="cross_entropy")
    train(opt, model, 2)
    opt.close()
    assert _hook_count(model) == 0
    opt.close()  # idempotent
    with pytest.raises(RuntimeError, match="close"):
        train(opt, model, 1)


# -- conventions ------------------------------------------------------------------------------------
def test_item07_lr_is_a_multiplier_in_every_group():
    for make in (lambda m, **kw: VSGDfd(m.parameters(), n0=2, **kw),
                 lambda m, **kw: VSGD(m.parameters(), model=m, loss="cross_entropy", n0=2, **kw)):
        model = mlp(dtype=torch.float64)
        opt = make(model)
        assert all(g["lr"] == 1.0 for g in opt.param_groups)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10)
        for t in range(3):
            x, y = batch(t, dtype=torch.float64)
            opt.step(make_closure(opt, model, x, y))
            sched.step()
        assert opt.param_groups[0]["lr"] < 1.0
        _close(opt)
        # lr = 0.5 halves every step of the same run; lr = 0 stops it
        moves = {}
        for lr in (1.0, 0.5, 0.0):
            model = mlp(dtype=torch.float64)
            opt = make(model, lr=lr)
            start = [p.detach().clone() for p in model.parameters()]
            train(opt, model, 3, dtype=torch.float64)  # the third step is the first update
            moves[lr] = [p.detach() - s for p, s in zip(model.parameters(), start)]
            if lr == 0.5:
                rates = opt.learning_rates()
            _close(opt)
        for full, half, zero in zip(moves[1.0], moves[0.5], moves[0.0]):
            assert full.abs().max() > 0
            torch.testing.assert_close(half, 0.5 * full, rtol=1e-9, atol=1e-15)
            assert torch.equal(zero, torch.zeros_like(zero))
        assert all(torch.isfinite(r).all() for r in rates)
    # a group's own lr is used, a bad one refused
    model = mlp()
    opt = VSGDfd([{"params": model[0].parameters(), "lr": 0.1}, {"params": model[2].parameters()}])
    assert [g["lr"] for g in opt.param_groups] == [0.1, 1.0]
    with pytest.raises(ValueError, match="lr"):
        VSGDfd(model.parameters(), lr=-1.0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_item08_half_precision_keeps_float32_state(dtype):
    for make in (lambda m: VSGD(m.parameters(), mode="l", model=m, loss="cross_entropy", n0=2),
                 lambda m: VSGDfd(m.parameters(), n0=2)):
        model = mlp(dtype=dtype)
        start = [p.detach().clone() for p in model.parameters()]
        opt = make(model)
        for t in range(12):
            x, y = batch(t, dtype=dtype)
            x[:, 0] = 0  # an input that is always 0 (an MNIST border pixel): its weights' gradients are exactly 0
            opt.step(make_closure(opt, model, x, y))
        for p in model.parameters():
            assert torch.isfinite(p).all(), f"{type(opt).__name__} {dtype}: non-finite parameters"
            assert p.dtype == dtype
            assert all(v.dtype == torch.float32 for v in opt.state[p].values() if isinstance(v, torch.Tensor))
        assert any(not torch.equal(a, b) for a, b in zip(start, model.parameters()))
        # state_dict resume keeps the float32 state (torch.optim would cast it to the parameter's dtype)
        saved_model, saved_opt = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
        train(opt, model, 2, seed=50, dtype=dtype)
        model2 = mlp(dtype=dtype)
        model2.load_state_dict(saved_model)
        opt2 = make(model2)
        opt2.load_state_dict(saved_opt)
        assert all(v.dtype == torch.float32 for s in opt2.state.values() for v in s.values() if isinstance(v, torch.Tensor))
        train(opt2, model2, 2, seed=50, dtype=dtype)
        for a, b in zip(model.parameters(), model2.parameters()):
            assert torch.equal(a, b)


def test_item09_sparse_gradients_get_one_clear_error():
    emb = nn.Embedding(10, 4, sparse=True)
    head = nn.Linear(4, 2)
    idx, y = torch.tensor([1, 2, 3]), torch.tensor([0, 1, 0])
    for opt in (VSGDfd([*emb.parameters(), *head.parameters()]),
                VSGD([*emb.parameters(), *head.parameters()], curvature_fn=lambda: [torch.ones(10, 4), torch.ones(2, 4), torch.ones(2)])):
        def closure(opt=opt):
            opt.zero_grad()
            loss = F.cross_entropy(head(emb(idx)), y)
            loss.backward()
            return loss

        with pytest.raises(RuntimeError, match=r"does not support sparse gradients: parameter #0 .*sparse=False"):
            opt.step(closure)


def test_item10_accepts_a_compiled_module():
    eager, to_compile = mlp(), mlp()
    compiled = torch.compile(to_compile, backend="eager")
    opt_c = VSGD(compiled.parameters(), model=compiled, loss="cross_entropy", n0=2)
    opt_e = VSGD(eager.parameters(), model=eager, loss="cross_entropy", n0=2)
    train(opt_c, compiled, 4)
    train(opt_e, eager, 4)
    for a, b in zip(eager.parameters(), to_compile.parameters()):
        torch.testing.assert_close(a, b)
    assert any(not torch.equal(a, b) for a, b in zip(eager.parameters(), mlp().parameters()))
    _close(opt_c)
    _close(opt_e)


def test_item11_curvature_comes_from_the_gradients_forward_pass():
    def run(evaluate):
        model = mlp(dtype=torch.float64)
        opt = VSGD(model.parameters(), model=model, loss="cross_entropy", n0=2)
        x_val = torch.randn(50, 6, dtype=torch.float64) * 5
        for t in range(5):
            x, y = batch(t, dtype=torch.float64)
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            evaluate(model, x_val)  # between backward() and step()
            opt.step()
        _close(opt)
        return [p.detach().clone() for p in model.parameters()]

    plain = run(lambda m, x: None)

    def under_no_grad(m, x):
        with torch.no_grad():
            m(x)

    for a, b in zip(plain, run(under_no_grad)):
        assert torch.equal(a, b)
    with pytest.raises(RuntimeError, match="2 forward passes"):
        run(lambda m, x: m(x))
    # with a closure, the closure's own forward pass is used whatever ran before it
    finals = []
    for foreign in (False, True):
        model = mlp(dtype=torch.float64)
        opt = VSGD(model.parameters(), model=model, loss="cross_entropy", n0=1)
        for t in range(3):
            x, y = batch(t, dtype=torch.float64)
            if foreign:
                model(torch.randn(50, 6, dtype=torch.float64) * 5)
            opt.step(make_closure(opt, model, x, y))
        _close(opt)
        finals.append([p.detach().clone() for p in model.parameters()])
    for a, b in zip(*finals):
        assert torch.equal(a, b)


# -- validation and messages ------------------------------------------------------------------------
def test_item12_validation_and_messages():
    model = mlp()
    x, y = batch()

    def returns_none():
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()

    def no_backward():
        opt.zero_grad()
        return F.cross_entropy(model(x), y)

    for opt in (VSGDfd(model.parameters()), VSGD(model.parameters(), model=model, loss="cross_entropy")):
        with pytest.raises(TypeError, match="returned None"):
            opt.step(returns_none)
        with pytest.raises(RuntimeError, match="did not call backward"):
            opt.step(no_backward)
        _close(opt)
    # curvature_fn: non-finite values, wrong shapes
    for bad, message in (([torch.full((8, 6), float("nan"))], "not finite"), ([torch.ones(3)], "shape")):
        curv = bad + [torch.ones(8), torch.ones(3, 8), torch.ones(3)]
        opt = VSGD(model.parameters(), curvature_fn=lambda curv=curv: curv, n0=1)
        with pytest.raises(ValueError, match=r"parameter #0 of param group 0 .*" + message):
            opt.step(make_closure(opt, model, x, y))
    # fd_sign / fd_step are +-1 and 0/1; reduction; n0 an int in both
    for kw in ({"fd_sign": 0.3}, {"fd_step": 0.5}, {"n0": 2.5}, {"n0": 10.0}):
        with pytest.raises(ValueError, match=next(iter(kw))):
            VSGDfd(model.parameters(), **kw)
    with pytest.raises(ValueError, match="reduction"):
        VSGD(model.parameters(), model=model, loss="cross_entropy", reduction="none")
    with pytest.raises(ValueError, match="n0"):
        VSGD(model.parameters(), model=model, loss="cross_entropy", n0=2.5)
    VSGDfd(model.parameters(), n0=3, fd_sign=-1, fd_step=1)
    # a foreign parameter added to a model= VSGD
    opt = VSGD(model.parameters(), model=model, loss="cross_entropy")
    with pytest.raises(ValueError, match="not a parameter of model"):
        opt.add_param_group({"params": [nn.Parameter(torch.ones(2))]})
    _close(opt)
    # messages spell the Python keyword, not a Hydra override
    for make in (lambda: VSGD(model.parameters(), model=model, loss="cross_entropy", tau0=0.5),
                 lambda: VSGDfd(model.parameters(), eps=0.0),
                 lambda: VSGDfd(model.parameters(), fd_sign=0.3)):
        with pytest.raises(ValueError) as err:
            make()
        text = str(err.value)
        assert "optimizer." not in text and re.search(r"VSGD(fd)?\(\.\.\., \w+=", text), text
    gc.collect()


def test_item13_curvature_fn_contract_and_documented_example(tmp_path):
    doc = (ROOT / "docs" / "vsgd.md").read_text()
    block = doc.split("<!-- example: curvature_fn")[1].split("```python\n")[1].split("```")[0]
    script = tmp_path / "curvature_fn_example.py"
    script.write_text(block)
    env = runpy.run_path(str(script))
    torch.testing.assert_close(env["model"].weight.detach(), torch.tensor([[1.0, -2.0, 0.5, 0.0, 3.0]]),
                               atol=0.05, rtol=0)
    # called once per step, after the closure, with gradients disabled
    theta = nn.Parameter(torch.tensor([1.0, 2.0]))
    seen = []

    def curvature_fn():
        seen.append((torch.is_grad_enabled(), float(theta.grad.abs().sum())))
        return [torch.ones(2)]

    opt = VSGD([theta], curvature_fn=curvature_fn, n0=1)
    for _ in range(3):
        def closure():
            opt.zero_grad()
            loss = (theta ** 2).sum()
            loss.backward()
            return loss

        opt.step(closure)
    assert len(seen) == 3 and all(not enabled and g > 0 for enabled, g in seen)
    assert "torch.no_grad" in doc and "the loss the closure returns" in doc
