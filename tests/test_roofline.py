"""benchmarks/roofline.py's byte counting: parameters and each state tensor, read and written."""

from benchmarks.roofline import update_bytes
from experiments.mlp import MLPSpec
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
