"""acjob's version, in a module of its own so the daemon can name it without importing
the client (which ``acjob/__init__`` does)."""

from __future__ import annotations

__version__ = "0.1.0"
