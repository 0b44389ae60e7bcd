"""The ``cup4soil`` command line, one module per command group. No stage imports it."""

from __future__ import annotations

from .demo import DemoReport, run_demo
from .main import main

__all__ = ["DemoReport", "main", "run_demo"]
