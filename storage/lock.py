"""A single-writer lock on a campaign store, with detection of locks left by dead processes."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType

from emucamp.errors import StoreLockedError

__all__ = ["StoreLock"]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class StoreLock:
    """An exclusive lock file ``<store>.lock`` naming its holder (host, pid, since).

    It sits beside the store, not in it, so Zarr never meets a file it does not know.

    A lock whose holder is a dead process on this host is stale and is taken over.
    A lock held from another host cannot be checked and is refused; remove it by hand
    (the message says where) once that campaign is known to be gone.
    """

    def __init__(self, store_path: str | Path) -> None:
        store = Path(store_path)
        self.store = store
        self.path = store.with_name(store.name + ".lock")
        self.held = False

    def holder(self) -> dict[str, object] | None:
        """What the lock file says, or ``None`` if there is no lock."""
        try:
            data: dict[str, object] = json.loads(self.path.read_text())
            return data
        except FileNotFoundError:
            return None
        except ValueError:
            return {"host": "?", "pid": -1, "since": 0.0}

    def acquire(self) -> None:
        """Take the lock, or raise :class:`StoreLockedError` naming the live holder."""
        me = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self.holder()
                if holder is None:
                    continue
                if self._is_stale(holder):
                    with contextlib.suppress(FileNotFoundError):
                        self.path.unlink()
                    continue
                raise StoreLockedError(
                    f"{self.store}: in use by another campaign "
                    f"(pid {holder.get('pid')} on {holder.get('host')}, since "
                    f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(float(str(holder.get('since', 0)))))}); "  # noqa: E501
                    f"if that process is gone, delete {self.path}"
                ) from None
            with os.fdopen(fd, "w") as fh:
                json.dump(me, fh)
            self.held = True
            return
        raise StoreLockedError(f"{self.store}: could not take the store lock")

    def _is_stale(self, holder: dict[str, object]) -> bool:
        if holder.get("host") != socket.gethostname():
            return False
        pid = holder.get("pid")
        if not isinstance(pid, int) or pid <= 0:
            return True
        return pid != os.getpid() and not _pid_alive(pid)

    def active(self) -> bool:
        """Whether a process that may still be running holds the lock (another host counts)."""
        holder = self.holder()
        return holder is not None and not self._is_stale(holder)

    def release(self) -> None:
        """Drop the lock if this object holds it."""
        if self.held:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            self.held = False

    def __enter__(self) -> StoreLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
