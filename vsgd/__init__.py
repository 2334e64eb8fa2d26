"""vsgd: tuning-free SGD with adaptive learning rates (Schaul, Zhang & LeCun 2013; Schaul & LeCun 2013)."""

__version__ = "0.1.0"

from vsgd.core import REGISTRY, HyperParam, Rule, get_rule, register
from vsgd.frontend import RuleOptimizer
from vsgd import vsgd as _vsgd_rules  # noqa: F401  (registers vsgd_l, vsgd_b, vsgd_g)

__all__ = ["REGISTRY", "HyperParam", "Rule", "RuleOptimizer", "get_rule", "register"]
