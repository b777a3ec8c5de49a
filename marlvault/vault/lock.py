"""One writer at a time: a lock file (local) or lock object (s3/gs) named ``marlvault.lock``.

Local: created with ``O_CREAT | O_EXCL`` holding ``{"pid", "host", "time"}``; a lock left by a
dead process on the same host is stale and is taken over. Object stores have no cheap exclusive
create, so the lock object is read first and written if absent; a leftover lock (crashed writer)
is reported with the holder and can be broken with ``break_lock=True``.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from marlvault.errors import VaultLockedError
from marlvault.vault.format import LOCK_FILE
from marlvault.vault.store import Store, raise_storage

if TYPE_CHECKING:
    from marlvault.vault.shared import WriterGroup


def _holder(group: WriterGroup | None = None) -> dict:
    info = {"pid": os.getpid(), "host": socket.gethostname(), "time": time.time()}
    if group is not None:
        info["group"] = group.group_id
        info["processes"] = group.num_processes
    return info


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _locked_error(where: str, info: dict, hint: str) -> VaultLockedError:
    return VaultLockedError(
        f"{where}: expected no other writer, found lock {LOCK_FILE} held by pid "
        f"{info.get('pid')} on host {info.get('host')!r} since "
        f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(info.get('time', 0)))} UTC; fix: {hint}"
    )


@dataclass
class WriterLock:
    """A held writer lock; :meth:`release` removes it."""

    store: Store
    released: bool = False
    member: bool = False
    """A writer group's non-leader: it shares the leader's lock and never removes it."""

    @classmethod
    def acquire(
        cls, store: Store, break_lock: bool = False, group: WriterGroup | None = None
    ) -> WriterLock:
        """Take the lock or raise :class:`VaultLockedError`.

        In a writer group the leader takes it (naming the group); the other processes check
        that the lock names their group.
        """
        if group is not None and not group.is_leader:
            _join_group(store, group)
            return cls(store, member=True)
        if store.location.kind == "file":
            _acquire_local(
                os.path.join(store.location.local_path or "", LOCK_FILE),
                store,
                break_lock,
                group,
            )
        else:
            _acquire_object(store, break_lock, group)
        return cls(store)

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        if self.member:
            return
        if self.store.location.kind == "file":
            try:
                os.unlink(os.path.join(self.store.location.local_path or "", LOCK_FILE))
            except FileNotFoundError:
                pass
        else:
            self.store.delete_key(LOCK_FILE)


def _read_info(raw: bytes | None) -> dict:
    try:
        info = json.loads(raw or b"{}")
        return info if isinstance(info, dict) else {}
    except (ValueError, RecursionError):
        return {}


_PID_MAX = 2**31 - 1


def _check_info(where: str, info: dict) -> dict:
    """A parsed lock's ``{pid, host, time}``, each of its type and range, else an error."""
    pid, host, stamp = info.get("pid"), info.get("host"), info.get("time")
    ok = (
        type(pid) is int
        and 0 < pid <= _PID_MAX
        and isinstance(host, str)
        and type(stamp) in (int, float)
        and math.isfinite(stamp)
        and 0 <= stamp < 1e11
    )
    if ok:
        return info
    raise VaultLockedError(
        f"{where}: expected {LOCK_FILE} to hold {{pid > 0, host, time}} of the writer holding "
        f"the vault, found {json.dumps(info)[:200]}; fix: if no writer is running, open with "
        "break_lock=True"
    )


def _lock_io_error(where: str, path: str, err: OSError) -> VaultLockedError:
    return VaultLockedError(
        f"{where}: expected {LOCK_FILE} to be a lock file, found a "
        f"{'directory' if os.path.isdir(path) else 'path that cannot be read'} there "
        f"({err.strerror or err}); fix: remove {path} if no writer is running"
    )


def _join_group(store: Store, group: WriterGroup) -> None:
    """A group member: the lock must exist and name ``group``."""
    where = store.location.display
    info = _read_info(store.read_key(LOCK_FILE))
    if info.get("group") == group.group_id:
        return
    if not info:
        raise VaultLockedError(
            f"{where}: process {group.process_id} expected {LOCK_FILE} of its writer group "
            f"{group.group_id!r} (taken by process 0), found none; fix: start every process of "
            "the run together (marlvault launch or the cluster launcher), process 0 first"
        )
    info = _check_info(where, info)
    raise _locked_error(
        where,
        info,
        "this vault is being written by another run; record to another path, or "
        "stop that run first",
    )


def _acquire_local(
    path: str, store: Store, break_lock: bool, group: WriterGroup | None = None
) -> None:
    where = store.location.display
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if _take_over_local(path, where, break_lock):
                continue
        except OSError as err:
            if os.path.isdir(path):
                raise _lock_io_error(where, path, err) from None
            raise_storage(err, where, f"creating {LOCK_FILE}")
        else:
            with os.fdopen(fd, "w") as fh:
                json.dump(_holder(group), fh)
            return
    raise _locked_error(where, {}, "retry; the lock file keeps changing")


def _take_over_local(path: str, where: str, break_lock: bool) -> bool:
    """An existing lock file: True when it was removed (stale, broken, empty), else raise."""
    try:
        with open(path, "rb") as fh:
            info = _read_info(fh.read())
        if info and not break_lock:
            info = _check_info(where, info)
            if info["host"] != socket.gethostname() or _pid_alive(info["pid"]):
                raise _locked_error(
                    where,
                    info,
                    "close the other writer, or if it is gone, open with break_lock=True",
                )
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as err:
        raise _lock_io_error(where, path, err) from None
    return True


def _acquire_object(store: Store, break_lock: bool, group: WriterGroup | None = None) -> None:
    info = _read_info(store.read_key(LOCK_FILE)) if not break_lock else {}
    if info:
        info = _check_info(store.location.display, info)
        raise _locked_error(
            store.location.display,
            info,
            "stop the other writer; if it crashed, open with break_lock=True",
        )
    store.write_key(LOCK_FILE, json.dumps(_holder(group)).encode())
