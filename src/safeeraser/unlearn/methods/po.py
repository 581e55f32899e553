"""Preference Optimization (published as IDK): answer harmful prompts with a refusal, keep retain."""

from safeeraser.unlearn.methods.base import Method, nll_term

METHOD = Method("po", {"refusal": nll_term("refusal"), "retain": nll_term("retain")}, pd_weight=1.0)
