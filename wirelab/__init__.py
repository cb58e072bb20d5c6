"""wirelab: a distributed load-testing lab for real-time protocols."""

__version__ = "0.1.0"
