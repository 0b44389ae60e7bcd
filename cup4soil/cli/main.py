"""The ``cup4soil`` command line: the parser assembled from the command groups, dispatch,
error printing.

Every failure cup4soil diagnoses is one line on stderr, naming the problem and the fix,
with exit status 2; ``--verbose`` (``-v``, before or after the command) shows the traceback
instead. Anything else that escapes is one redacted line too, with exit status 1, saying it
is unexpected. An option value that starts with ``-`` and a digit (``--aoi
-9.5,36,-6,42``, ``--threshold -0.1``) is taken as the option's value, not as an option.

A command group is a module with ``register(sub)``, which adds its sub-commands and sets
``run`` (a function of the parsed arguments returning the exit status) as their default;
a new group is one module and one entry in :data:`COMMAND_GROUPS`.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
from collections.abc import Callable, Sequence

from ..errors import Cup4SoilError, redact
from . import composite, covariates, demo, models, openeo, products, search, soilmap, tiles
from ._common import Cluster

__all__ = ["COMMAND_GROUPS", "build_parser", "main"]

#: The command groups, in the order ``--help`` lists their commands.
COMMAND_GROUPS = (demo, composite, covariates, models, soilmap, products, search, openeo,
                  tiles)


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
    for command in sub.choices.values():  # -v after the command too
        with contextlib.suppress(argparse.ArgumentError):  # unless it has its own -v
            command.add_argument("--verbose", "-v", action="store_true",
                                 default=argparse.SUPPRESS, help="show tracebacks")
    return parser


# An option's value that argparse would take for an option: "-9.5,36,-6,42", "-0.1", "-5".
_NEGATIVE = re.compile(r"^-\.?\d")


def _join_negative_values(argv: Sequence[str]) -> list[str]:
    """``--aoi -9.5,36,-6,42`` as ``--aoi=-9.5,36,-6,42``: argparse takes a value starting
    with "-" for an option unless it is one plain negative number. (No cup4soil flag is
    followed by a negative number on its own, so a long option before one takes it.)"""
    out: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        a = args[i]
        if (a.startswith("--") and "=" not in a and len(a) > 2 and i + 1 < len(args)
                and _NEGATIVE.match(args[i + 1])):
            out.append(f"{a}={args[i + 1]}")
            i += 2
            continue
        out.append(a)
        i += 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cup4soil`` console script."""
    parser = build_parser()
    args = parser.parse_args(_join_negative_values(sys.argv[1:] if argv is None else argv))
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
    except Exception as exc:  # a bug here or in a dependency: one line, nothing secret
        if args.verbose:
            raise
        text = redact(" ".join(f"{type(exc).__name__}: {exc}".split()))[:500]
        print(f"cup4soil: unexpected error: {text}. This is a bug in cup4soil or a "
              "dependency; rerun with --verbose for the traceback and report it.",
              file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
