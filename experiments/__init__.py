"""The reproduction harness's lock-step MLP ensembles: data, the ensemble MLP and trainer, the runner, the store.

Importing the harness registers the paper's baselines in ``vsgd.core.REGISTRY`` (the library ``vsgd`` itself
never imports the harness, so its registry holds only vSGD's rules until ``baselines`` is imported)."""

import baselines  # noqa: F401  (registers sgd, adagrad, almeida, amari, smd)
