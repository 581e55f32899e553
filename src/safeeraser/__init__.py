"""safeeraser: safety unlearning for multimodal LLMs (SafeEraser benchmark, Prompt-Decouple loss, SARR)."""

__version__ = "0.1.0"
