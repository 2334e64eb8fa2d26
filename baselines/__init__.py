"""The paper's baselines (paper 1 Sec. 2, Sec. 7, App. C), written with the same rule interface as vSGD."""

from baselines.adagrad import Adagrad
from baselines.almeida import Almeida
from baselines.amari import Amari
from baselines.sgd import SGD
from baselines.smd import SMD

__all__ = ["SGD", "SMD", "Adagrad", "Almeida", "Amari"]
