"""`server.processes > 1`: fork the workers, supervise them, stop them together.

Tornado's `fork_processes` restarts a worker that dies but leaves signals alone: SIGTERM to the
main process ends it and nothing else, and the workers keep serving as orphans (PPID 1). Under
systemd `KillMode=control-group` hides that; a container, supervisord or a plain `kill` do not.
This supervisor is the main process instead:

- it forks after the sockets are bound and before any event loop, database connection or
  thread exists (it refuses to fork otherwise: a child forked beside another thread may inherit
  a lock that thread held, and hang on it);
- SIGTERM or SIGINT are forwarded to every worker, each drains as a single process does
  (listening sockets closed, in-flight requests finished, WebSockets closed with 1001), and the
  main process exits 0 once all have stopped cleanly; a worker still running
  `2 * shutdown_grace_seconds + 5` seconds later is killed;
- SIGHUP (certificate reload) and the flush signal of `runtime` are forwarded as they are;
- a worker that dies (killed, or a non-zero exit) while the server is not stopping is logged
  and started again: at once after a long life, with a doubling delay (up to 30 s) when it
  keeps dying within seconds of its start, so a crash loop does not spin. One stopped by a
  signal of its own that exited 0 stays stopped; the main process exits 0 when none is left;
- the workers' metrics are summed through a private directory made here before the first
  fork (`metrics.SharedDirectory`), and a worker's live gauges are dropped when it exits;
- on Linux each worker asks the kernel for SIGTERM should the main process die without a word
  (`kill -9`), so no worker outlives its supervisor.

The main process does no serving and holds no database connection; it only waits on a
self-pipe (`signal.set_wakeup_fd`) for a signal or a child's exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import os
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from synthorg_tornado.metrics import SharedDirectory

log = logging.getLogger("synthorg.workers")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
FORWARDED_SIGNALS = (signal.SIGHUP, signal.SIGUSR1)
# A worker that lived this long before it died is restarted at once: it did not crash at start.
STABLE_SECONDS = 10.0
FIRST_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 30.0
PR_SET_PDEATHSIG = 1


@dataclass
class _Slot:
    """One worker position: its current process, and how often it died young in a row."""

    index: int
    pid: int | None = None
    started: float = 0.0
    quick_failures: int = 0
    restart_at: float | None = None


def describe_status(status: int) -> str:
    """`exit code 3`, or `signal SIGKILL`, for a log line."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(number).name}"
        return f"signal {number}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"


def backoff_seconds(quick_failures: int) -> float:
    """0 after a worker that lived long; then 0.5, 1, 2, ... capped at `MAX_BACKOFF_SECONDS`."""
    if quick_failures <= 0:
        return 0.0
    return min(MAX_BACKOFF_SECONDS, FIRST_BACKOFF_SECONDS * 2 ** (quick_failures - 1))


