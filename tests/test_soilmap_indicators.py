"""SOC stock and available water capacity with Monte Carlo intervals: hand-computed cases
from the published equations, laziness, the correlation assumption."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from hypothesis import given
from hypothesis import strategies as st

from cup4soil import soilmap
from cup4soil.errors import ParameterError
from cup4soil.soilmap import kernels

from helpers import raise_if_dask_computes


def _maps(values: dict[str, tuple[float, float, float]], shape=(6, 7)) -> xr.Dataset:
    out = {}
    for p, qs in values.items():
        for stat, v in zip(("Q0.05", "Q0.5", "Q0.95"), qs, strict=True):
            out[soilmap.layer_name(p, stat)] = (("y", "x"), np.full(shape, v, np.float32))
    ds = xr.Dataset(out, coords={"y": np.arange(shape[0]), "x": np.arange(shape[1])})
    return ds.chunk({"y": 3, "x": 4}).assign_attrs(time_start="2020-01-01", time_end="2020-12-31")


def test_soc_stock_by_hand():
    # 15 g/kg SOC, 1.3 kg/dm³, 30 cm, no stones: 15 * 1.3 * 30 * 0.1 = 58.5 t/ha
    assert kernels.soc_stock(15.0, 1.3) == pytest.approx(58.5)
    assert kernels.soc_stock(15.0, 1.3, coarse=0.2) == pytest.approx(46.8)
    maps = _maps({"soc": (120, 150, 190), "bdod": (120, 130, 140)})
    with raise_if_dask_computes():
        como = soilmap.soc_stock(maps, correlation="comonotone")
        ind = soilmap.soc_stock(maps, correlation="independent")
        stones = soilmap.soc_stock(maps, coarse=0.2)
    c = como.compute()
    # comonotone: the stock's quantiles are the products of the inputs' quantiles
    for stat, s, b in (("Q0.05", 12, 1.2), ("Q0.5", 15, 1.3), ("Q0.95", 19, 1.4)):
        np.testing.assert_allclose(c[f"socstock_0-30cm_{stat}"].values, s * b * 3, rtol=0.02)
    i = ind.compute()
    assert float(i["socstock_0-30cm_Q0.5"][0, 0]) == pytest.approx(58.5, rel=0.02)
    w_ind = float(i["socstock_0-30cm_Q0.95"][0, 0] - i["socstock_0-30cm_Q0.05"][0, 0])
    w_com = float(c["socstock_0-30cm_Q0.95"][0, 0] - c["socstock_0-30cm_Q0.05"][0, 0])
    assert w_ind < w_com
    # first-order error propagation (independent) agrees within 10 % here
    rel = np.hypot((19 - 12) / 2 / 15, (1.4 - 1.2) / 2 / 1.3)
    assert w_ind == pytest.approx(2 * rel * 58.5, rel=0.1)
    np.testing.assert_allclose(stones.compute()["socstock_0-30cm_Q0.5"].values,
                               0.8 * i["socstock_0-30cm_Q0.5"].values, rtol=1e-6)
    a = c["socstock_0-30cm_Q0.5"].attrs
    assert a["units"] == "t/ha" and a["coarse_fragments"].startswith("0")
    assert c.attrs["time_start"] == "2020-01-01"
    with pytest.raises(ParameterError, match="correlation"):
        soilmap.soc_stock(maps, correlation="perfect")
    with pytest.raises(ParameterError, match="lack bdod"):
        soilmap.soc_stock(maps.drop_vars("bdod_0-30cm_Q0.5"))


def test_saxton_rawls_by_hand():
    # loam: sand 0.40, clay 0.20, OM 2.5 % -- eqs. 1 and 2 of Saxton & Rawls (2006) by hand:
    # θ1500t = 0.13774, θ1500 = 0.137024; θ33t = 0.29376, θ33 = 0.279611
    th1500, th33, aw = kernels.awc_saxton_rawls(0.40, 0.20, 2.5)
    assert th1500 == pytest.approx(0.137024, abs=1e-6)
    assert th33 == pytest.approx(0.279611, abs=1e-6)
    assert aw == pytest.approx(0.142587, abs=1e-6)
    # sand holds less water than loam (the paper's texture-class table: ~0.05 vs ~0.14)
    assert kernels.awc_saxton_rawls(0.88, 0.05, 0.5)[2] < 0.08


def test_awc_map():
    # loam with 14.5 g/kg SOC: OM = 1.45 % * 1.724 = 2.5 %
    maps = _maps({"sand": (400, 400, 400), "clay": (200, 200, 200), "soc": (145, 145, 145)})
    out = soilmap.awc(maps).compute()
    np.testing.assert_allclose(out["awc_0-30cm_Q0.5"].values, 0.142587 * 300, rtol=1e-3)
    vol = soilmap.awc(maps, units="%").compute()
    np.testing.assert_allclose(vol["awc_0-30cm_Q0.05"].values, 14.2587, rtol=1e-3)
    wide = _maps({"sand": (300, 400, 500), "clay": (150, 200, 250), "soc": (100, 145, 200)})
    w = soilmap.awc(wide).compute()
    assert (w["awc_0-30cm_Q0.05"] < w["awc_0-30cm_Q0.5"]).all()
    assert (w["awc_0-30cm_Q0.5"] < w["awc_0-30cm_Q0.95"]).all()


@given(st.floats(0.0, 100), st.floats(0.01, 50), st.floats(0.01, 50),
       st.floats(0.001, 0.999))
def test_two_piece_normal_hits_the_three_quantiles(med, dlo, dhi, u):
    q05, q95 = med - dlo, med + dhi
    for p, want in ((0.05, q05), (0.5, med), (0.95, q95)):
        assert kernels.quantile_function(p, q05, med, q95) == pytest.approx(want, abs=1e-9)
    # monotone in u
    v = kernels.quantile_function(np.array([u / 2, u]), q05, med, q95)
    assert v[0] <= v[1]
