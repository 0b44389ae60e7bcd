"""Cross-validated skill of cup4soil's default QRF on the real soil data sets.

LimeSoDa BB.250 and B.204 with the paper's 10 folds (all features but coordinates), and
Meuse with spatially blocked folds (400 m) and random 10-fold. Prints MEC, RMSE, ME, CCC,
PICP90 (after conformal calibration) and n in SoilGrids units (SOC dg/kg, pH x10, clay
g/kg), beside PICP90 before calibration, the mean 90 % interval width before/after, and the
published tuned-RF R² of the LimeSoDa paper (Schmidinger et al. 2025). Run:
``python benchmarks/soil_models.py`` (``CUP4SOIL_SHARED_DATA`` if ``../shared/data`` is elsewhere).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from cup4soil import models

#: Published R² of the tuned random forest (LimeSoDa paper), per data set and property.
PAPER_RF = {("BB.250", "soc"): 0.891, ("BB.250", "phh2o"): 0.652, ("BB.250", "clay"): 0.699,
            ("B.204", "soc"): 0.021, ("B.204", "phh2o"): 0.240, ("B.204", "clay"): 0.446}

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
            rows.append((name, m.property_name, m.units, m.card["folds"], m.cv,
                         m.calibration))
    meuse = pd.read_csv(DATA / "soil/meuse/meuse.csv")
    meuse["log_zinc"] = np.log(meuse["zinc"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for target, unit in (("om", "%"), ("log_zinc", "ln(mg/kg)")):
            for folds in ("400 m", 10):
                m = models.train(meuse, target, unit=unit,
                                 features=["dist", "elev", "ffreq", "soil"], folds=folds,
                                 crs="EPSG:28992")
                rows.append(("Meuse", m.property_name, m.units, m.card["folds"], m.cv,
                             m.calibration))
    print(f"{'data':<7} {'property':<9} {'units':<10} {'MEC':>6} {'paperRF':>7} {'RMSE':>7} "
          f"{'ME':>7} {'CCC':>6} {'PICP90':>7} {'raw':>5} {'width':>8} {'raw':>8} {'n':>4}  "
          "folds")
    for data, prop, units, folds, cv, cal in rows:
        paper = PAPER_RF.get((data, prop))
        ref = f"{paper:>7.3f}" if paper is not None else f"{'':>7}"
        print(f"{data:<7} {prop:<9} {units:<10} {cv['MEC']:>6.3f} {ref} {cv['RMSE']:>7.2f} "
              f"{cv['ME']:>7.2f} {cv['CCC']:>6.2f} {cv['PICP90']:>7.2f} "
              f"{cal['PICP90_before']:>5.2f} {cal['width90_after']:>8.2f} "
              f"{cal['width90_before']:>8.2f} {cv['n']:>4}  {folds}")


if __name__ == "__main__":
    main()
