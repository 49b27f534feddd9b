"""SQLite's wake-ups: a folder of FIFOs beside the store file, one per listening process.

``eventmap serve`` writes from its server processes and delivers from its
background process; ``eventmap deliver`` and ``eventmap enqueue`` may run beside
it on the same file. So every process that delivers makes a named pipe in
``STORE-wake/`` and reads it in a thread; every process that writes work writes
the queue names (``wake.py``) into each pipe it finds there after its commit. A
pipe has no port to pick and no address to configure, works for any number of
writers and readers on one machine, and a write of at most 4096 bytes is never
torn between two writers. Writes never block: a full pipe already holds wake-ups
its reader has yet to read, and a pipe whose reader died is removed by the next
writer (opening it answers ENXIO). Nothing in the folder is data: it may be
deleted while nothing runs.
"""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import threading
import uuid
from pathlib import Path

from .wake import Hear, heard, wake_text

log = logging.getLogger("eventmap.store")

PIPE_SIZE = 65536           # Linux's default pipe capacity
FULL = PIPE_SIZE - 4096     # a read this large: the pipe may have filled and refused some wake-ups


def wake_folder(store_file: Path) -> Path:
    """Where the listeners of this store file keep their pipes."""
    return store_file.with_name(store_file.name + "-wake")


def ring(folder: Path, names: set[str]) -> None:
    """Tell every process listening in ``folder`` that the queues ``names`` have new work; never blocks or raises
    for a listener that is gone or busy (a wake-up only hurries it)."""
    try:
        pipes = os.listdir(folder)
    except FileNotFoundError:
        return   # nobody has ever listened here
    data = wake_text(names).encode()
    for name in pipes:
        if name.startswith("."):
            continue   # a pipe being made (FifoListener), not open for reading yet
        path = os.path.join(folder, name)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno == errno.ENXIO:   # nobody reads it: its process died without removing it
                _remove(path)
            elif exc.errno != errno.ENOENT:
                log.debug("cannot wake the listener at %s: %s", path, exc)
            continue
        try:
            os.write(fd, data)
        except BlockingIOError:
            pass   # full: its reader has wake-ups waiting and reads them all at once (FULL)
        except OSError as exc:   # its reader went away since the open
            log.debug("cannot wake the listener at %s: %s", path, exc)
        finally:
            os.close(fd)


class FifoListener:
    """This process's pipe in the store's wake folder, read by a thread that calls ``hear(names)``."""

    def __init__(self, folder: Path, hear: Hear):
        self.folder, self.hear = folder, hear
        folder.mkdir(mode=0o700, exist_ok=True)
        name = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.path = folder / name
        making = folder / f".{name}"
        os.mkfifo(making, 0o600)
        # opened for reading before it gets its name, so a writer never finds it unread and removes it; and
        # for writing by this process too, so the reader never sees end-of-file when no writer has it open
        self._read = os.open(making, os.O_RDONLY | os.O_NONBLOCK)
        self._keep = os.open(making, os.O_WRONLY | os.O_NONBLOCK)
        os.rename(making, self.path)
        self._stop_read, self._stop_write = os.pipe()
        self._thread = threading.Thread(target=self._listen, name="store-wake", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return f"<FifoListener {self.path}>"

    def _listen(self) -> None:
        while True:
            ready, _, _ = select.select([self._read, self._stop_read], [], [])
            if self._stop_read in ready:
                return
            try:
                data = os.read(self._read, PIPE_SIZE)
            except BlockingIOError:
                continue
            try:
                self.hear(None if len(data) >= FULL else heard(data.decode("utf-8", "replace")))
            except Exception:   # the listener must outlive one bad wake-up
                log.exception("a wake-up could not be handed on")

    def close(self) -> None:
        os.write(self._stop_write, b"x")
        self._thread.join(5)
        _remove(str(self.path))
        for fd in (self._read, self._keep, self._stop_read, self._stop_write):
            os.close(fd)


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):   # gone already
        os.unlink(path)

