"""Checksums of every variable of the sample pipeline's products (bit-identity across refactors).

``python tests/product_checksums.py`` prints them as JSON; ``tests/data/product-checksums.json``
holds the values recorded before the layout change (issue 11), and
``test_products_are_bit_identical`` recomputes and compares them.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import xarray as xr


def _digest(var: xr.DataArray) -> str:
    values = np.ascontiguousarray(var.values)
    h = hashlib.sha256()
    h.update(f"{values.dtype.str}{values.shape}".encode())
    h.update(values.tobytes())
    return h.hexdigest()[:16]


def product_checksums(root: Path) -> dict[str, str]:
    """Run the demo's chain on a small sample archive; one checksum per product variable."""
    import cup4soil
    from cup4soil import masks, models, scmap
    from cup4soil.sample import make_catalog

    sample = make_catalog(root / "sample", size=80, scenes_per_year=8, seed=3)
    items = cup4soil.search(sample.bbox, sample.time_range, catalog=str(sample.catalog))
    out: dict[str, str] = {}
    for engine in ("odc-stac", "stackstac"):
        cube = cup4soil.load_s2(items, resolution=20.0, engine=engine)
        products = {
            "vpc": masks.valid_pixel_count(cube).to_dataset(),
            "composite": scmap.composite(
                cube, 0.137, worldcover=sample.truth_on("worldcover", cube.odc.geobox)),
            "by_year": scmap.composite(cube, 0.137, by="year", products=["VPC", "BSC", "SRC"]),
        }
        for name, ds in products.items():
            ds = ds.compute()
            for var in sorted(ds.data_vars):
                out[f"{engine}/{name}/{var}"] = _digest(ds[var])
        if engine == "odc-stac":
            comp = products["composite"].compute()
            samples = sample.soil_samples(150, seed=3)
            with warnings.catch_warnings():
                # missing="drop" says how many samples fall on pixels without SRC (9)
                warnings.filterwarnings("ignore", r"\d+ of 150 samples dropped", UserWarning)
                model = models.train(samples, "soc", covariates=comp[["SRC"]],
                                     folds="400 m", crs=sample.crs, missing="drop",
                                     random_state=3)
            soc = model.predict(comp[["SRC"]]).compute()
            for var in sorted(soc.data_vars):
                out[f"soc/{var}"] = _digest(soc[var])
    return out


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        json.dump(product_checksums(Path(tmp)), sys.stdout, indent=1, sort_keys=True)
        print()
