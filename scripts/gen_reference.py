"""Write the reference pages of the documentation (docs/reference/config.md, components.md, cli.md) from the code:
the trial config schema, the component registry and the typer app.

    python scripts/gen_reference.py           # regenerate the pages that changed
    python scripts/gen_reference.py --check   # exit 1, naming each stale page, if one differs from the code
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dreamfusion.cli import app
from dreamfusion.reference.pages import COMMAND, stale, write

DOCS = Path(__file__).resolve().parents[1] / "docs" / "reference"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a page differs from the code")
    parser.add_argument("--docs", type=Path, default=DOCS, help="folder of the pages (default: docs/reference)")
    args = parser.parse_args(argv)
    if args.check:
        found = stale(args.docs, app)
        for name in found:
            print(f"{args.docs / name}: stale; regenerate it with `{COMMAND}`", file=sys.stderr)
        return 1 if found else 0
    for name in write(args.docs, app):
        print(f"wrote {args.docs / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
