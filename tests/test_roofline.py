"""benchmarks/roofline.py's byte counting: parameters and each state tensor, read and written."""

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
