"""vsgd: tuning-free SGD with adaptive learning rates (Schaul, Zhang & LeCun 2013; Schaul & LeCun 2013)."""

__version__ = "0.1.0"

from vsgd.core import REGISTRY, HyperParam, Rule, get_rule, register
from vsgd.frontend import RuleOptimizer

__all__ = ["REGISTRY", "HyperParam", "Rule", "RuleOptimizer", "get_rule", "register"]
from vsgd import fd  # noqa: F401  (registers vsgd_fd)
from vsgd.fd_optim import PerSampleClosure, VSGDfd

__all__ += ["PerSampleClosure", "VSGDfd"]
