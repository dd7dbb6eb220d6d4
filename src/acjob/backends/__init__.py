"""Compute backends: where jobs run. See :mod:`acjob.backends.base` for the contract."""

from ..model import Observation
from .base import Backend, load_backend

__all__ = ["Backend", "Observation", "load_backend"]
