"""The stretch of each quicklook recorded in the product's attributes (issue 14 §8):
``quicklook.product(ds, prefix, record_in=...)`` and ``store.update_attrs``, on local disk
and on S3 (moto), Zarr v2 and v3; refusals of what cup4soil did not write or did not finish."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from PIL import Image

from cup4soil import quicklook, store
from cup4soil.errors import (
    IncompleteProductError,
    NotAProductError,
    ParameterError,
    ProductLockedError,
)
from cup4soil.products import writer
from cup4soil.products.layout import filesystem
from cup4soil.products.lease import Lease

from _store_writer import product as kill_test_product
from helpers import objects


def _soil_product() -> xr.Dataset:
    """A small soil map in SoilGrids naming plus BSF and MASK, 64 x 64 px, EPSG:32633."""
    ds = kill_test_product().isel(y=slice(0, 64), x=slice(0, 64)).compute()
    soc = (ds.soc + 2000.0).astype("float32")
    soc[:3, :] = np.nan  # nodata
    out = xr.Dataset(
        {"soc_0-30cm_Q0.5": soc.assign_attrs(units="dg/kg", long_name="SOC, median",
                                             conversion="x 10", depth="0-30cm"),
         "soc_0-30cm_Q0.05": (soc * 0.8).assign_attrs(units="dg/kg"),
         "soc_0-30cm_Q0.95": (soc * 1.3).assign_attrs(units="dg/kg"),
         "BSF": ((ds.soc + 1000.0) / 2000.0).astype("float32").assign_attrs(units="1"),
         "MASK": (ds["count"] % 4).astype("uint8").assign_attrs(
             nodata=0, flag_values=[1, 2, 3],
             flag_meanings="bare_soil permanently_vegetated other_surface")},
        coords=ds.coords, attrs={"title": "quicklook attrs test"})
    return out


def _write(base: str, options: dict | None, zarr_format: int, name: str = "p.zarr") -> str:
    url = f"{base}/{name}"
    store.write(_soil_product(), url, storage_options=options, zarr_format=zarr_format,
                chunks=32)
    return url


def _text(png: Path) -> dict[str, str]:
    with Image.open(png) as im:
        return dict(im.text)


@pytest.mark.parametrize("zarr_format", [3, 2])
def test_stretch_is_recorded_in_the_product_as_in_the_png(tmp_path, where, zarr_format):
    base, options = where
    url = _write(base, options, zarr_format)
    ds = store.open(url, storage_options=options).load()
    assert ds.encoding["source"].rstrip("/").endswith("p.zarr")  # what record_in=True uses
    before = {n: v.values.copy() for n, v in ds.data_vars.items()}
    pngs = quicklook.product(ds, tmp_path / "ql" / "p", record_in=True,
                             storage_options=options)
    assert len(pngs) == 4  # BSF, MASK, the SOC median and its interval width

    back = store.open(url, storage_options=options)  # opens: still complete
    assert store.info(url, storage_options=options)["complete"]
    record = json.loads(back.attrs["quicklooks"])
    assert sorted(record) == sorted(p.name for p in pngs)
    for png in pngs:
        text = _text(png)
        entry = record[png.name]
        assert entry["stretch"] == json.loads(text["stretch"])
        assert (entry["Title"], entry["units"], entry["CRS"]) == (
            text["Title"], text["units"], text["CRS"])
    width = record["p-soc_0-30cm-width90.png"]
    assert width["variables"] == ["soc_0-30cm_Q0.05", "soc_0-30cm_Q0.95"]
    # a variable drawn alone carries its PNG's stretch text, byte for byte
    median = back["soc_0-30cm_Q0.5"].attrs
    assert median["quicklook_png"] == "p-soc_0-30cm_Q0.5.png"
    assert median["quicklook_stretch"] == _text(pngs[2])["stretch"]
    assert json.loads(back["MASK"].attrs["quicklook_stretch"])["classes"]["1"] == "bare soil"
    assert "quicklook_stretch" not in back["soc_0-30cm_Q0.05"].attrs  # drawn only in a width
    # nothing else changed: data, CF and SoilGrids attributes, provenance
    for name, values in before.items():
        np.testing.assert_array_equal(back[name].values, values)
        assert {k: v for k, v in back[name].attrs.items()
                if not k.startswith("quicklook")} == ds[name].attrs
    assert {k: v for k, v in back.attrs.items() if k != "quicklooks"} == ds.attrs
    assert back.odc.geobox == ds.odc.geobox
    # the product is still cup4soil's, complete: resuming it computes nothing
    assert store.write(_soil_product(), url, storage_options=options, mode="resume",
                       zarr_format=zarr_format, chunks=32).computed == 0


def test_drawing_again_keeps_other_pngs_and_replaces_the_same(tmp_path):
    url = _write(str(tmp_path), None, 3)
    ds = store.open(url)
    quicklook.product(ds[["BSF"]], tmp_path / "a", record_in=url)
    quicklook.product(ds[["BSF", "MASK"]], tmp_path / "b", record_in=url)
    quicklook.product(ds[["BSF"]], tmp_path / "b", record_in=url)
    back = store.open(url)
    assert sorted(json.loads(back.attrs["quicklooks"])) == ["a-BSF.png", "b-BSF.png",
                                                            "b-MASK.png"]
    assert back["BSF"].attrs["quicklook_png"] == "b-BSF.png"  # the latest drawing


@pytest.mark.parametrize("zarr_format", [3, 2])
def test_consolidated_metadata_is_updated_too(tmp_path, zarr_format):
    """cup4soil writes products without consolidated metadata; one consolidated later (by
    zarr.consolidate_metadata) is kept consistent, so xarray's default open agrees."""
    import zarr

    url = _write(str(tmp_path), None, zarr_format)
    with warnings.catch_warnings():  # zarr: consolidated v3 metadata is not in the spec yet
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(url, zarr_format=zarr_format)
    quicklook.product(store.open(url), tmp_path / "p", record_in=url)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = xr.open_zarr(url, consolidated=True)
    assert plain.attrs["quicklooks"] == store.open(url).attrs["quicklooks"]
    assert plain["BSF"].attrs["quicklook_png"] == "p-BSF.png"


