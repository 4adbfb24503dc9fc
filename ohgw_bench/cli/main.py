"""``ohgw-bench <verb> ...``: one handler per verb; user errors become one line on stderr, exit 2."""
from __future__ import annotations

import argparse
import sys

from . import analysis, surrogate, sweeps, trial, warmstart


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, non-zero exit, never a traceback
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="ohgw-bench", description=__doc__)
    sub = p.add_subparsers(dest="verb", required=True, parser_class=_Parser)
    for domain in (trial, surrogate, sweeps, warmstart, analysis):
        domain.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.fn(args) or 0)
    except (ValueError, FileNotFoundError, KeyError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"ohgw-bench {args.verb}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ohgw-bench {args.verb}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
