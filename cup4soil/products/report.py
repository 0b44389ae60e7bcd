"""The validation report of a soil map: metrics and three PNGs as Markdown (and HTML).

:func:`validation_report` takes what :func:`cup4soil.soilmap.validate` returns and writes,
into one folder::

    report.md, report.html      ME, RMSE, MEC, CCC, PICP90, n and the figures
    scatter.png                 predicted vs observed, 1:1 line, 90 % intervals as bars
    residuals.png               points coloured by residual (predicted − observed) on the map
    coverage.png                observations against the 90 % band, sorted by prediction
    .cup4soil-report.json       written first: marks the folder as cup4soil's

A folder that exists, is not empty and lacks the marker is refused: cup4soil never
overwrites what it did not write.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import NotAProductError, ParameterError
from .figures import add_map_furniture, save_png

__all__ = ["MARKER", "REPORT_FORMAT", "validation_report"]

#: The file that marks a folder as a cup4soil validation report.
MARKER = ".cup4soil-report.json"
REPORT_FORMAT = "cup4soil-validation-report/1"
#: The figures of a report, in the order the report shows them.
FIGURES = ("scatter.png", "residuals.png", "coverage.png")
_METRICS = ("ME", "RMSE", "MEC", "CCC", "PICP90", "n")
_COLUMNS = ("observed", "predicted", "q05", "q95")


def _prepare(out_dir: Path) -> None:
    """Create ``out_dir`` or accept one cup4soil wrote; refuse any other non-empty one."""
    if out_dir.exists() and not out_dir.is_dir():
        raise NotAProductError(f"{out_dir} is a file, not a folder; choose another --out "
                               "(a new or empty folder).")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / MARKER).is_file():
        raise NotAProductError(
            f"{out_dir} is not empty and holds no cup4soil report ({MARKER} is missing); "
            "cup4soil writes nothing into a folder it did not write. Choose another --out "
            "(a new or empty folder).")
    out_dir.mkdir(parents=True, exist_ok=True)


def _fmt(v: Any) -> str:
    if isinstance(v, int | np.integer):
        return str(int(v))
    return f"{float(v):.3f}"


def validation_report(metrics: Mapping[str, float], table: pd.DataFrame,
                      out_dir: str | Path, *, property: str, units: str,
                      crs: Any = None, title: str | None = None, html_report: bool = True
                      ) -> Path:
    """Write the validation report of one property's map.

    Parameters
    ----------
    metrics : mapping
        ``ME``, ``RMSE``, ``MEC``, ``CCC``, ``PICP90``, ``n`` (as :func:`cup4soil.soilmap.
        validate` returns them), in ``units``.
    table : pandas.DataFrame
        Per point: ``observed``, ``predicted``, ``q05``, ``q95`` (``units``) and the
        coordinates on the map, ``x_map``/``y_map`` (else ``x``/``y``), in ``crs``.
    out_dir : str or path
        Folder of the report: new, empty, or an earlier cup4soil report (replaced).
    property : str
        The mapped property (``soc``, ...), for titles.
    units : str
        Units of the values (e.g. ``dg/kg``).
    crs : CRS-like, optional
        CRS of the map coordinates (residual map axes, scale bar, caption).
    title : str, optional
        Report title (default: "Validation of the <property> map").
    html_report : bool
        Also write ``report.html`` (default true).

    Returns
    -------
    pathlib.Path
        ``out_dir/report.md``.

    Raises
    ------
    NotAProductError
        ``out_dir`` is a file, or a non-empty folder cup4soil did not write.
    ParameterError
        ``metrics`` or ``table`` lack what the report shows, or the table is empty.
    """
    absent = [k for k in _METRICS if k not in metrics]
    absent += [c for c in _COLUMNS if c not in table]
    if absent:
        raise ParameterError(f"a validation report needs {', '.join(absent)}; pass what "
                             "cup4soil.soilmap.validate returns.")
    if table.empty:
        raise ParameterError("a validation report needs at least one point.")
    out = Path(out_dir)
    _prepare(out)
    (out / MARKER).write_text(json.dumps({"format": REPORT_FORMAT, "property": property,
                                          "files": ["report.md", "report.html",
                                                    *FIGURES]}))
    title = title or f"Validation of the {property} map"
    xcol, ycol = ("x_map", "y_map") if {"x_map", "y_map"} <= set(table) else ("x", "y")
    save_png(scatter_figure(table, property=property, units=units), out / FIGURES[0],
             {"Title": f"{title}: predicted vs observed"})
    if {xcol, ycol} <= set(table):
        fig = residual_figure(table, property=property, units=units, crs=crs,
                              columns=(xcol, ycol))
        save_png(fig, out / FIGURES[1], {"Title": f"{title}: residuals"})
    save_png(coverage_figure(table, property=property, units=units), out / FIGURES[2],
             {"Title": f"{title}: interval coverage"})
    figures = [f for f in FIGURES if (out / f).is_file()]
    head = "| " + " | ".join(_METRICS) + " |"
    row = "| " + " | ".join(_fmt(metrics[k]) for k in _METRICS) + " |"
    md = [f"# {title}", "",
          f"{int(metrics['n'])} independent points; values in {units} (SoilGrids mapped "
          "units). ME = mean(predicted − observed); MEC = 1 − SSE/SST; CCC = Lin's "
          "concordance; PICP90 = share of observations inside the 90 % interval.", "",
          head, "|" + "---|" * len(_METRICS), row, ""]
    md += [f"![{f.removesuffix('.png')}]({f})" for f in figures]
    (out / "report.md").write_text("\n".join(md) + "\n")
    if html_report:
        cells = "".join(f"<th>{k}</th>" for k in _METRICS)
        vals = "".join(f"<td>{_fmt(metrics[k])}</td>" for k in _METRICS)
        imgs = "".join(f'<p><img src="{f}" alt="{f}"></p>' for f in figures)
        (out / "report.html").write_text(
            f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title></head><body><h1>{html.escape(title)}</h1><p>{int(metrics['n'])} "
            f"independent points; values in {html.escape(units)}.</p><table border='1'>"
            f"<tr>{cells}</tr><tr>{vals}</tr></table>{imgs}</body></html>\n")
    return out / "report.md"


def scatter_figure(table: pd.DataFrame, *, property: str, units: str) -> Any:
    """Predicted (median) against observed, with the 1:1 line and the 90 % interval as
    error bars."""
    from matplotlib.figure import Figure

    obs = table["observed"].to_numpy(float)
    pred = table["predicted"].to_numpy(float)
    lo, hi = table["q05"].to_numpy(float), table["q95"].to_numpy(float)
    fig = Figure(figsize=(5.5, 5.2), layout="constrained")
    ax = fig.add_subplot()
    inside = (obs >= lo) & (obs <= hi)
    err = np.vstack([np.clip(pred - lo, 0, None), np.clip(hi - pred, 0, None)])
    for sel, colour, label in ((inside, "tab:blue", "observation inside the 90 % interval"),
                               (~inside, "tab:red", "outside")):
        if sel.any():
            ax.errorbar(obs[sel], pred[sel], yerr=err[:, sel], fmt="o", ms=3, lw=0.6,
                        color=colour, alpha=0.7, label=label)
    both = np.concatenate([obs, lo, hi])
    both = both[np.isfinite(both)]
    a, b = float(both.min()), float(both.max())
    ax.plot([a, b], [a, b], color="black", lw=1, label="1:1")
    ax.set_xlabel(f"observed {property} ({units})")
    ax.set_ylabel(f"predicted {property}, median and 90 % interval ({units})")
    ax.set_title(f"{property}: predicted vs observed (n = {obs.size})")
    ax.legend(fontsize=8, loc="upper left")
    return fig


def residual_figure(table: pd.DataFrame, *, property: str, units: str, crs: Any = None,
                    columns: tuple[str, str] = ("x_map", "y_map")) -> Any:
    """The points on the map, coloured by residual (predicted − observed) on a diverging
    ramp centred on 0; axes in map CRS units, with scale bar and north arrow."""
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.figure import Figure

    x = table[columns[0]].to_numpy(float)
    y = table[columns[1]].to_numpy(float)
    res = table["predicted"].to_numpy(float) - table["observed"].to_numpy(float)
    top = float(np.nanmax(np.abs(res))) or 1.0
    fig = Figure(figsize=(6.5, 5.5), layout="constrained")
    ax = fig.add_subplot()
    sc = ax.scatter(x, y, c=res, cmap="RdBu_r", norm=TwoSlopeNorm(0.0, -top, top), s=25,
                    edgecolors="black", linewidths=0.3)
    cb = fig.colorbar(sc, ax=ax, shrink=0.85)
    cb.set_label(f"residual, predicted − observed ({units})")
    ax.set_aspect("equal", adjustable="box")
    pad = max(float(np.ptp(x)), float(np.ptp(y)), 1e-9) * 0.05
    ax.set_xlim(float(x.min()) - pad, float(x.max()) + pad)
    ax.set_ylim(float(y.min()) - pad, float(y.max()) + pad)
    ax.set_title(f"{property}: residuals at the validation points")
    ax.set_facecolor("white")
    extent = (*ax.get_xlim(), *ax.get_ylim())
    add_map_furniture(fig, ax, extent, crs)
    return fig


def coverage_figure(table: pd.DataFrame, *, property: str, units: str) -> Any:
    """Observations against the 90 % band, points sorted by the predicted median; the
    title gives the share inside (PICP90)."""
    from matplotlib.figure import Figure

    t = table.sort_values("predicted", kind="stable")
    obs = t["observed"].to_numpy(float)
    lo, med, hi = (t[c].to_numpy(float) for c in ("q05", "predicted", "q95"))
    rank = np.arange(obs.size)
    inside = (obs >= lo) & (obs <= hi)
    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.add_subplot()
    ax.fill_between(rank, lo, hi, step="mid", color="tab:blue", alpha=0.25,
                    label="90 % interval")
    ax.plot(rank, med, color="tab:blue", lw=1, label="predicted median")
    ax.scatter(rank[inside], obs[inside], s=10, color="black", label="observed, inside")
    ax.scatter(rank[~inside], obs[~inside], s=14, color="tab:red", marker="x",
               label="observed, outside")
    ax.set_xlabel("validation points, sorted by predicted median")
    ax.set_ylabel(f"{property} ({units})")
    ax.set_title(f"{property}: interval coverage, PICP90 = {inside.mean():.2f} "
                 f"(nominal 0.90; n = {obs.size})")
    ax.legend(fontsize=8, loc="upper left")
    return fig
