"""Options and helpers shared by the command groups: cluster, storage options, write mode."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from ..errors import ParameterError

if TYPE_CHECKING:
    from distributed import Client

    #: What ``ArgumentParser.add_subparsers`` returns; each command group adds its parsers.
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]

__all__ = ["Cluster", "cluster_arg", "storage_args", "storage_options", "threshold_arg",
           "threshold_option", "write_mode", "zarr_format_arg"]


def threshold_option(p: argparse.ArgumentParser) -> None:
    """Add ``--threshold`` (SCMaP's PVIR2 threshold; read with :func:`threshold_arg`)."""
    p.add_argument("--threshold", default="dlr-europe",
                   help="PVIR2 threshold: a number, a raster path/URL, or dlr-europe")


def threshold_arg(text: str) -> float | str:
    """``--threshold``: a number, else a name or raster path/URL."""
    try:
        return float(text)
    except ValueError:
        return text


def cluster_arg(p: argparse.ArgumentParser) -> None:
    """Add ``--cluster`` (see :class:`Cluster`)."""
    p.add_argument("--cluster", default=None, metavar="TARGET",
                   help="run on a Dask cluster: local, gateway, a Dask-Gateway URL or a "
                        "scheduler address (default: threads in this process)")


class Cluster:
    """Context: a cluster from --cluster for the command's lifetime (or nothing)."""

    def __init__(self, target: str | None) -> None:
        self.target = target
        self.client: Client | None = None

    def __enter__(self) -> Cluster:
        if self.target:
            from .. import cluster

            self.client = cluster.connect(self.target)
            print(f"cluster: {self.target} ({len(self.client.scheduler_info()['workers'])} "
                  "workers)")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.client is not None:
            from .. import cluster

            cluster.close(self.client)


def storage_args(p: argparse.ArgumentParser) -> None:
    """Add ``--storage-option``, ``--resume`` and ``--zarr-format`` for commands that write
    a store."""
    p.add_argument("--storage-option", action="append", default=[], metavar="KEY=VALUE",
                   help="fsspec storage option for --out, e.g. endpoint_url=http://... or "
                        "client_kwargs.region_name=eu-west-1 (repeatable)")
    p.add_argument("--resume", action="store_true",
                   help="finish an interrupted write, keeping the regions already written")
    zarr_format_arg(p)


def zarr_format_arg(p: argparse.ArgumentParser) -> None:
    """Add ``--zarr-format {3,2}`` (2 for GDAL-based readers)."""
    p.add_argument("--zarr-format", type=int, choices=(3, 2), default=3,
                   help="Zarr format of the product (default 3; 2 for GDAL, QGIS and other "
                        "GDAL-based readers)")


def storage_options(pairs: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs as a (nested, for dotted keys) dict; JSON values are decoded."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ParameterError(f"--storage-option {pair.split('=')[0]!r}: use KEY=VALUE.")
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        node = out
        *parents, last = key.split(".")
        for k in parents:
            node = node.setdefault(k, {})
        node[last] = value
    return out


def write_mode(args: argparse.Namespace) -> Literal["w-", "w", "resume"]:
    """The store write mode of ``--resume`` / ``--overwrite``."""
    if args.resume and args.overwrite:
        raise ParameterError("--resume and --overwrite exclude each other.")
    return "resume" if args.resume else "w" if args.overwrite else "w-"


def max_pixels_arg(p: argparse.ArgumentParser) -> None:
    """Add ``--max-pixels`` (the size guard's override, see :mod:`cup4soil._limits`)."""
    p.add_argument("--max-pixels", type=_max_pixels, default=None, metavar="N",
                   help="most pixel observations (time x y x) one run may plan, e.g. 1e11, "
                        "or inf for no limit (default about 3.4e10: larger runs are refused "
                        "before they start; use tiles instead)")


def _max_pixels(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of pixels (e.g. 1e11, or inf)") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number of pixels")
    return value


__all__ += ["max_pixels_arg"]