class Supervisor:
    """Runs `work(index)` in `count` forked workers until SIGTERM/SIGINT; see the module text."""

    def __init__(
        self,
        count: int,
        work: Callable[[int], int],
        grace_seconds: float,
        sockets: list[socket.socket],
        on_stopping: Callable[[], None] | None = None,
    ) -> None:
        self.slots = [_Slot(index) for index in range(count)]
        self.work = work
        self.sockets = sockets
        self.stop_timeout = 2 * grace_seconds + 5
        self.on_stopping = on_stopping
        self._signals: list[int] = []
        self._stopping = False
        self._kill_at: float | None = None
        self._clean = True
        self._wakeup_read = -1
        self._wakeup_write = -1
        self._previous_handlers: dict[int, object] = {}
        self._metrics: SharedDirectory | None = None

    def run(self) -> int:
        """Fork, supervise, and return the main process's exit code (0 after a clean stop)."""
        refuse_unsafe_fork()
        # Before the first fork, so every worker's metrics write to it (see `metrics`).
        self._metrics = SharedDirectory()
        self._install_signals()
        try:
            for slot in self.slots:
                self._spawn(slot)
            while True:
                self._reap()
                self._handle_signals()
                if not self._running() and not self._restarts_pending():
                    break
                self._restart_due()
                self._kill_overdue()
                self._sleep()
        finally:
            self._restore_signals()
            self._metrics.remove()
        log.info("all %d workers stopped", len(self.slots))
        return 0 if self._clean else 1

    # Signals

    def _install_signals(self) -> None:
        self._wakeup_read, self._wakeup_write = os.pipe()
        os.set_blocking(self._wakeup_read, False)
        os.set_blocking(self._wakeup_write, False)
        signal.set_wakeup_fd(self._wakeup_write)
        for number in (*STOP_SIGNALS, *FORWARDED_SIGNALS, signal.SIGCHLD):
            self._previous_handlers[number] = signal.signal(number, self._note_signal)

    def _note_signal(self, number: int, frame: object) -> None:
        # The work happens in the loop; the wake-up byte already interrupts its select.
        if number != signal.SIGCHLD:
            self._signals.append(number)

    def _restore_signals(self) -> None:
        signal.set_wakeup_fd(-1)
        for number, handler in self._previous_handlers.items():
            signal.signal(number, handler)  # type: ignore[arg-type]
        for descriptor in (self._wakeup_read, self._wakeup_write):
            with contextlib.suppress(OSError):
                os.close(descriptor)

    def _handle_signals(self) -> None:
        while self._signals:
            number = self._signals.pop(0)
            if number in STOP_SIGNALS and not self._stopping:
                self._begin_stop(number)
            self._forward(number)

    def _begin_stop(self, number: int) -> None:
        log.info("%s received; stopping %d workers", signal.Signals(number).name, len(self._running()))
        self._stopping = True
        self._kill_at = time.monotonic() + self.stop_timeout
        for slot in self.slots:
            slot.restart_at = None
        # Our copies would keep the ports listening after the workers close theirs: connections
        # would then queue unanswered instead of being refused, and nginx would not fail over.
        for sock in self.sockets:
            sock.close()
        if self.on_stopping is not None:
            self.on_stopping()

    def _forward(self, number: int) -> None:
        for slot in self.slots:
            if slot.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.pid, number)

    # Workers

    def _running(self) -> list[_Slot]:
        return [slot for slot in self.slots if slot.pid is not None]

    def _restarts_pending(self) -> bool:
        return any(slot.restart_at is not None for slot in self.slots)

    def _spawn(self, slot: _Slot) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        parent = os.getpid()
        # Blocked across the fork: a signal forwarded to the new pid must not reach the child
        # while it still has the supervisor's handlers, which would only note it and go on.
        watched = set(self._previous_handlers)
        signal.pthread_sigmask(signal.SIG_BLOCK, watched)
        try:
            pid = os.fork()
            if pid == 0:
                self._become_worker(slot.index, parent, watched)
            slot.pid, slot.started, slot.restart_at = pid, time.monotonic(), None
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, watched)
        log.info("started worker %d (pid %d)", slot.index, pid)

    def _become_worker(self, index: int, parent: int, blocked: set[int]) -> None:
        """In the child: shed the supervisor's signal handling, serve, and never return.

        Until the worker's loop installs its own handlers, a stop signal stops it at once (the
        default), and a reload or flush signal is ignored rather than fatal (their default).
        """
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            for number in self._previous_handlers:
                signal.signal(number, signal.SIG_IGN if number in FORWARDED_SIGNALS else signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, blocked)
            os.close(self._wakeup_read)
            os.close(self._wakeup_write)
            _die_with_parent()
            if os.getppid() != parent:
                os._exit(0)  # the supervisor is already gone
            code = self.work(index)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            log.exception("worker %d failed", index)
        finally:
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            slot = next((s for s in self.slots if s.pid == pid), None)
            if slot is not None:
                self._worker_exited(slot, status)

    def _worker_exited(self, slot: _Slot, status: int) -> None:
        pid, lived = slot.pid, time.monotonic() - slot.started
        slot.pid = None
        if self._metrics is not None:
            self._metrics.worker_exited(pid)  # type: ignore[arg-type]
        how = describe_status(status)
        if self._stopping:
            stopped_by_us = os.WIFSIGNALED(status) and os.WTERMSIG(status) in STOP_SIGNALS
            if os.waitstatus_to_exitcode(status) != 0 and not stopped_by_us:
                self._clean = False
                log.warning("worker %d (pid %d) stopped with %s", slot.index, pid, how)
            else:
                log.info("worker %d (pid %d) stopped", slot.index, pid)
            return
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
            # It was stopped on purpose (SIGTERM to it alone, as KillMode=control-group sends
            # every process one): it drained, and the supervisor does not undo that.
            log.info("worker %d (pid %d) stopped by itself; not restarted", slot.index, pid)
            return
        slot.quick_failures = slot.quick_failures + 1 if lived < STABLE_SECONDS else 0
        delay = backoff_seconds(slot.quick_failures)
        slot.restart_at = time.monotonic() + delay
        log.error(
            "worker %d (pid %d) exited with %s after %.1f s; restarting it in %.1f s",
            slot.index,
            pid,
            how,
            lived,
            delay,
        )

    def _restart_due(self) -> None:
        now = time.monotonic()
        for slot in self.slots:
            if slot.pid is None and slot.restart_at is not None and slot.restart_at <= now:
                self._spawn(slot)

    def _kill_overdue(self) -> None:
        if self._kill_at is None or time.monotonic() < self._kill_at:
            return
        self._kill_at = None
        self._clean = False
        for slot in self._running():
            log.warning(
                "worker %d (pid %d) did not stop in %.0f s; killing it",
                slot.index,
                slot.pid,
                self.stop_timeout,
            )
            with contextlib.suppress(ProcessLookupError):
                os.kill(slot.pid, signal.SIGKILL)  # type: ignore[arg-type]

    def _sleep(self) -> None:
        """Until a signal or a child's exit (the wake-up pipe), or the next timed step."""
        if self._signals:
            return
        deadlines = [slot.restart_at for slot in self.slots if slot.restart_at is not None]
        if self._kill_at is not None:
            deadlines.append(self._kill_at)
        timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
        readable, _, _ = select.select([self._wakeup_read], [], [], timeout)
        if readable:
            with contextlib.suppress(BlockingIOError):
                while os.read(self._wakeup_read, 512):
                    pass


def refuse_unsafe_fork() -> None:
    """Forking is safe only from a process with one thread and no running event loop."""
    others = [thread.name for thread in threading.enumerate() if thread is not threading.main_thread()]
    if others:
        raise RuntimeError(f"cannot fork workers while other threads run: {', '.join(others)}")
    if asyncio._get_running_loop() is not None:
        raise RuntimeError("cannot fork workers from inside a running event loop")


def _die_with_parent() -> None:
    """Linux: SIGTERM this worker when the main process dies, even by SIGKILL."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
