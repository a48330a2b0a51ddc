"""Errors meant for a person: a plain sentence that says what went wrong and what to do.

The command line prints ``str(error)`` and exits with status 2; the dashboard shows it with ``st.error``.
Never put a traceback in one.
"""


class UserError(Exception):
    """Bad input or a request that cannot be carried out; the message is shown as it is."""


class NotFound(UserError):
    """A dataset, run, feed or model that does not exist."""
