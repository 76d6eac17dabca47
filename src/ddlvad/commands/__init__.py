"""The commands, one module per verb: open the inputs, call the library, write the outputs.

Each command is a plain function (``cli.py`` parses the arguments and calls it; tests and
benchmarks call it directly). No maths lives here: models, scoring, metrics and file
formats are in the library modules.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

Log = Callable[[str], None]


def to_stderr(msg: str) -> None:
    """The default log: one line on stderr (stdout stays free for results)."""
    print(msg, file=sys.stderr, flush=True)


def silent(msg: str) -> None:
    """The log of non-main processes under torchrun."""
