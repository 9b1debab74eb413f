"""``evalstream`` command line: the composition root (evaluate, serve, demo, report, ...)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

__all__ = ["main", "build_parser"]

_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def _command(name: str):
    def register(fn: Callable[[argparse.Namespace], int]):
        _COMMANDS[name] = fn
        return fn

    return register


def _csv_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="evaluate a saved (y_true, y_score) file offline",
        description="Read an .npz with arrays y_true and y_score (or a CSV), feed it through the "
        "engine in batches and print the report.",
    )
    p.add_argument("path", help=".npz with arrays y_true and y_score, or a CSV")
    p.add_argument("--task", required=True, choices=["binary", "multiclass", "multilabel"])
    p.add_argument("--classes", type=_csv_list, default=None, help="class names, a,b,c")
    p.add_argument("--logits", action="store_true", help="scores are logits, not probabilities")
    p.add_argument("--json", action="store_true", help="print the canonical report as JSON")
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--resolution", default="bins", help="bins, bins:<m>, exact, exact:<cap>")


@_command("evaluate")
def _evaluate(args: argparse.Namespace) -> int:
    from evalstream.text import format_report

    from .evaluate import evaluate_arrays, load_arrays

    y_true, y_score = load_arrays(args.path)
    report = evaluate_arrays(
        y_true,
        y_score,
        task=args.task,
        classes=args.classes,
        logits=args.logits,
        batch_size=args.batch_size,
        resolution=args.resolution,
        name=str(args.path),
    )
    if args.json:
        json.dump(report, sys.stdout, indent=1, allow_nan=False)
        sys.stdout.write("\n")
    else:
        print(format_report(report))
    return 0


_PARSER_BUILDERS: list[Callable[[argparse._SubParsersAction], None]] = [_add_evaluate]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evalstream",
        description="Streaming, sklearn-exact classifier metrics in bounded memory.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for add in _PARSER_BUILDERS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from .engine import InvalidInputError

    args = build_parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except InvalidInputError as exc:
        print(f"evalstream {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
