"""Compute backends: where jobs run. See :mod:`acjob.backends.base` for the contract."""

from .base import Backend, Observation, load_backend

__all__ = ["Backend", "Observation", "load_backend"]
