"""Gradient Ascent: push the harmful answers' likelihood down. Nothing holds the rest in place."""

from safeeraser.unlearn.methods.base import Method


def loss(f, batches, settings):
    forget = f.nll(batches["forget"])
    return {"loss": -forget, "forget_nll": forget}


METHOD = Method("ga", ("forget",), loss, pd_weight=0.5)
