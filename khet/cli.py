"""The `khet` command.

Each part adds its own subcommands through a `register(subparsers)` function in its `cli` module;
this file only wires them and turns a `KhetError` into one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Sequence
from typing import NoReturn

from khet import __version__
from khet.errors import KhetError

# Parts whose subcommands `khet` offers; a part that is not installed (no extra) is left out.
_PARTS = ("khet.vision.cli", "khet.models.cli", "khet.service.cli", "khet.edge.cli")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse exits 2 too; keep its usage line
        self.print_usage(sys.stderr)
        self.exit(2, f"khet: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The `khet` argument parser with every part's subcommands."""
    parser = _Parser(
        prog="khet",
        description="Drone field monitoring: crop, weed and vigour maps from drone imagery.",
    )
    parser.add_argument("--version", action="version", version=f"khet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in _PARTS:
        if importlib.util.find_spec(name) is None:
            continue
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            # Only a missing optional dependency is tolerated, never a missing khet module.
            if e.name and e.name.startswith("khet"):
                raise
            continue
        module.register(sub)
    return parser


def _joined_values(argv: list[str]) -> list[str]:
    """`--bands -,green,blue` as `--bands=-,green,blue`: argparse takes a value that starts with
    "-" for an option of its own, and "-" is how a band to ignore is named."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] == "--bands" and i + 1 < len(argv) and argv[i + 1].startswith("-,"):
            out.append(f"--bands={argv[i + 1]}")
            i += 2
            continue
        out.append(argv[i])
        i += 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run `khet`; the exit code (2 for a KhetError, printed without a traceback)."""
    parser = build_parser()
    args = parser.parse_args(_joined_values(sys.argv[1:] if argv is None else list(argv)))
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KhetError as e:
        print(f"khet: {e.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("khet: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
