"""Every script in benchmarks/ runs at a tiny size (``--smoke``), so none of them rots."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py"))


def test_there_are_benchmarks() -> None:
    assert len(BENCHMARKS) >= 6


@pytest.mark.slow
@pytest.mark.parametrize("script", BENCHMARKS, ids=lambda p: p.name)
def test_benchmark_runs_at_smoke_size(script: Path, tmp_path: Path) -> None:
    env = {**os.environ, "CUP4SOIL_BENCH_DATA": str(tmp_path / "data"), "PYTHONWARNINGS": ""}
    result = subprocess.run([sys.executable, str(script), "--smoke"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip(), "a benchmark prints its figures"
