"""Irodori backend: the model, the inference pipeline, the ZeroMQ service and the CLI."""

__version__ = "0.1.0"
