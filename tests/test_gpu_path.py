"""The GPU path for the grids (issue 35 s3), checked on the CPU where it can be.

* No host sync inside a step: every registered rule's step, eager and traced by dynamo with
  ``fullgraph=True``, runs on ``meta`` tensors, which hold no values, so any read of a value on the host
  (``.item()``, ``bool(tensor)``, ``.tolist()``, ``float(tensor)``, ``nonzero``) raises, as it would wait for
  the device on CUDA. A rule that reads a value is caught (the control test).
* The chunk size on CUDA is a pure function of the free memory and the bytes a member holds.
* The CUDA-graph step equals the compiled one without graphs (CUDA only; skipped here).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

import experiments  # noqa: F401  (registers the baselines)
from experiments.mlp import EnsembleMLP, MLPSpec, glorot_init
from experiments.run import auto_chunk_size, chunk_for_memory, member_bytes
from experiments.trainer import Member, _generic_step, _into, _map_tensors, make_step, train_ensemble
from vsgd.core import REGISTRY, get_rule

SPEC = MLPSpec((6, 5, 3), "cross_entropy", l2=1e-3)
K = 3


def _on_meta(rule, warm_done: bool = False):
    """Parameters, state and hyper-parameters of K members, built on the CPU (init may read values) and moved
    to ``meta``; ``warm_done``: a rule with a slow start (vSGD's ``n0_max``) is put past it."""
    params = glorot_init(SPEC, list(range(K)))
    hp = rule.hp_tensors([{}] * K, dtype=torch.float32, device="cpu")
    state = rule.init(params, hp)
    if warm_done and isinstance(state, dict) and isinstance(state.get("step"), int) and "n0_max" in state:
        state["step"] = state["n0_max"] + 1  # vSGD: its Python step counter past the largest n0
    meta = lambda tree: _map_tensors(tree, lambda t: t.to("meta"))
    x = torch.empty(K, SPEC.layers[0], device="meta")
    target = torch.empty(K, dtype=torch.long, device="meta")
    return meta(params), meta(state), meta(hp), x, target


@pytest.mark.parametrize("warm_done", [False, True], ids=["first steps", "after the slow start"])
@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_step_reads_no_value_back_from_the_device(name, warm_done):
    rule = get_rule(name)
    params, state, hp, x, target = _on_meta(rule, warm_done)
    step = make_step(EnsembleMLP(SPEC), rule)  # the trainer's own step: fused SGD or the generic one
    for _ in range(3):
        state = step(params, state, hp, x, target, lambda w: x.unsqueeze(1))
    step.sync(params)
    assert params[0].device.type == "meta"


@pytest.mark.parametrize("read", [lambda t: t.sum().item(), lambda t: bool((t > 0).any()), lambda t: t.tolist()],
                         ids=["item", "bool", "tolist"])
def test_a_step_that_reads_a_value_is_caught(read):
    rule = get_rule("adagrad")

    def reading_update(grads, state, params, hp, extras):
        read(grads[0])
        return rule.update(grads, state, params, hp, extras)

    bad = dataclasses.replace(rule, update=reading_update)
    params, state, hp, x, target = _on_meta(bad)
    with pytest.raises((RuntimeError, NotImplementedError)):
        make_step(EnsembleMLP(SPEC), bad)(params, state, hp, x, target)


@pytest.mark.parametrize("name", sorted(n for n in REGISTRY if get_rule(n).scalar_rate is None or get_rule(n).extras)
                         + ["sgd"])
def test_compiled_step_is_one_graph(name):
    """``fullgraph=True`` fails on any graph break (a host read, data-dependent Python control flow): one graph
    is what a CUDA graph records. On meta tensors, as on CUDA: Almeida's CPU-only shortcut (it reads its
    per-member flags when they live on the CPU) is not taken."""
    rule = get_rule(name)
    if name == "sgd":
        rule = dataclasses.replace(rule, scalar_rate=None)  # plain SGD through the generic step too
    params, state, hp, x, target = _on_meta(rule)
    torch._dynamo.reset()
    fn = torch.compile(_generic_step, backend="eager", fullgraph=True)
    for _ in range(3):
        state = fn(EnsembleMLP(SPEC), rule, params, state, hp, x, target, set(rule.extras))
    torch._dynamo.reset()


def test_into_outside_a_graph_keeps_the_tensor_the_graph_wrote():
    old = {"v": [torch.zeros(4)], "n": torch.zeros(2)}
    view = old["v"][0].view(4)  # what a graph returns for an input it wrote in place: a view of it
    fresh = torch.ones(2)
    out = _into(old, {"v": [view], "n": fresh})
    assert out["v"][0] is old["v"][0] and out["n"] is old["n"] and out["n"].tolist() == [1.0, 1.0]


# -- chunk sizes on CUDA -----------------------------------------------------------------------------
def test_chunk_holds_the_whole_grid_where_it_fits():
    assert chunk_for_memory(100e9, 1e6, 952) == 952


def test_chunks_are_the_fewest_that_fit_and_of_equal_size():
    # 0.9 x 10 GB / 30 MB = 300 members at most: 952 members in 4 chunks of 238
    assert chunk_for_memory(10e9, 30e6, 952) == 238
    assert chunk_for_memory(10e9, 30e6, 952, fraction=1.0) == 318  # 333 at most: 3 chunks of 318, 318, 316
    assert chunk_for_memory(10e9, 30e6, 300) == 300
    for free in (1e9, 7e9, 50e9):
        k = chunk_for_memory(free, 30e6, 952)
        chunks = -(-952 // k)
        fits = int(0.9 * free // 30e6)
        assert k <= fits and chunks == -(-952 // fits)  # fits, in the fewest chunks that fit
        assert 0 <= k - (952 - (chunks - 1) * k) < chunks  # the last chunk is short by less than one a chunk


def test_chunk_for_memory_subtracts_the_reserve_and_keeps_one_member():
    assert chunk_for_memory(10e9, 1e9, 100, reserve_bytes=5e9) == 4
    assert chunk_for_memory(1e6, 1e9, 100) == 1
    with pytest.raises(ValueError, match="must be positive"):
        chunk_for_memory(1e9, 0, 10)


def test_member_bytes_count_the_rule_state_and_extras():
    spec = MLPSpec((784, 2500, 2000, 1500, 1000, 500, 10), "cross_entropy", 0.0)  # M2
    f32 = torch.float32
    sgd, adagrad, vsgd_l = (member_bytes(spec, get_rule(n), f32) for n in ("sgd", "adagrad", "vsgd_l"))
    P = spec.n_params
    assert adagrad - sgd == pytest.approx(2 * 4 * P, rel=1e-3)  # one parameter-sized state tensor, old and new
    assert vsgd_l - adagrad >= 2 * 4 * 3 * P  # g_bar, v_bar, h_bar, tau (old and new) and the curvature extra
    assert member_bytes(spec, get_rule("vsgd_l"), torch.float64) == 2 * vsgd_l


def test_auto_chunk_size_on_the_cpu_is_unchanged():
    """The CPU sizes chunks to the cache as before (the committed records' chunks)."""
    m0 = MLPSpec((784, 10), "cross_entropy", 0.0)
    assert auto_chunk_size(m0, False, torch.float32, torch.device("cpu"), 10_000) == 54
    assert auto_chunk_size(m0, False, torch.float32, torch.device("cpu"), 10_000, rule=get_rule("smd")) == 54


@pytest.mark.parametrize("name", ["adagrad", "vsgd_l"])
def test_graph_mode_plumbing_runs_on_the_cpu_and_equals_the_compiled_step(tiny_data, name):
    """The CUDA-graph path's own code (static marks, a new graph step each call, the state kept in its tensors,
    a fresh compile per chunk) on the CPU, where inductor records no graph: the same numbers as without it."""
    rule, members = get_rule(name), [Member(s, {}) for s in range(3)]
    kw = {"epochs": 1, "compile": True}
    graphed = train_ensemble(SPEC, rule, members, tiny_data, cuda_graphs=True, **kw)
    torch._dynamo.reset()
    plain = train_ensemble(SPEC, rule, members, tiny_data, cuda_graphs=False, **kw)
    assert [r.train_loss for r in graphed] == [r.train_loss for r in plain]
    assert [c["test_loss"] for c in graphed[0].curve] == [c["test_loss"] for c in plain[0].curve]


# -- CUDA only ---------------------------------------------------------------------------------------
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (the CUDA-graph path)")


@cuda
@pytest.mark.parametrize("name", ["adagrad", "smd", "vsgd_l"])
def test_cuda_graph_step_equals_the_compiled_step(tiny_data, name):
    from torch._dynamo.utils import counters

    rule = get_rule(name)
    members = [Member(s, {}) for s in range(4)]
    kw = {"epochs": 1, "device": "cuda", "dtype": torch.float32, "compile": True}
    counters.clear()
    graphed = train_ensemble(SPEC, rule, members, tiny_data, cuda_graphs=True, **kw)
    skips = dict(counters["inductor"])
    torch._dynamo.reset()
    plain = train_ensemble(SPEC, rule, members, tiny_data, cuda_graphs=False, **kw)
    for a, b in zip(graphed, plain):
        assert a.train_loss == pytest.approx(b.train_loss, rel=1e-5)
        assert [c["test_loss"] for c in a.curve] == pytest.approx([c["test_loss"] for c in b.curve], rel=1e-5)
    if name != "vsgd_l":  # vSGD's Python step counter makes its graph dynamic: run without CUDA graphs
        assert not skips.get("cudagraph_skips"), skips


@cuda
def test_cuda_chunk_size_fits_the_free_memory():
    free, _ = torch.cuda.mem_get_info()
    spec = MLPSpec((784, 2500, 2000, 1500, 1000, 500, 10), "cross_entropy", 0.0)
    k = auto_chunk_size(spec, False, torch.float32, torch.device("cuda"), 100_000, rule=get_rule("smd"))
    assert 1 <= k and k * member_bytes(spec, get_rule("smd"), torch.float32) <= free


@pytest.mark.parametrize("name", sorted(n for n in REGISTRY if get_rule(n).scalar_rate is None or get_rule(n).extras))
def test_compiled_step_on_the_cpu_is_one_graph(name):
    """The CPU grids run the compiled step too: a graph break there (Almeida's per-member flags read with
    ``.tolist()`` every step, before session 24) splits the step into several graphs with Python between them
    (Almeida on M1: 59 s against 23 s for the same 0.3 epoch, same numbers; /tmp check in the session-24 note)."""
    rule = get_rule(name)
    params = glorot_init(SPEC, list(range(K)))
    hp = rule.hp_tensors([{}] * K, dtype=torch.float32, device="cpu")
    state = rule.init(params, hp)
    x, target = torch.randn(K, SPEC.layers[0]), torch.zeros(K, dtype=torch.long)
    torch._dynamo.reset()
    fn = torch.compile(_generic_step, backend="eager", fullgraph=True)
    for _ in range(3):
        state = fn(EnsembleMLP(SPEC), rule, params, state, hp, x, target, set(rule.extras))
    torch._dynamo.reset()
