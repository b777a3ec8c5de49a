"""Every error marlvault raises on user input derives from :class:`MarlvaultError`.

Each subclass also inherits the matching builtin, so ``except FileNotFoundError`` keeps working,
and carries an ``exit_code`` that the CLI uses. Messages name the path (or key), what was
expected, what was found, and the fix.
"""

from __future__ import annotations

import os
import re

_SECRET_ENV_NAMES = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "GOOGLE_AUTH_TOKEN_FOR_TESTING")
_SECRET_ENV_WORDS = re.compile(r"SECRET|TOKEN|PASSWORD|PASSWD|PRIVATE_KEY")
_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]*@")
_MIN_SECRET_LEN = 4


def scrub(text: str) -> str:
    """``text`` with URL userinfo (``scheme://user:pass@``) and secret env values replaced by ``***``.

    Secret values are those of ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN`` and of every
    environment variable whose name contains SECRET, TOKEN, PASSWORD or PRIVATE_KEY (values of
    at least 4 characters). Every error message goes through here (``MarlvaultError.__str__``,
    the CLI's reporter and its traceback hook).
    """
    text = _URL_USERINFO.sub(r"\g<scheme>***@", text)
    for name, value in os.environ.items():
        if len(value) < _MIN_SECRET_LEN:
            continue
        if name in _SECRET_ENV_NAMES or _SECRET_ENV_WORDS.search(name.upper()):
            text = text.replace(value, "***")
    return text


class MarlvaultError(Exception):
    """Base class of all marlvault errors (messages never show a credential: see :func:`scrub`)."""

    exit_code: int = 1

    def __str__(self) -> str:
        return scrub(super().__str__())


# --- configuration and command line -------------------------------------------------------------
class ConfigError(MarlvaultError, ValueError):
    """A config key or value is invalid (unknown key, wrong type, out of range)."""

    exit_code = 2


# --- environments --------------------------------------------------------------------------------
class EnvNotFoundError(MarlvaultError, KeyError):
    """An environment or scenario name is not registered."""

    exit_code = 3

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain.
        return str(self.args[0]) if self.args else ""


# --- vaults --------------------------------------------------------------------------------------
class VaultError(MarlvaultError):
    """Base class of vault errors."""

    exit_code = 10


class VaultNotFoundError(VaultError, FileNotFoundError):
    """The path or URL holds no vault (nothing there)."""

    exit_code = 11


class NotAVaultError(VaultError, ValueError):
    """Something is at the path, but it is not a vault (no/invalid metadata, no database)."""

    exit_code = 12


class VaultExistsError(VaultError, FileExistsError):
    """Create was asked for a path that already holds a vault."""

    exit_code = 13


class VaultVersionError(VaultError, ValueError):
    """The vault was written by a newer major format version than this code reads."""

    exit_code = 14


class VaultCorruptError(VaultError, ValueError):
    """Metadata or arrays are truncated or inconsistent with each other."""

    exit_code = 15


class SchemaMismatchError(VaultError, ValueError):
    """Appended data does not match the vault's structure (keys, shapes, dtypes, rows)."""

    exit_code = 16


class VaultLockedError(VaultError, RuntimeError):
    """Another writer holds the vault open for appending."""

    exit_code = 17


class VaultRangeError(VaultError, IndexError):
    """A read asked for steps, rows or keys outside the data."""

    exit_code = 18


class StorageFullError(VaultError, OSError):
    """The storage ran out of space; committed data is unchanged."""

    exit_code = 19


class VaultReadOnlyError(VaultError, PermissionError):
    """A write was attempted on a vault opened for reading."""

    exit_code = 20


class InvalidLocationError(VaultError, ValueError):
    """A path or URL is malformed, has an unsupported scheme, carries credentials or escapes
    its base directory."""

    exit_code = 21


class StorageUnreachableError(VaultError, ConnectionError):
    """An object-store endpoint (or the credential server) did not answer within the timeout."""

    exit_code = 22


class StorageCredentialsError(VaultError, PermissionError):
    """No credentials were found for an object store that needs them."""

    exit_code = 23


# --- recording, checkpoints, offline -------------------------------------------------------------
class RecorderError(MarlvaultError, RuntimeError):
    """The background writer failed; the message says what was committed."""

    exit_code = 30


class CheckpointError(MarlvaultError, FileNotFoundError):
    """A checkpoint is missing or does not match the config it is restored into."""

    exit_code = 31


class UnknownConfigClassError(CheckpointError):
    """A checkpoint names a config class that is not one of marlvault's own (never imported)."""

    exit_code = 32


class DatasetError(MarlvaultError, ValueError):
    """A vault lacks what an offline algorithm needs (e.g. no global state for QMIX)."""

    exit_code = 40


class EnvDependencyError(MarlvaultError, ImportError):
    """A registered environment needs an optional package that is not installed."""

    exit_code = 4


# --- several processes ---------------------------------------------------------------------------
class DistributedError(MarlvaultError, ConnectionError):
    """The processes of a run could not join each other (coordinator unreachable, timeout), or
    one of them failed."""

    exit_code = 50
