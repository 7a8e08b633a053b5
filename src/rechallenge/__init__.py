"""rechallenge: Bayesian hierarchical prognostic model for ICI rechallenge.

The package turns the published evidence in two reviews into informative priors
(:mod:`rechallenge.evidence`, :mod:`rechallenge.pooling`, :mod:`rechallenge.priors`),
and, in later modules, fits local cohorts and predicts PFS2 and irAE recurrence per
patient with credible intervals.

Importing the package is cheap: PyMC is imported only by the modules that build or
fit a model.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
