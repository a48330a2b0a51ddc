"""Secrets at rest: what a channel needs to reach outside (a webhook URL, an SMTP password) is stored encrypted.

Fernet (AES-128-CBC with an HMAC, from ``cryptography``) with a key kept beside the store, in
``$BELLWETHER_HOME/secret.key`` (created on first use, readable by the server's user only). A copy of the database
alone (a backup sent somewhere, a file attached to a support ticket) then holds no usable secret. Back up the key
with the data directory: without it the stored secrets cannot be read and the channels must be set up again.

Values stored before this existed are plain text; :func:`unseal` still reads them.
"""

from __future__ import annotations

import os

from engine import paths
from engine.errors import UserError
from engine.i18n import _

PREFIX = "fernet:"
KEY_FILE = "secret.key"


def _fernet():
    from cryptography.fernet import Fernet

    path = paths.home() / KEY_FILE
    if not path.exists():
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it a moment ago
            pass
        else:
            with os.fdopen(fd, "wb") as handle:
                handle.write(Fernet.generate_key())
    return Fernet(path.read_bytes().strip())


def seal(value: str | None) -> str | None:
    """``value`` encrypted for the store (None and '' stay as they are)."""
    if not value:
        return value
    return PREFIX + _fernet().encrypt(value.encode("utf-8")).decode("ascii")


def unseal(value: str | None) -> str | None:
    """The plain value of something :func:`seal` stored (or a plain value stored before secrets were sealed)."""
    if not value or not value.startswith(PREFIX):
        return value
    from cryptography.fernet import InvalidToken

    try:
        return _fernet().decrypt(value[len(PREFIX):].encode("ascii")).decode("utf-8")
    except InvalidToken:
        raise UserError(_("A stored secret cannot be read with this server's key ({key_file} in the data directory "
                          "was replaced or lost). Remove the channel and set it up again.", key_file=KEY_FILE)) from None