def test_update_attrs_appends_under_the_lease_and_refuses_what_would_lie(tmp_path):
    url = _write(str(tmp_path), None, 3)
    store.update_attrs(url, {"history": "made"}, variables={"BSF": {"comment": "test"}})
    store.update_attrs(url, {"history": lambda h: f"{h}\nquicklooks drawn"})
    back = store.open(url)
    assert back.attrs["history"] == "made\nquicklooks drawn"
    assert back["BSF"].attrs["comment"] == "test"
    snapshot = objects(url, None)
    refused = [
        ({"units": "%"}, None, "how the\\s+values are decoded"),
        (None, {"soc_0-30cm_Q0.5": {"_FillValue": 0}}, "_FillValue"),
        (None, {"soc_0-30cm_Q0.5": {"conversion": "x 1"}}, "conversion"),
        ({"cup4soil_written": "yesterday"}, None, "cup4soil_written"),
        ({"aws_secret_access_key": "x"}, None, "credential"),
        ({"bands": {"B02", "B03"}}, None, "cannot be stored as JSON"),
        ({"mean": float("nan")}, None, "cannot be stored as JSON"),
        (None, {"nope": {"a": 1}}, "no data variable 'nope'"),
        (None, {"x": {"a": 1}}, "no data variable 'x'"),  # a coordinate
        (None, {"spatial_ref": {"a": 1}}, "no data variable"),  # the grid mapping
    ]
    for attrs, variables, match in refused:
        with pytest.raises(ParameterError, match=match):
            store.update_attrs(url, attrs, variables=variables)
    assert objects(url, None) == snapshot  # a refusal changes nothing


def test_a_writer_holding_the_lease_is_waited_for(tmp_path):
    url = _write(str(tmp_path), None, 3)
    fs, root = filesystem(url, None)
    with (Lease(fs, f"{root}.cup4soil/lease.json", url),
          pytest.raises(ProductLockedError, match="being written by another writer")):
        store.update_attrs(url, {"comment": "x"})
    store.update_attrs(url, {"comment": "x"})
    assert store.open(url).attrs["comment"] == "x"


