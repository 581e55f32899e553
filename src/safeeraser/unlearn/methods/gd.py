"""Gradient Difference: gradient ascent on forget plus ordinary training on retain."""

from safeeraser.unlearn.methods.base import Method


def loss(f, batches, settings):
    forget = f.nll(batches["forget"])
    retain = f.nll(batches["retain"])
    return {"loss": -forget + retain, "forget_nll": forget, "retain_nll": retain}


METHOD = Method("gd", ("forget", "retain"), loss, pd_weight=0.5)
