"""The commands, one module per verb: open the inputs, call the library, write the outputs.

Each command is a plain function (``cli.py`` parses the arguments and calls it; tests and
benchmarks call it directly). No maths lives here: models, scoring, metrics and file
formats are in the library modules.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator

Log = Callable[[str], None]


def to_stderr(msg: str) -> None:
    """The default log: one line on stderr (stdout stays free for results)."""
    print(msg, file=sys.stderr, flush=True)


def silent(msg: str) -> None:
    """The log of non-main processes under torchrun."""


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the main thread, SIGTERM raises KeyboardInterrupt, so that a command stopped by a
    service manager closes its outputs as after Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
