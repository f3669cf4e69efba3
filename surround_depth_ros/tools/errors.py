"""The one error convention of the `surround-depth` commands.

A command raises `UsageError` when it cannot run as asked: a bad option, a missing file, a dataset
or bag it cannot read. The dispatcher (`tools/cli.py`) prints it as one line,
`surround-depth <command>: error: <message>`, and exits with 2, as argparse does for a malformed
command line. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class UsageError(Exception):
    """A command line that cannot run as given; the message says what to change."""


@contextmanager
def usage_errors(*kinds: type[Exception]) -> Iterator[None]:
    """Report `kinds` raised inside as a UsageError: wrap only where they mean bad input (opening what was named)."""
    try:
        yield
    except kinds as error:
        raise UsageError(str(error)) from error
