"""The one exception type for mistakes a user can fix.

Every command-line entry point turns a :class:`UserError` into a one-line message on
stderr and exit code 2, without a traceback (unless ``--debug``). Raise it with a message
that names the file, flag or value to change and what to do.
"""

from __future__ import annotations


class UserError(Exception):
    """A bad input (path, flag, value, file content) that the user can fix."""
