"""Cross-validated skill of cup4soil's default QRF on the real soil data sets.

LimeSoDa BB.250 and B.204 with the paper's 10 folds (all features but coordinates), and
Meuse with spatially blocked folds (400 m). Prints MEC, RMSE, ME, CCC, PICP90 and n in
SoilGrids units (SOC dg/kg, pH x10, clay g/kg). Run: ``python benchmarks/soil_models.py``
(``CUP4SOIL_SHARED_DATA`` if ``../shared/data`` is elsewhere).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from cup4soil import models

DATA = Path(os.environ.get("CUP4SOIL_SHARED_DATA",
                           Path(__file__).resolve().parents[2] / "shared" / "data"))


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="a tiny run (tests/test_benchmarks.py)")
    args = ap.parse_args()
    rows = []
    for name in (("BB.250",) if args.smoke else ("BB.250", "B.204")):
        t = pd.read_csv(DATA / "soil/limesoda" / f"{name}.csv")
        feats = [c for c in t.columns if not c.endswith("_target") and c != "fold"
                 and not c.startswith(("x_", "y_"))]
        for target, unit in (("SOC_target", "%"), ("pH_target", "pH"), ("Clay_target", "%")):
            m = models.train(t, target, unit=unit, features=feats, folds="fold")
            rows.append((name, m.property_name, m.units, m.card["folds"], m.cv))
    meuse = pd.read_csv(DATA / "soil/meuse/meuse.csv")
    meuse["log_zinc"] = np.log(meuse["zinc"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for target, unit in (("om", "%"), ("log_zinc", "ln(mg/kg)")):
            m = models.train(meuse, target, unit=unit, features=["dist", "elev", "ffreq", "soil"],
                             folds="400 m", crs="EPSG:28992")
            rows.append(("Meuse", m.property_name, m.units, m.card["folds"], m.cv))
    print(f"{'data':<7} {'property':<9} {'units':<10} {'MEC':>6} {'RMSE':>7} {'ME':>7} "
          f"{'CCC':>6} {'PICP90':>7} {'n':>4}  folds")
    for data, prop, units, folds, cv in rows:
        print(f"{data:<7} {prop:<9} {units:<10} {cv['MEC']:>6.2f} {cv['RMSE']:>7.2f} "
              f"{cv['ME']:>7.2f} {cv['CCC']:>6.2f} {cv['PICP90']:>7.2f} {cv['n']:>4}  {folds}")


if __name__ == "__main__":
    main()