@pytest.mark.parametrize("zarr_format", [3, 2])
def test_a_crash_between_documents_leaves_a_product_that_opens(tmp_path, monkeypatch,
                                                               zarr_format):
    url = _write(str(tmp_path), None, zarr_format)
    real = writer._replace_document
    calls: list[str] = []

    def crash_after_first(fs, path, data, prefix):
        if calls:
            raise KeyboardInterrupt  # the process stops between two documents
        calls.append(path)
        real(fs, path, data, prefix)

    monkeypatch.setattr(writer, "_replace_document", crash_after_first)
    with pytest.raises(KeyboardInterrupt):
        quicklook.product(store.open(url), tmp_path / "p", record_in=url)
    monkeypatch.undo()
    back = store.open(url)  # some documents new, the rest old: complete, opens
    assert "quicklook_png" in back["BSF"].attrs and "quicklooks" not in back.attrs
    np.testing.assert_array_equal(back.BSF.values, _soil_product().BSF.values)
    quicklook.product(back, tmp_path / "p", record_in=True)  # the lease was released
    assert "quicklooks" in store.open(url).attrs


def test_a_temporary_document_left_by_a_kill_is_outside_the_store_and_cleared(tmp_path):
    """On local disk each document is written to a temporary file in the sidecar, then
    renamed: one left by a kill mid-write is outside the Zarr hierarchy (readers do not
    warn, -W error) and the next update removes it."""
    url = _write(str(tmp_path), None, 3)
    side = Path(f"{url}{store.SIDECAR}")
    stale = side / f"update-attrs-{'0' * 32}.tmp"
    stale.write_text('{"attributes": {')  # torn
    other = side / "notes.tmp"  # not ours: kept
    other.write_text("x")
    assert store.open(url).attrs["title"] == "quicklook attrs test"
    store.update_attrs(url, {"comment": "x"})
    assert not stale.exists() and other.exists()
    assert not list(side.glob("update-attrs-*"))
    assert store.write(_soil_product(), url, mode="w", chunks=32).computed == 4


def test_a_zarr_store_cup4soil_did_not_write_is_refused(where, tmp_path):
    base, options = where
    url = f"{base}/plain.zarr"
    ds = _soil_product()
    ds.to_zarr(url, storage_options=options, consolidated=False, zarr_format=3)
    snapshot = objects(url, options)
    with pytest.raises(NotAProductError, match=r"cup4soil did not write.*records attributes "
                                               r"only in products it wrote"):
        store.update_attrs(url, {"comment": "x"}, storage_options=options)
    with pytest.raises(NotAProductError, match="cup4soil did not write"):
        quicklook.product(ds, tmp_path / "q", record_in=url, storage_options=options)
    assert objects(url, options) == snapshot
    assert not list(tmp_path.glob("q-*.png"))  # refused before anything was drawn


def test_a_half_written_product_is_refused(where, tmp_path):
    base, options = where
    url = _write(base, options, 3)
    fs, root = filesystem(url, options)
    fs.rm_file(f"{root}.cup4soil/complete.json")  # the write stopped before its marker
    snapshot = objects(url, options)
    ds = store.open(url, storage_options=options, allow_incomplete=True)
    with pytest.raises(IncompleteProductError, match=r"incomplete.*mode='resume'"):
        store.update_attrs(url, {"comment": "x"}, storage_options=options)
    with pytest.raises(IncompleteProductError, match="records attributes only in complete"):
        quicklook.product(ds, tmp_path / "q", record_in=True, storage_options=options)
    assert objects(url, options) == snapshot
    assert not list(tmp_path.glob("q-*.png"))


def test_a_missing_path_and_a_dataset_of_another_grid_are_refused(tmp_path):
    missing = str(tmp_path / "absent.zarr")
    with pytest.raises(ParameterError, match=r"no product at .*absent\.zarr"):
        store.update_attrs(missing, {"comment": "x"})
    ds = _soil_product()
    with pytest.raises(ParameterError, match="no product at"):
        quicklook.product(ds, tmp_path / "q", record_in=missing)
    with pytest.raises(ParameterError, match=r"ds.encoding\['source'\]"):
        quicklook.product(ds, tmp_path / "q", record_in=True)  # not opened from a product
    url = _write(str(tmp_path), None, 3)
    with pytest.raises(ParameterError, match="another grid"):
        quicklook.product(ds.isel(x=slice(0, 40)), tmp_path / "q", record_in=url)
    with pytest.raises(ParameterError, match="no variable other"):
        quicklook.product(ds.rename(BSF="other_Q0.5", **{"soc_0-30cm_Q0.05": "other_Q0.05",
                                                        "soc_0-30cm_Q0.95": "other_Q0.95"}),
                          tmp_path / "q", record_in=url)
    assert not list(tmp_path.glob("q-*.png"))
    assert "quicklooks" not in store.open(url).attrs
