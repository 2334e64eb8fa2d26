"""vsgd: tuning-free SGD with adaptive learning rates (Schaul, Zhang & LeCun 2013; Schaul & LeCun 2013)."""

__version__ = "0.1.0"

from vsgd import fd  # registers vsgd_fd  # noqa: F401
from vsgd.core import REGISTRY, HyperParam, Rule, get_rule, register
from vsgd.fd_optim import PerSampleClosure, VSGDfd
from vsgd.frontend import RuleOptimizer
from vsgd.vsgd import VSGD  # registers the rules vsgd_l, vsgd_b, vsgd_g

__all__ = [
           "REGISTRY",
           "VSGD",
           "HyperParam",
           "PerSampleClosure",
           "Rule",
           "RuleOptimizer",
           "VSGDfd",
           "get_rule",
           "register",
]
