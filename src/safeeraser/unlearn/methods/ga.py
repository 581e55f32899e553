"""Gradient Ascent: push the harmful answers' likelihood down. Nothing holds the rest in place."""

from safeeraser.unlearn.methods.base import Method, nll_term

METHOD = Method("ga", {"forget": nll_term("forget", -1.0)}, pd_weight=0.5)
