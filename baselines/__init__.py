"""The paper's baselines (paper 1 Sec. 2, Sec. 7, App. C), written with the same rule interface as vSGD."""

from baselines.sgd import SGD

__all__ = ["SGD"]
