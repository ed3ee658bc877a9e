"""What every task script shares: config loading, output formats, progress bars, and the error rule.

The rule: a :class:`P4VError` becomes one line on stderr (``error: ...``) and the error's exit code;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any, Callable, Iterable, Sequence

from tabulate import tabulate
from tqdm import tqdm

from .catalogue import parse_id
from .config import Config, load_config
from .errors import InputError, P4VError

EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a command whose reader went away


def parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every script takes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--config", help="config file (default: $P4V_CONFIG or config.yaml at the project root)")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def id_arg(text: str) -> int:
    """argparse type of a video id: a usage error, not a traceback, for anything that cannot be one."""
    try:
        return parse_id(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def count_arg(text: str) -> int:
    """argparse type of a count (results per query): a whole number from 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text}: not a count (a whole number from 1)")
    return int(text)


def run(p: argparse.ArgumentParser, main: Callable[[argparse.Namespace, Config], int],
        argv: Sequence[str] | None = None) -> int:
    """Parse arguments, load config, run ``main``; turn toolkit errors into one line and an exit code."""
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        cfg = load_config(args.config)
        code = main(args, cfg)
        sys.stdout.flush()  # here, where a reader that went away is caught, not at exit
        return code
    except P4VError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted; re-run the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # the reader of stdout (head, less) stopped reading: end as a piped command does, quietly;
        # stdout goes to /dev/null so that Python's own flush at exit does not fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def progress(args: argparse.Namespace, iterable: Iterable[Any] | None = None, **kw: Any) -> tqdm:
    """A tqdm bar on stderr with rate and ETA; off with --quiet, --json or when stderr is not a terminal."""
    disable = True if (args.quiet or args.json) else None
    return tqdm(iterable, disable=disable, dynamic_ncols=True, file=sys.stderr, **kw)


def error_line(bar: tqdm, message: str) -> None:
    """``error: message`` on stderr, above the progress bar when one is showing."""
    line = f"error: {message}"
    if bar.disable:
        print(line, file=sys.stderr)
    else:
        bar.write(line, file=sys.stderr)


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, ensure_ascii=False, default=str)
    sys.stdout.write("\n")


def print_table(rows: Sequence[Sequence[Any]], headers: Sequence[str], floatfmt: str | Sequence[str] = ".3f") -> None:
    """A plain-text table; ``floatfmt``: one format for every float column, or one per column."""
    print(tabulate(rows, headers=headers, floatfmt=floatfmt, tablefmt="simple"))


def batch_progress(args: argparse.Namespace, desc: str, unit: str) -> tuple[tqdm, Callable[[int, int], None]]:
    """A bar plus the ``on_batch(done, total)`` callback that the library's batch jobs report to."""
    bar = progress(args, desc=desc, unit=unit)

    def on_batch(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    return bar, on_batch
