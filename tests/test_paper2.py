"""Paper 2 Figs. 1-2 computations (synthetic.paper2)."""

import math

import numpy as np
import pytest

from synthetic import paper2


def test_reproduces_the_number_quoted_for_fig1():
    # paper 2 Fig. 1 caption: "the ratio is 0.02 for n = 100 (left plot, low noise)"
    rel = paper2.log_gain(100, sigma=0.1, p=1.0, rule="eq4") / 100 / paper2.log_gain(1, sigma=0.1, p=1.0, rule="eq4")
    assert rel == pytest.approx(math.log(1 + 100 / 0.01) / (100 * math.log(1 + 1 / 0.01)))
    assert rel == pytest.approx(0.02, abs=0.001)


@pytest.mark.parametrize("sigma", [0.1, 1.0])
@pytest.mark.parametrize("n", [1, 7, 30])
def test_optimal_rate_beats_every_fixed_rate_and_the_average_version(sigma, n):
    best = paper2.log_gain(n, sigma=sigma, p=0.1, rule="eq4")
    fixed = max(paper2.log_gain(n, sigma=sigma, p=0.1, rule="sgd", eta=e) for e in np.logspace(-2, 2, 40))
    avg = paper2.log_gain(n, sigma=sigma, p=0.1, rule="eq4_average")
    assert best >= fixed - 1e-12 and best >= avg - 1e-12


def test_dense_average_version_is_eq3():
    for n in (1, 5, 50):
        assert paper2.log_gain(n, sigma=0.5, p=1.0, rule="eq4_average") == pytest.approx(
            paper2.log_gain(n, sigma=0.5, p=1.0, rule="eq4"))
