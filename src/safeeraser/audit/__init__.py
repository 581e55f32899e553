"""`safeeraser audit`: is the harmful capability gone, or only hidden?

Stress tests of one unlearned run, each measured with the benchmark's own metrics and judge:
quantization (``quantize``), relearning (``relearn``), input attacks (``attacks``) and
membership inference (``mia``); ``run`` runs them attack by attack and writes the audit.
"""
