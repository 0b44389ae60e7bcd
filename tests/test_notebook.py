"""The quick-start notebook is executed, so it cannot rot, and shows what it says it shows."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "01-quickstart.ipynb"


@pytest.mark.slow
def test_quickstart_notebook_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("CUP4SOIL_NOTEBOOK_DIR", str(tmp_path))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    outputs = [o for c in code for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "\n".join(o.get("text", "") if o.get("output_type") == "stream"
                     else o.get("data", {}).get("text/plain", "") for o in outputs)
    # The archive was written where the notebook was told, and searched.
    assert "SampleCatalog(" in text and str(tmp_path) in text
    found, in_catalog = map(int, re.search(r"(\d+) items; (\d+) in the catalog", text).groups())
    assert 0 < found < in_catalog  # the duplicate delivery and the cloudy scenes are gone
    assert "'04.00'" in text  # the last scenes (2022) carry the 04.00 baseline
    assert "B11" in text and "sza" in text  # the cube's repr: bands and sun zenith
    assert int(re.search(r"(\d+) tasks", text).group(1)) > 0
    # Bare soil gets darker with more SOC: the composite shows the hidden truth.
    corr = float(re.search(r"hidden ln\(SOC\): (-?[\d.]+)", text).group(1))
    assert corr < -0.5
    # One figure each: the false-colour scene and its SCL, the VPC map, the composites.
    figures = [sum("image/png" in o.get("data", {}) for o in c.get("outputs", []))
               for c in code]
    assert sum(figures) == 3 and max(figures) == 1
