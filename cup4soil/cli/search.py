"""``cup4soil search``: list the items a catalog holds for an AOI and a time span."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._common import Subparsers

__all__ = ["register"]


def register(sub: Subparsers) -> None:
    """Add the ``search`` command."""
    p = sub.add_parser("search", help="list the items a catalog holds for an AOI and time")
    p.add_argument("--aoi", required=True,
                   help="built-in name (oderbruch), 'west,south,east,north' or GeoJSON file")
    p.add_argument("--time", required=True, help="e.g. 2018/2022 or 2018-03-01/2018-10-31")
    p.add_argument("--catalog", default="planetary-computer",
                   help="planetary-computer, earth-search, cdse, a STAC API URL, or a "
                        "static catalog path/URL (default: %(default)s)")
    p.add_argument("--collections", nargs="+", default=None)
    p.add_argument("--max-cloud-cover", type=float, default=80.0, help="percent")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--json", action="store_true", help="print the ItemCollection as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Search and print a table (or the ItemCollection as JSON)."""
    from .. import search
    from ..sources import sentinel2 as s2meta

    items = search(
        args.aoi, args.time, catalog=args.catalog, collections=args.collections,
        max_cloud_cover=args.max_cloud_cover, limit=args.limit,
    )
    if args.json:
        print(json.dumps(items.to_dict(transform_hrefs=False)))
        return 0
    print(f"{'id':<62} {'datetime':<20} {'cloud %':>7} {'baseline':>8}")
    for it in items:
        d = s2meta.describe(it)
        cc = "" if d["cloud_cover"] is None else f"{float(d['cloud_cover']):.1f}"
        base = "" if d["baseline"] is None else f"{d['baseline']:05.2f}"
        print(f"{d['id']:<62} {str(d['datetime'])[:19]:<20} {cc:>7} {base:>8}")
    print(f"{len(items)} items")
    return 0
