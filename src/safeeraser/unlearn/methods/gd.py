"""Gradient Difference: gradient ascent on forget plus ordinary training on retain."""

from safeeraser.unlearn.methods.base import Method, nll_term

METHOD = Method("gd", {"forget": nll_term("forget", -1.0), "retain": nll_term("retain")}, pd_weight=0.5)
