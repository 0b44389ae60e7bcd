"""The ``cup4soil`` command line: the parser assembled from the command groups, dispatch,
error printing.

Every failure cup4soil diagnoses is one line on stderr, naming the problem and the fix,
with exit status 2; ``--verbose`` shows the traceback instead.

A command group is a module with ``register(sub)``, which adds its sub-commands and sets
``run`` (a function of the parsed arguments returning the exit status) as their default;
a new group is one module and one entry in :data:`COMMAND_GROUPS`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from ..errors import Cup4SoilError
from . import composite, demo, models, openeo, products, search
from ._common import Cluster

__all__ = ["COMMAND_GROUPS", "build_parser", "main"]

#: The command groups, in the order ``--help`` lists their commands.
COMMAND_GROUPS = (demo, composite, models, products, search, openeo)


def build_parser() -> argparse.ArgumentParser:
    """The ``cup4soil`` parser with every command group's sub-commands."""
    parser = argparse.ArgumentParser(
        prog="cup4soil",
        description="Soil-health maps from Sentinel data: search, cube, composites, models.",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cup4soil`` console script."""
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        with Cluster(getattr(args, "cluster", None)):
            return int(run(args))
    except Cup4SoilError as exc:
        if args.verbose:
            raise
        print(f"cup4soil: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cup4soil: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
