"""Preference Optimization (published as IDK): answer harmful prompts with a refusal, keep retain."""

from safeeraser.unlearn.methods.base import Method


def loss(f, batches, settings):
    refusal = f.nll(batches["refusal"])
    retain = f.nll(batches["retain"])
    return {"loss": refusal + retain, "refusal_nll": refusal, "retain_nll": retain}


METHOD = Method("po", ("refusal", "retain"), loss, pd_weight=1.0)
