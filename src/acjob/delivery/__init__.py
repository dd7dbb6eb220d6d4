"""Delivery channels: how a final job's result is pushed to its client (mail, webhook)."""

from .base import Channel

__all__ = ["Channel"]
