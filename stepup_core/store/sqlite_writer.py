"""The SQLite store's writer thread and checkpointing thread (see :mod:`stepup_core.store.sqlite`).

One thread owns the writing connection and runs each store operation whole, joining the
operations that queue up while it waits for the disk into one transaction, each in its own
savepoint (group commit). Background work (the expiry sweep) waits in a queue of its own and
runs, in a transaction of its own, only when no operation is waiting. A second thread with its
own connection copies the write-ahead log back into the database, so no commit waits for a
checkpoint.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("stepup.sqlite")

#: A store operation as the writer thread runs it: a function of the writing connection.
Operation = Callable[[sqlite3.Connection], Any]


class _Job:
    __slots__ = ("background", "future", "in_transaction", "operation")

    def __init__(
        self, operation: Operation, future: asyncio.Future[Any], in_transaction: bool, background: bool = False
    ) -> None:
        self.operation = operation
        self.future = future
        self.in_transaction = in_transaction
        self.background = background


class _WriterStopped(Exception):
    """The writer thread is gone: its connection can no longer be used."""


#: Put in the writer's queue to wake it for background work (it carries none itself).
_WAKE = _Job(lambda conn: None, None, False, True)  # type: ignore[arg-type]


def _deliver(outcomes: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    """On the event loop: hand each caller its operation's result (or error)."""
    for future, ok, value in outcomes:
        if future.done():  # the caller was cancelled
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


