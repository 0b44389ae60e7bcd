"""The ``cup4soil`` command line. No stage imports it."""

from __future__ import annotations

from .main import main

__all__ = ["main"]
