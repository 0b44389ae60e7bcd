"""``cup4soil info``: a product's variables, grid, completeness and provenance."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from ._common import storage_options

if TYPE_CHECKING:
    from ._common import Subparsers

__all__ = ["register"]


def register(sub: Subparsers) -> None:
    """Add the ``info`` command."""
    p = sub.add_parser("info", help="a product's variables, grid, completeness, provenance")
    p.add_argument("url", help="Zarr store path or URL")
    p.add_argument("--storage-option", action="append", default=[], metavar="KEY=VALUE",
                   help="fsspec storage option (repeatable; dotted keys nest)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=run_info)


def run_info(args: argparse.Namespace) -> int:
    """Print what the store holds (or its description as JSON)."""
    from .. import store

    i = store.info(args.url, storage_options=storage_options(args.storage_option))
    if args.json:
        print(json.dumps(i, indent=2, default=str))
        return 0
    done, total = i["regions"]
    state = "complete" if i["complete"] else "INCOMPLETE"
    print(f"{i['url']}: {state}" + (f" ({done} of {total} regions)" if total else "")
          + f", Zarr v{i['zarr_format']}")
    g = i["grid"]
    if g:
        print(f"  grid       : {g['crs']}, {g['shape'][0]} x {g['shape'][1]} px at "
              f"{g['resolution'][0]:g} m, bounds {', '.join(f'{b:.1f}' for b in g['bounds'])}")
    for name, v in i["variables"].items():
        print(f"  {name:<12}: ({', '.join(v['dims'])}) {v['dtype']} [{v['units']}] "
              f"{v['long_name']}")
    print(f"  readers    : {'; '.join(i['readers'])}")
    for note in i["not_readers"]:
        print(f"  not        : {note}")
    p = i["provenance"]
    for key in ("title", "cup4soil_version", "time_start", "time_end", "cup4soil_written",
                "threshold", "by", "cup4soil_model", "property", "method", "cv"):
        if key in p:
            print(f"  {key:<12}: {p[key]}")
    if "input_items" in p:
        base = sorted({b for b in p.get("processing_baselines", []) if b})
        print(f"  inputs     : {len(p['input_items'])} items, processing baselines "
              f"{', '.join(base) or 'unknown'}")
    return 0
