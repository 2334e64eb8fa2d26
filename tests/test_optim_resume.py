"""The torch.optim contract beyond tests/test_optim_contract.py (issue 34 s3): bit-exact resume and what people do
around it.

* ``state_dict()`` / ``load_state_dict()`` resume is bit-exact: N steps, save model and optimizer, load both into a
  fresh model and a fresh optimizer, N more steps == 2N steps uninterrupted (``torch.equal`` on every parameter and
  every state tensor), for every registered rule through its front-end, VSGD in every mode and VSGDfd (plain closure
  and PerSampleClosure), in float32 and float64;
* param groups with their own settings and ``add_param_group`` between the save and the load;
* a parameter whose ``grad`` is None before the save gets its state only after the load, as uninterrupted;
* bfloat16 parameters: resume is bit-exact and the state stays float32;
* a model under ``torch.compile`` resumes bit-exactly;
* sparse gradients get one clear error from every front-end (test_optim_contract item 9 checks VSGD and VSGDfd with
  a hand-made curvature; here every registered rule's front-end).

Small models only (a 6-8-3 tanh MLP): the file runs in seconds.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from test_optim_contract import mlp  # pytest puts tests/ on sys.path
from torch import nn

import baselines
import vsgd
from vsgd import VSGD, VSGDfd
from vsgd.core import REGISTRY

N = 6  # steps before the save, and after it


def batch(t, n=8, d=6, classes=3, dtype=torch.float32):
    g = torch.Generator().manual_seed(100 + t)
    return torch.randn(n, d, generator=g).to(dtype), torch.randint(0, classes, (n,), generator=g)


# One entry per front-end; ``graph``: the closure's backward keeps the graph (SMD's Hessian-vector products),
# ``per_sample``: step with a vsgd.PerSampleClosure.
FRONTENDS = {
    "vsgd_l": {"make": lambda m, ps: VSGD(ps, mode="l", model=m, loss="cross_entropy", n0=2)},
    "vsgd_l robust": {"make": lambda m, ps: VSGD(ps, mode="l", model=m, loss="cross_entropy", n0=2, h_rel=0.1,
                                                  h_var=True)},
    "vsgd_b": {"make": lambda m, ps: VSGD(ps, mode="b", model=m, loss="cross_entropy", n0=2)},
    "vsgd_b group": {"make": lambda m, ps: VSGD(ps, mode="b", blocks="group", model=m, loss="cross_entropy", n0=2)},
    "vsgd_g": {"make": lambda m, ps: VSGD(ps, mode="g", model=m, loss="cross_entropy", n0=2)},
    "vsgd_fd": {"make": lambda m, ps: VSGDfd(ps, n0=2)},
    "vsgd_fd per-sample": {"make": lambda m, ps: VSGDfd(ps, n0=2), "per_sample": True},
    "sgd": {"make": lambda m, ps: baselines.SGD(ps, eta0=0.05, gamma=1e-3)},
    "adagrad": {"make": lambda m, ps: baselines.Adagrad(ps, eta0=0.05)},
    "almeida": {"make": lambda m, ps: baselines.Almeida(ps, eta0=0.01, tau=10.0)},
    "amari": {"make": lambda m, ps: baselines.Amari(ps, eta0=0.01, tau=10.0)},
    "smd": {"make": lambda m, ps: baselines.SMD(ps, eta0=0.05, mu=1e-3, tau=10.0), "graph": True},
}
RULE_OF = {"vsgd_l robust": "vsgd_l", "vsgd_b group": "vsgd_g", "vsgd_fd per-sample": "vsgd_fd"}


def test_every_registered_rule_has_a_front_end_here():
    covered = {RULE_OF.get(k, k) for k in FRONTENDS}
    assert set(REGISTRY) <= covered, f"rules without a resume test: {sorted(set(REGISTRY) - covered)}"
    for name, spec in FRONTENDS.items():
        model = mlp()
        opt = spec["make"](model, model.parameters())
        assert opt.rule is REGISTRY[RULE_OF.get(name, name)], name
        getattr(opt, "close", lambda: None)()


def closure_for(opt, spec, model, t, dtype, params=None):
    x, y = batch(t, dtype=dtype)
    if spec.get("per_sample"):
        return vsgd.PerSampleClosure(model, F.cross_entropy, x, y)

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward(create_graph=spec.get("graph", False))
        return loss

    return closure


def run(opt, spec, model, steps, start, dtype):
    for t in range(start, start + steps):
        opt.step(closure_for(opt, spec, model, t, dtype))
        if spec.get("graph"):
            opt.zero_grad()  # frees the double-backward graph (SMD's documented use)


def state_tensors(opt):
    return [(k, v) for p in (q for g in opt.param_groups for q in g["params"]) for k, v in sorted(opt.state[p].items())
            if isinstance(v, torch.Tensor)]


def assert_same(model_a, model_b, opt_a, opt_b, what):
    for i, (a, b) in enumerate(zip(model_a.parameters(), model_b.parameters())):
        assert a.dtype == b.dtype and torch.equal(a, b), f"{what}: parameter {i} differs after resume"
    sa, sb = state_tensors(opt_a), state_tensors(opt_b)
    assert [k for k, _ in sa] == [k for k, _ in sb], what
    for (k, a), (_, b) in zip(sa, sb):
        assert a.dtype == b.dtype and torch.equal(a, b), f"{what}: state {k} differs after resume"


def resume_matches_uninterrupted(spec, dtype, make_params=lambda m: m.parameters(), between=None, what=""):
    """N steps, save, fresh model + optimizer, load, N more steps == 2N uninterrupted. ``between(opt, model)``: done
    on both runs after the first N steps (before the save)."""
    straight = mlp(dtype=dtype)
    opt_s = spec["make"](straight, make_params(straight))
    run(opt_s, spec, straight, N, 0, dtype)
    if between:
        between(opt_s, straight)
    run(opt_s, spec, straight, N, N, dtype)

    first = mlp(dtype=dtype)
    opt_1 = spec["make"](first, make_params(first))
    run(opt_1, spec, first, N, 0, dtype)
    if between:
        between(opt_1, first)
    saved_model, saved_opt = copy.deepcopy(first.state_dict()), copy.deepcopy(opt_1.state_dict())
    getattr(opt_1, "close", lambda: None)()
    del opt_1, first

    fresh = mlp(seed=123, dtype=dtype)  # different initial weights: everything must come from the checkpoint
    fresh.load_state_dict(saved_model)
    opt_2 = spec["make"](fresh, make_params(fresh))
    if between:
        between(opt_2, fresh, fresh_optimizer=True)
    opt_2.load_state_dict(saved_opt)
    run(opt_2, spec, fresh, N, N, dtype)
    assert_same(straight, fresh, opt_s, opt_2, what)
    assert any(not torch.equal(a, b) for a, b in zip(straight.parameters(), mlp(dtype=dtype).parameters())), \
        f"{what}: nothing moved, the test proves nothing"
    return opt_s, opt_2


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", sorted(FRONTENDS))
def test_resume_is_bit_exact(name, dtype):
    resume_matches_uninterrupted(FRONTENDS[name], dtype, what=f"{name} {dtype}")


@pytest.mark.parametrize("name", ["vsgd_l", "vsgd_g", "vsgd_fd", "almeida"])
def test_param_groups_and_add_param_group_survive_resume(name):
    spec = FRONTENDS[name]
    lr_key = "lr" if name.startswith("vsgd") else "eta0"
    lr_other = 0.5 if lr_key == "lr" else 0.02

    def groups(model):  # first layer in group 0, the last layer's weight in group 1 with its own setting
        layers = [m for m in model if isinstance(m, nn.Linear)]
        return [{"params": list(layers[0].parameters())}, {"params": [layers[1].weight], lr_key: lr_other}]

    def between(opt, model, fresh_optimizer=False):
        # the last layer's bias joins late, with a setting of its own (before the load on the resumed run, as a
        # user who rebuilds the optimizer the same way must)
        opt.add_param_group({"params": [model[2].bias], lr_key: lr_other * 2})

    opt_s, opt_2 = resume_matches_uninterrupted(spec, torch.float64, make_params=groups, between=between,
                                                what=f"{name} with groups")
    assert [g[lr_key] for g in opt_2.param_groups] == [g[lr_key] for g in opt_s.param_groups]
    assert len(opt_2.param_groups) == 3


@pytest.mark.parametrize("name", ["vsgd_l", "vsgd_b", "vsgd_fd", "adagrad"])
def test_a_parameter_without_grad_gets_state_only_when_it_has_one(name):
    spec = FRONTENDS[name]
    extra = {}

    def make_params(model):
        extra[id(model)] = nn.Parameter(torch.zeros(3, dtype=model[0].weight.dtype))  # unused until the save
        return [*model.parameters(), extra[id(model)]]

    def between(opt, model, fresh_optimizer=False):
        p = extra[id(model)]
        if not fresh_optimizer:
            assert p not in opt.state or not opt.state[p], f"{name}: state for a parameter that never had a gradient"
        model.register_forward_hook(lambda m, i, out: out + p)  # from now on the parameter is used

    if name.startswith(("vsgd_l", "vsgd_b")):
        pytest.skip("VSGD(model=...) takes curvature from the model's own Linear layers: a parameter outside the "
                    "model is refused at construction (test_optim_contract item 13)")
    resume_matches_uninterrupted(spec, torch.float64, make_params=make_params, between=between,
                                 what=f"{name} grad=None")


@pytest.mark.parametrize("name", ["vsgd_l", "vsgd_b", "vsgd_g", "vsgd_fd", "sgd", "almeida"])
def test_bfloat16_resume_is_bit_exact_and_keeps_float32_state(name):
    _, opt_2 = resume_matches_uninterrupted(FRONTENDS[name], torch.bfloat16, what=f"{name} bfloat16")
    for p, st in opt_2.state.items():
        assert p.dtype == torch.bfloat16
        assert all(v.dtype == torch.float32 for v in st.values() if isinstance(v, torch.Tensor) and v.is_floating_point())


@pytest.mark.parametrize("name", ["vsgd_l", "vsgd_fd"])
def test_compiled_model_resumes_bit_exactly(name):
    spec = FRONTENDS[name]
    compiled = {}

    def make(model, params):
        compiled[id(model)] = torch.compile(model, backend="aot_eager")
        return spec["make"](compiled[id(model)], compiled[id(model)].parameters())

    cspec = {**spec, "make": make}
    straight = mlp()
    opt_s = make(straight, None)
    cstraight = compiled[id(straight)]
    run(opt_s, spec, cstraight, 2 * N, 0, torch.float32)

    first = mlp()
    opt_1 = make(first, None)
    run(opt_1, spec, compiled[id(first)], N, 0, torch.float32)
    saved_model, saved_opt = copy.deepcopy(compiled[id(first)].state_dict()), copy.deepcopy(opt_1.state_dict())
    getattr(opt_1, "close", lambda: None)()
    fresh = mlp(seed=9)
    opt_2 = cspec["make"](fresh, None)
    compiled[id(fresh)].load_state_dict(saved_model)  # a compiled module's state_dict keys carry "_orig_mod."
    opt_2.load_state_dict(saved_opt)
    run(opt_2, spec, compiled[id(fresh)], N, N, torch.float32)
    assert_same(straight, fresh, opt_s, opt_2, f"{name} compiled")


@pytest.mark.parametrize("name", sorted(FRONTENDS))
def test_sparse_gradients_get_one_clear_error_from_every_front_end(name):
    spec = FRONTENDS[name]
    if name.startswith("vsgd_") and not name.startswith("vsgd_fd"):
        pytest.skip("VSGD(model=...) takes curvature from Linear layers only; test_optim_contract item 9 checks "
                    "VSGD with curvature_fn")
    emb, head = nn.Embedding(10, 4, sparse=True), nn.Linear(4, 3)
    model = nn.Sequential(emb, head)
    opt = spec["make"](model, model.parameters())
    idx, y = torch.tensor([1, 2, 3]), torch.tensor([0, 1, 0])

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(model(idx), y)
        loss.backward(create_graph=spec.get("graph", False))
        return loss

    with pytest.raises(RuntimeError, match=r"does not support sparse gradients: parameter #0 .*sparse=False"):
        opt.step(closure)
