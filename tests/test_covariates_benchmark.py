"""The covariates benchmark runs (its --smoke size) and finds identical results."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_covariates_benchmark_smoke(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "covariates.py"), "--smoke", "--data",
         str(tmp_path)], capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    # Both comparisons agree, and every part printed its figures side by side.
    assert out.count("identical: yes") == 3 and "NO" not in out
    for header in ("1. Sentinel-1 statistics", "2. cup4soil peak memory", "3. terrain"):
        assert header in out
    assert "speed-up" in out and "ratio T large / T small" in out
