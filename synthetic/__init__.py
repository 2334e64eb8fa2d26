"""The synthetic studies: small problems whose answer is known, vectorised over independent runs.

* ``quadratic``: paper 1's noisy quadratic (Fig. 2, Supp. Figs. 1-2);
* ``suite_1d``: paper 2's 1-D test-function suite (Figs. 5-6); ``fd_diagnostics``: vSGD-fd's diagnostics on it;
* ``paper2``: paper 2's minibatch figures (Figs. 1-2);
* ``unit_suite``: the unit tests for stochastic optimization (Schaul, Antonoglou & Silver 2014);
* ``c_sensitivity``: Supp. Fig. 9's XOR MLPs (through the ensemble trainer of ``experiments``).

Layer: above ``experiments`` (they use its store, data and trainer), below ``analysis`` (which draws their
figures); ``experiments.run`` reaches them only by the ``entry:`` strings of ``conf/experiment/*.yaml``.
Each writes under ``<store>/synthetic/``."""