class _Writer:
    """The thread that owns the writing connection and runs operations in group commits."""

    #: Operations joined into one transaction at most.
    max_group = 200
    #: Frames (pages) the write-ahead log may hold, by the checkpointing thread's last count,
    #: before the writer finishes a checkpoint itself (2048 frames: 8 MiB with 4 KiB pages;
    #: several times what one expiry sweep transaction writes, so the sweep's own pauses for a
    #: checkpoint let the log be reused first).
    restart_frames = 2048

    def __init__(self, conn: sqlite3.Connection, path: str) -> None:
        self.conn = conn
        #: Told after each commit when the database has a write-ahead log (a file database).
        self.checkpointer: _Checkpointer | None = None
        self.queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        #: Background jobs, each run in a transaction of its own when ``queue`` holds nothing.
        self.background: collections.deque[_Job] = collections.deque()
        self.stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"stepup-sqlite-writer {path}", daemon=True)
        self._thread.start()

    def submit(
        self, operation: Operation, *, in_transaction: bool = True, background: bool = False
    ) -> asyncio.Future[Any]:
        """Queue ``operation``; its result arrives through the future. A ``background`` operation
        (always in a transaction) runs alone, and only when no other operation is waiting."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.stopped.is_set():
            future.set_exception(_WriterStopped("the store's writer has stopped"))
        elif background:
            self.background.append(_Job(operation, future, True, True))
            self.queue.put(_WAKE)
        else:
            self.queue.put(_Job(operation, future, in_transaction))
        return future

    def stop(self) -> None:
        self.queue.put(None)

    async def wait_stopped(self) -> None:
        await asyncio.to_thread(self._thread.join)

    # -- on the thread --------------------------------------------------------------------

    def _next(self) -> _Job | None:
        """The next job: a waiting operation first, then background work, else wait."""
        while True:
            try:
                job = self.queue.get_nowait()
            except queue.Empty:
                if self.background:
                    return self.background.popleft()
                job = self.queue.get()
            if job is not _WAKE:
                return job

    def _run(self) -> None:
        carried: _Job | None = None
        has_carried = False
        try:
            while True:
                if has_carried:
                    job, has_carried = carried, False
                else:
                    job = self._next()
                if job is None:
                    return
                if not job.in_transaction:
                    self._send([self._run_alone(job)])
                    continue
                group = [job]
                while len(group) < self.max_group and not job.background:
                    try:
                        following = self.queue.get_nowait()
                    except queue.Empty:
                        break
                    if following is _WAKE:
                        continue
                    if following is None or not following.in_transaction:
                        carried, has_carried = following, True  # next, after this group
                        break
                    group.append(following)
                self._send(self._run_group(group))
                if self.checkpointer is not None:
                    self.checkpointer.committed()
                    frames, copied = self.checkpointer.last_count
                    # Only when the checkpointing thread has done most of the copying: what
                    # a reader's snapshot holds back, this checkpoint could not copy either.
                    if frames >= self.restart_frames and frames - copied <= self.restart_frames // 4:
                        self._finish_checkpoint(self.checkpointer)
        finally:
            self.stopped.set()
            with contextlib.suppress(sqlite3.Error):
                self.conn.close()
            self._fail_pending()

    def _finish_checkpoint(self, checkpointer: _Checkpointer) -> None:
        """Between transactions, its callers answered: copy back what the checkpointing thread
        has not yet, so the next transaction begins with the whole log copied back and SQLite
        writes the log from its start again. The checkpointing thread copies the log while
        commits go on, but while they follow each other without a pause no transaction ever
        begins with all of it copied back, and the log would only grow. Here little is left to
        copy and no commit can land meanwhile, so this checkpoint reaches the log's end and
        syncs the database file."""
        checkpointer.last_count = (0, 0)  # asked again only once the checkpointing thread counts again
        try:
            self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:  # the next count asks again
            log.warning("checkpointing the SQLite write-ahead log failed: %s", exc)

    def _run_alone(self, job: _Job) -> tuple[asyncio.Future[Any], bool, Any]:
        try:
            return job.future, True, job.operation(self.conn)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            return job.future, False, exc

    def _run_group(self, group: list[_Job]) -> list[tuple[asyncio.Future[Any], bool, Any]]:
        conn = self.conn
        single = len(group) == 1
        results: list[tuple[asyncio.Future[Any], bool, Any]] = []
        try:
            if conn.in_transaction:  # pragma: no cover - never left open, but never trusted either
                conn.rollback()
            conn.execute("BEGIN IMMEDIATE")
            try:
                for job in group:
                    if not single:
                        conn.execute("SAVEPOINT operation")
                    try:
                        value = job.operation(conn)
                    except Exception as exc:
                        if single:
                            raise
                        conn.execute("ROLLBACK TO operation")
                        conn.execute("RELEASE operation")
                        results.append((job.future, False, exc))
                    else:
                        if not single:
                            conn.execute("RELEASE operation")
                        results.append((job.future, True, value))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.rollback()
                raise
        except Exception as exc:  # noqa: BLE001 - nothing of the group was committed
            return [(job.future, False, exc) for job in group]
        return results

    def _send(self, outcomes: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
        for outcome in outcomes:
            by_loop.setdefault(outcome[0].get_loop(), []).append(outcome)
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop was closed meanwhile
                loop.call_soon_threadsafe(_deliver, items)

    def _fail_pending(self) -> None:
        pending: list[_Job] = []
        while True:
            try:
                job = self.queue.get_nowait()
            except queue.Empty:
                break
            if job is not None and job is not _WAKE:
                pending.append(job)
        while self.background:
            pending.append(self.background.popleft())
        self._send([(job.future, False, _WriterStopped("the store's writer has stopped")) for job in pending])


#: What ``PRAGMA wal_checkpoint`` answers: (busy, frames in the log, frames copied back).
CheckpointResult = tuple[int, int, int]


def _answer(waiting: list[concurrent.futures.Future[CheckpointResult]], result: CheckpointResult) -> None:
    for future in waiting:
        with contextlib.suppress(concurrent.futures.InvalidStateError):  # its waiter gave up
            future.set_result(result)


class _Checkpointer:
    """Copies the write-ahead log back into the database on a thread and connection of its own
    (``PRAGMA wal_checkpoint(PASSIVE)``), at most every :attr:`interval` seconds after commits,
    so no commit waits for a checkpoint: the writer's own automatic checkpoint is off.

    :meth:`request` asks for a checkpoint at once and hands back its result: the expiry sweep
    waits for one after each of its transactions, so the log is copied back (and then reused
    from its start) before the next one, instead of growing while the sweep runs."""

    #: Seconds between checkpoints at most (unless one is requested).
    interval = 0.25

    def __init__(self, path: str) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA busy_timeout = 5000")
        self._wanted = threading.Event()
        self._requested = threading.Event()
        self._waiting: list[concurrent.futures.Future[CheckpointResult]] = []
        self._lock = threading.Lock()
        self._stopping = False
        #: Frames in the log at the last checkpoint's start, and frames copied back by its end
        #: (read by the writer thread).
        self.last_count = (0, 0)
        self._thread = threading.Thread(target=self._run, name=f"stepup-sqlite-checkpoint {path}", daemon=True)
        self._thread.start()

    def committed(self) -> None:
        self._wanted.set()

    def request(self) -> concurrent.futures.Future[CheckpointResult]:
        """A checkpoint begun after this call: its future answers what it did."""
        future: concurrent.futures.Future[CheckpointResult] = concurrent.futures.Future()
        with self._lock:
            if self._stopping:
                future.set_result((1, -1, -1))
                return future
            self._waiting.append(future)
        self._requested.set()
        self._wanted.set()
        return future

    def _checkpoint(self) -> CheckpointResult:
        try:
            busy, log_frames, copied = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:  # the next commit asks again
            log.warning("checkpointing the SQLite write-ahead log failed: %s", exc)
            return (1, -1, -1)
        self.last_count = (int(log_frames), int(copied))
        return int(busy), int(log_frames), int(copied)

    def _run(self) -> None:
        try:
            while True:
                self._wanted.wait()
                with self._lock:
                    waiting, self._waiting = self._waiting, []
                    self._requested.clear()
                    self._wanted.clear()
                    if self._stopping:
                        _answer(waiting, (1, -1, -1))
                        return
                result = self._checkpoint()
                _answer(waiting, result)
                self._requested.wait(self.interval)  # a request cuts the pause short
        finally:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
        self._wanted.set()
        self._thread.join()
