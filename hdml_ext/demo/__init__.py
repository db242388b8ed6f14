"""`hdml demo`: HDML end to end on scikit-learn's digits, on a CPU, in a few minutes
(docs/demo.md says what it runs and why the graph does not help on the digits)."""

from .config import DEMO_OVERRIDES, QUICK_OVERRIDES, DemoSettings, demo_overrides, demo_settings
from .report import format_table
from .run import run_demo

__all__ = [
    "DEMO_OVERRIDES",
    "QUICK_OVERRIDES",
    "DemoSettings",
    "demo_overrides",
    "demo_settings",
    "format_table",
    "run_demo",
]
