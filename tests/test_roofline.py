"""benchmarks/roofline.py's counting: bytes (parameters and each state tensor, read and written) and operations."""

from benchmarks.roofline import update_bytes
from experiments.mlp import FusedSGD, MLPSpec
from vsgd.core import get_rule

SPEC = MLPSpec(layers=(20, 7, 3), loss="cross_entropy")


def test_sgd_moves_its_parameters_read_and_written():
    b = update_bytes(get_rule("sgd"), SPEC)
    assert b["params"] == 2 * 4 * SPEC.n_params
    assert b["eager_grad_extras"] == 0  # fused: no gradient tensor
    assert b["total"] == b["params"] + b["state"] and b["state"] < 64  # its state is a step counter per member


def test_vsgd_l_counts_its_four_parameter_sized_state_tensors():
    b = update_bytes(get_rule("vsgd_l"), SPEC)
    P = SPEC.n_params
    assert b["state"] == 2 * 4 * 4 * P  # g_bar, v_bar, h_bar, tau
    assert b["total"] == 4 * (2 * P + 8 * P)
    assert b["eager_grad_extras"] == 4 * (2 * P + 2 * P)  # the gradient and bbprop's curvature


def test_adagrad_and_smd():
    P = SPEC.n_params
    assert update_bytes(get_rule("adagrad"), SPEC)["total"] == 4 * 4 * P
    assert 4 * 4 * P <= update_bytes(get_rule("smd"), SPEC)["total"] <= 4 * 4 * P + 8  # v, and a rate per member


def test_fused_sgd_counts_a_deferred_matrix_once_per_fold():
    """Plain SGD's fused step folds a large matrix's rank-1 updates into it every ``rank`` steps (M2's first
    layer): counting it read and written every step put the H100's SGD above its memory bandwidth."""
    spec = MLPSpec(layers=(784, 500, 300, 10), loss="cross_entropy")
    f = FusedSGD(spec)
    assert f.deferred(784, 500, first=True) and not f.deferred(500, 300) and not f.deferred(300, 10)
    b = update_bytes(get_rule("sgd"), spec)
    assert b["params"] == round(4 * 2 * (784 * 500 / f.rank + 500 + 500 * 300 + 300 + 300 * 10 + 10))
    assert b["distinct"] == 4 * spec.n_params + b["state"] // 2  # the working set still holds every weight once


def test_count_flops_counts_products_pointwise_and_reductions_not_copies():
    """Matrix products count 2 per multiply-add, pointwise operations 1 per output element, reductions 1 per
    input element; copies and fills are data movement, not arithmetic."""
    import torch

    from benchmarks.roofline import count_flops

    a, b, c = torch.ones(4, 5), torch.ones(5, 6), torch.ones(4, 6)
    assert count_flops(lambda: torch.mm(a, b)) == 2 * 4 * 5 * 6
    assert count_flops(lambda: torch.addcmul(c, c, c)) == 24
    assert count_flops(lambda: (c * 2).sqrt()) == 48
    assert count_flops(lambda: c.sum()) == 24
    assert count_flops(lambda: (c.clone(), c.fill_(1.0), torch.zeros_like(c))) == 0
    assert count_flops(lambda: torch.mm(a, b), repeat=3) == 240  # per call


def test_update_flops_is_per_member_and_follows_the_rules_arithmetic():
    """One member's operations do not depend on how many members share the step, and a rule with more state
    does more arithmetic per update (vSGD-l's four running averages against AdaGrad's one, against SGD's none)."""
    from benchmarks.roofline import update_flops

    two, three = (update_flops("adagrad", SPEC, K=K, steps=8) for K in (2, 3))
    assert abs(two - three) <= 1e-6 * two
    sgd, adagrad, vsgd = (update_flops(r, SPEC, steps=8) for r in ("sgd", "adagrad", "vsgd_l"))
    P = SPEC.n_params
    assert 2 * P <= sgd < adagrad < vsgd  # a forward product is 2 per weight already
    assert vsgd - adagrad >= 5 * P  # each running average is at least a multiply and an add per parameter


def test_roofline_row_takes_the_nearer_ceiling():
    """An update cannot take less than max(bytes / bandwidth, flops / peak): the fraction of the roofline is the
    larger fraction, and ``bound`` names the ceiling that an intensity past the ridge point hits."""
    from benchmarks.roofline import roofline_row

    bw = {"dram": 20e9, "cache": 80e9}
    bytes_ = update_bytes(get_rule("adagrad"), MLPSpec(layers=(784, 10), loss="cross_entropy"))["total"]
    for flops, bound in ((0.5 * bytes_, "memory"), (40.0 * bytes_, "compute")):  # ridge: 100e9 / 80e9 = 1.25 per byte
        r = roofline_row("cpu", "m0", "adagrad", 1, 54, 1000.0, bw, flops=flops, peak=100e9)
        assert r["limit"] == "cache" and r["nearer_ceiling"] == bound
        assert r["fraction_of_roofline"] == max(r["fraction_of_limit"], r["fraction_of_compute"])
        assert r["fraction_of_compute"] == round(1000.0 * flops / 100e9, 3)
    r = roofline_row("cpu", "m0", "adagrad", 1, 54, 1000.0, bw)  # no peak measured: the memory ceiling only
    assert r["fraction_of_compute"] == "" and r["fraction_of_roofline"] == r["fraction_of_limit"]
