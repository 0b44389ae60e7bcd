"""The notebooks are saved with their outputs (a reader on a code host sees the figures),
and those outputs are the ones they produce: each is executed again and its cells' output
types and figure counts compared with the saved ones, so saved figures cannot go stale.

To update a notebook's saved outputs after changing it, execute it in place, e.g.
``jupyter nbconvert --to notebook --execute --inplace notebooks/NAME.ipynb``.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def _code(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


def _signature(nb) -> list[list[tuple[str, str, int]]]:
    """Per code cell: (output type, stream name, number of PNG figures) of each output.
    Consecutive outputs of one stream count as one: the kernel may send a cell's prints
    in one message or in several, depending on timing."""
    out = []
    for c in _code(nb):
        cell: list[tuple[str, str, int]] = []
        for o in c.get("outputs", []):
            sig = (o.output_type, o.get("name", ""), int("image/png" in o.get("data", {})))
            if not (o.output_type == "stream" and cell and cell[-1] == sig):
                cell.append(sig)
        out.append(cell)
    return out


def _text(nb) -> str:
    outs = [o for c in _code(nb) for o in c.get("outputs", [])]
    return "\n".join(o.get("text", "") if o.output_type == "stream"
                     else o.get("data", {}).get("text/plain", "") for o in outs)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_saved_executed_with_figures(path):
    nb = nbformat.read(path, as_version=4)
    code = _code(nb)
    # executed top to bottom in one kernel, every cell with its outputs
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    assert sum(n for cell in _signature(nb) for _, _, n in cell) >= 1
    last = nb.cells[-1]
    assert last.cell_type == "markdown" and "What to change for real data" in last.source


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """One folder for all notebooks: those using the same sample archive share it."""
    return tmp_path_factory.mktemp("notebooks")


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_outputs_are_those_of_its_execution(path, workdir, monkeypatch):
    monkeypatch.setenv("CUP4SOIL_NOTEBOOK_DIR", str(workdir))
    saved = nbformat.read(path, as_version=4)
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(workdir)}}).execute()
    assert _signature(nb) == _signature(saved)
    assert str(workdir) in _text(nb)  # the archive was written where the test said
    CHECKS[path.stem](_text(nb))


def _quickstart(text: str) -> None:
    found, in_catalog = map(int, re.search(r"(\d+) items; (\d+) in the catalog", text).groups())
    assert 0 < found < in_catalog  # the duplicate delivery and the cloudy scenes are gone
    assert "'04.00'" in text  # the last scenes (2022) carry the 04.00 baseline
    assert "B11" in text and "sza" in text  # the cube's repr: bands and sun zenith
    assert int(re.search(r"(\d+) tasks", text).group(1)) > 0
    assert re.search(r"True \d+ regions", text)  # the product is complete
    # Bare soil gets darker with more SOC: the composite shows the hidden truth.
    corr = float(re.search(r"hidden ln\(SOC\): (-?[\d.]+)", text).group(1))
    assert corr < -0.5


def _bare_soil(text: str) -> None:
    assert "year: 5" in text  # the yearly product, 2018-2022, read back lazily
    counts = re.findall(r"^(\d)\s+(\d+)$", text, re.M)  # fields with n bare years
    assert counts and sum(int(n) for _, n in counts) > 10
    assert any(int(k) > 0 for k, _ in counts)


def _soil_maps(text: str) -> None:
    # the table of the three sets
    set1, set2, set3 = map(float, re.search(r"^soc\s+(-?[\d.]+)\s+(-?[\d.]+)\s+(-?[\d.]+)$",
                                            text, re.M).groups())
    assert max(set2, set3) > set1 + 0.2  # reflectance carries SOC: sets 2/3 beat set 1
    assert 20 < float(re.search(r"median SOC stock: ([\d.]+) t/ha", text).group(1)) < 200
    assert 0.5 < float(re.search(r"PICP90\s+([\d.]+)", text).group(1)) <= 1


def _scale_out(text: str) -> None:
    n = int(re.search(r"(\d+) tiles of 1km at 20 m", text).group(1))
    assert n >= 4  # the sample spans several EEA 1 km cells
    assert re.search(r"dashboard: http://127\.0\.0\.1:\d+/status", text)
    assert "stopped after 2 tiles" in text
    assert f"status: 2 done, 0 failed, {n - 2} left" in text  # stopped: the rest never started
    assert f"computed now: {n - 2} tiles; complete: True" in text  # resumed: only the rest
    assert f"status: {n} done, 0 failed, 0 left, complete" in text
    assert f"tiles: {n}/{n} done" in text  # the progress lines
    sizes = re.search(r"(\{[^{}]*\}) CRS EPSG:3035", text).group(1)
    y, x = (int(re.search(rf"'{d}': (\d+)", sizes).group(1)) for d in ("y", "x"))
    assert y % 50 == 0 and x % 50 == 0 and y * x >= n * 50 * 50  # whole 1 km tiles at 20 m


def _openeo(text: str) -> None:
    assert re.search(r"\d+ nodes: \[.*'load_collection'", text)
    rows = re.findall(r"^(\w+)\s+(True|False)\s+([\d.e+-]+)$", text, re.M)
    assert {r[0] for r in rows} >= {"SRC", "VPC", "BSC", "BSF", "MASK"}
    assert all(same == "True" for _, same, _ in rows)  # NaN where NaN
    assert all(float(d) < 1e-3 for _, _, d in rows)  # the graph computes what SCMaP does
    assert "MASK 2 only where" in text  # the documented differences from DLR's graph


CHECKS = {"01-quickstart": _quickstart, "02-oderbruch-bare-soil": _bare_soil,
          "03-soil-maps": _soil_maps, "04-scale-out": _scale_out, "05-openeo": _openeo}
