"""Ctrl-C and SIGTERM for the commands: stop reading, finish the frame set in hand, write what was done.

A command that streams frame sets (run-bag, write-bag, evaluate) takes them through `StopSignals.frames`. The
first SIGINT or SIGTERM ends that stream: at once while a set is being read (reading leaves nothing to undo),
after the set in hand otherwise (one forward pass, one bag write). The command then closes its outputs and
writes its summary saying it was interrupted, and exits with the status of a process that signal stopped
(128 + its number). Signals after the first cannot cut that finishing short (two Ctrl-C in a row used to leave
a bag without its metadata.yaml, so unreadable): they are answered on stderr and otherwise ignored, and once a
signal stopped a command the process ignores them to its exit (`ignore_signals`), so that a late one cannot turn
a clean exit into a killed one.

Outside that stream (while a command starts, or in one without it) `cli.main` gets SIGINT as KeyboardInterrupt
and SIGTERM as `Interrupted` (`terminate_as_interrupt`), and reports either in one line: no traceback.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from surround_depth_ros.bag.storage import ReadFaults

T = TypeVar("T")
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A stop asked by a signal (`signum`); a KeyboardInterrupt, so that what handles Ctrl-C handles it too."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def exit_status(signum: int) -> int:
    """The exit status of a process stopped by `signum`, as a shell reports it."""
    return 128 + signum


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()  # signal handlers can only be set there


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM raises `Interrupted` in the block (its default would end the process with nothing said or saved)."""
    if not _in_main_thread():
        yield
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(signum)

    previous = signal.signal(signal.SIGTERM, handle)
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGTERM) is handle:  # not if the block chose to ignore it (`ignore_signals`)
            signal.signal(signal.SIGTERM, previous)


def ignore_signals() -> None:
    """Ignore SIGINT and SIGTERM from now on: a signal stopped the command and the process is ending."""
    if _in_main_thread():
        for signum in SIGNALS:
            signal.signal(signum, signal.SIG_IGN)


class _StopReading(Interrupted):
    """Raised by the handler inside a read, caught by `StopSignals.frames`: it never leaves it."""


class StopSignals:
    """SIGINT and SIGTERM, while in use as a context manager, end the stream of `frames` (see the module docstring).

    `signal_name` ("SIGINT", "SIGTERM") is set once a signal came, None until then; `exit_status` is the status to
    exit with then.
    """

    def __init__(self, command: str) -> None:
        self.command = command
        self.signum: int | None = None
        self._reading = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if _in_main_thread():
            self._previous = {signum: signal.signal(signum, self._handle) for signum in SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        if self.signum is not None:
            ignore_signals()
            return
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    @property
    def signal_name(self) -> str | None:
        return None if self.signum is None else signal.Signals(self.signum).name

    @property
    def exit_status(self) -> int | None:
        return None if self.signum is None else exit_status(self.signum)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:  # written to the descriptor: a print here could re-enter one in progress
            name = signal.Signals(signum).name
            os.write(2, f"surround-depth {self.command}: {name}: already stopping, writing the outputs\n".encode())
            return
        self.signum = signum
        if self._reading:
            raise _StopReading(signum)

    def end(self, done: str, source: Path | str | None = None, faults: ReadFaults | None = None) -> int:
        """Say on stderr, in a line each, why the run ended early: the faults of the bag it read (`source`), a
        signal (with what was `done`). The exit status: 128 + the signal's number, 1 when reading stopped before
        the bag's end, else 0."""
        if faults is not None and (problems := faults.describe()):
            print(f"surround-depth {self.command}: {source}: {problems}", file=sys.stderr)
        if self.signum is not None:
            print(f"surround-depth {self.command}: interrupted ({self.signal_name}): {done}", file=sys.stderr)
            return exit_status(self.signum)
        return 1 if faults is not None and faults.stopped else 0

    def frames(self, items: Iterable[T]) -> Iterator[T]:
        """`items` until the first signal: a read it interrupts is abandoned, the item in hand is the caller's."""
        iterator = iter(items)
        try:
            while self.signum is None:
                self._reading = True
                try:
                    item = next(iterator)
                finally:
                    self._reading = False
                yield item
        except (StopIteration, _StopReading):
            return
