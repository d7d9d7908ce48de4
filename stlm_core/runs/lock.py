"""One writer per run directory: ``run.lock`` with the holder's pid and host, a heartbeat, stale-lock takeover."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import warnings
from pathlib import Path
from typing import Iterator

from stlm_core.errors import StlmError
from stlm_core.runs.layout import LOCK_FILE


class RunLocked(StlmError):
    """Another live process is writing this run directory."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# A writer touches its lock every LOCK_HEARTBEAT_S seconds. A lock from another host (a cluster job on another node)
# cannot be checked by pid; it counts as stale when it has not been touched for LOCK_STALE_S seconds.
LOCK_HEARTBEAT_S = 60.0
LOCK_STALE_S = 600.0


def _keep_touching(path: Path, stop: threading.Event) -> None:
    while not stop.wait(LOCK_HEARTBEAT_S):
        try:
            os.utime(path)
        except OSError:
            return


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike) -> Iterator[Path]:
    """Hold ``run_dir/run.lock`` (pid and host) while writing a run; one writer per run directory.

    A second writer raises :class:`RunLocked` naming the holder. A stale lock is taken over with a warning: on this
    host, one whose process is dead; from another host (e.g. a preempted cluster job requeued on another node), one
    whose holder stopped touching it :data:`LOCK_STALE_S` seconds ago (holders touch it every
    :data:`LOCK_HEARTBEAT_S` s). The lock file is removed on exit.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    me = {"pid": os.getpid(), "host": socket.gethostname()}
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = json.loads(path.read_text() or "{}")
                idle = time.time() - path.stat().st_mtime
            except (OSError, json.JSONDecodeError):
                holder, idle = {}, 0.0
            same_host = holder.get("host") == me["host"]
            if same_host and isinstance(holder.get("pid"), int) and not _pid_alive(holder["pid"]):
                warnings.warn(f"{path}: taking over a stale lock of process {holder['pid']} (no longer running)",
                              stacklevel=3)
                path.unlink(missing_ok=True)
                continue
            if not same_host and idle > LOCK_STALE_S:
                warnings.warn(f"{path}: taking over a stale lock of process {holder.get('pid', '?')} on host "
                              f"{holder.get('host', '?')} (not touched for {idle / 60:.0f} min)", stacklevel=3)
                path.unlink(missing_ok=True)
                continue
            raise RunLocked(f"{run_dir} is being written by process {holder.get('pid', '?')} on host "
                            f"{holder.get('host', '?')} ({path}). Wait for it to finish or use another run "
                            "directory; if that process is gone, delete the lock file"
                            + ("." if same_host else f" (or wait: a lock from another host expires "
                                                     f"{LOCK_STALE_S / 60:.0f} min after its last heartbeat).")) from None
        with os.fdopen(fd, "w") as handle:
            json.dump(me, handle)
        break
    stop = threading.Event()
    heartbeat = threading.Thread(target=_keep_touching, args=(path, stop), daemon=True, name="run-lock-heartbeat")
    heartbeat.start()
    try:
        yield path
    finally:
        stop.set()
        heartbeat.join()
        path.unlink(missing_ok=True)
