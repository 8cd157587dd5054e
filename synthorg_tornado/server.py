"""Process lifecycle: sockets, HTTP server(s), TLS, trusted proxies, background jobs, signals.

Wiring and lifecycle only; what a request does is decided in `app` and below.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import ssl
from collections.abc import Awaitable, Callable
from datetime import datetime

from sqlalchemy import select
from tornado import netutil
from tornado.ioloop import PeriodicCallback
from tornado.web import Application

from synthorg_tornado import __version__
from synthorg_tornado.app import make_app
from synthorg_tornado.auth.sync import POLL_SECONDS
from synthorg_tornado.auth.tokens import new_setup_token
from synthorg_tornado.clock import isoformat, utcnow
from synthorg_tornado.config import Config, ConfigError, build_ssl_context, ensure_secret
from synthorg_tornado.db import migrate
from synthorg_tornado.db.engine import Database
from synthorg_tornado.db.models import User
from synthorg_tornado.logs import SHOW_SECRETS
from synthorg_tornado.process.runtime import FLUSH_SIGNAL, RuntimeFile, RuntimeInfo, runtime_dirs
from synthorg_tornado.process.systemd import Notifier
from synthorg_tornado.process.workers import Supervisor
from synthorg_tornado.services import Services, build_services
from synthorg_tornado.serving.connections import UNLIMITED_BODY, LabHTTPServer
from synthorg_tornado.serving.proxies import TrustedProxies

log = logging.getLogger("synthorg.server")

ACTIVITY_FLUSH_SECONDS = 10
SETUP_WATCH_SECONDS = 2
# The most a stop's final flush, and then closing the services, may take: a dead database cannot hold it.
LAST_STEP_SECONDS = 5.0


def make_http_server(config: Config, app: Application, ssl_context: ssl.SSLContext | None) -> LabHTTPServer:
    server = LabHTTPServer(
        app,
        ssl_options=ssl_context,
        xheaders=False,
        # `RequestLimitsDelegate` enforces server.max_body_size on every route, with an answer.
        max_body_size=UNLIMITED_BODY,
        idle_connection_timeout=config.server.keepalive_timeout_seconds,
        body_timeout=config.server.body_timeout_seconds,
    )
    server.proxies = TrustedProxies(config.server.trusted_networks)
    server.apply_limits(config)
    return server


class LabServer:
    """One process's server: start, run background jobs, stop gracefully."""

    def __init__(self, config: Config, services: Services) -> None:
        self.config = config
        self.services = services
        self.ssl_context = build_ssl_context(config.server) if config.server.tls_enabled else None
        self.app = make_app(config, services)
        self.http_server = make_http_server(config, self.app, self.ssl_context)
        self.periodic: list[PeriodicCallback] = []
        self.shutdown_hooks: list[Callable[[], Awaitable[None]]] = []
        self._flush_lock = asyncio.Lock()

    def add_periodic(
        self, job: Callable[[], Awaitable[None]], interval_seconds: float, name: str
    ) -> PeriodicCallback:
        """A background job that logs its own failures and keeps running.

        A failure is logged once when it starts and once when the job recovers, not at every
        tick: a database outage must not flood the log twice a second.
        """
        failing = False

        async def run_job() -> None:
            nonlocal failing
            try:
                await job()
            except Exception:
                if not failing:
                    log.exception("background job %s failed; it keeps running and retries", name)
                failing = True
                return
            if failing:
                log.info("background job %s recovered", name)
                failing = False

        callback = PeriodicCallback(run_job, interval_seconds * 1000)
        self.periodic.append(callback)
        return callback

    async def flush(self, everything: bool = False) -> datetime:
        """Write what is held in memory, one flush at a time; returns when this one began.

        `everything` also writes the activity the debounce would hold back for up to a minute,
        so whoever reads the database next sees what this process sees. Flushes never overlap:
        one that began after a request was answered has that request's activity written when
        it returns, not in a batch another flush is still committing.
        """
        async with self._flush_lock:
            began = utcnow()
            if everything:
                self.services.sessions.cache.queue_unwritten()
            await self.services.flush()
            return began

    async def start(self, sockets: list[socket.socket]) -> None:
        await self.services.start()
        auth = self.config.auth
        self.add_periodic(self.services.cleanup, auth.cleanup_interval_seconds, "cleanup")
        self.add_periodic(self.flush, ACTIVITY_FLUSH_SECONDS, "activity flush")
        if self.services.changes is not None:
            self.add_periodic(self.services.changes.poll, POLL_SECONDS, "change feed")
        self.http_server.add_sockets(sockets)
        for callback in self.periodic:
            callback.start()

    def reload_certificate(self) -> None:
        """SIGHUP: new handshakes use the new files; open connections keep theirs.

        A fresh context is built and swapped in only once it loaded completely: reloading into
        the live context would leave it half-changed (new certificate, no key) if the files do
        not match, and every later handshake would fail.
        """
        if self.ssl_context is None:
            log.info("SIGHUP received; no TLS certificate to reload")
            return
        try:
            fresh = build_ssl_context(self.config.server)
        except (OSError, ssl.SSLError) as exc:
            log.error("TLS certificate reload failed, keeping the old one: %s", exc)
            return
        self.ssl_context = fresh
        self.http_server.ssl_options = fresh
        log.info("TLS certificate reloaded from %s", self.config.server.ssl_certfile)

    async def stop(self) -> None:
        """Drain, within `shutdown_grace_seconds` in all.

        The listening sockets close first, so new connections are refused at once, and idle
        keep-alive connections close. Requests in flight run to the end, and their answers say
        `Connection: close`. Then WebSockets close with 1001. Whatever is still open when the
        grace period ends is closed, and pending writes are flushed.
        """
        grace = self.config.server.shutdown_grace_seconds
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        self.http_server.stop()
        self.http_server.start_draining()
        # The WebSockets' closing handshake gets the last part of the grace period.
        if not await self.http_server.wait_for_requests(deadline - min(1.0, grace / 5)):
            log.warning("requests still in flight after the grace period; closing them")
        self.services.hub.close_all()
        for hook in self.shutdown_hooks:
            try:
                await asyncio.wait_for(hook(), timeout=max(1.0, deadline - loop.time()))
            except Exception:
                log.exception("shutdown step failed")
        if not await self.http_server.wait_closed(deadline):
            log.warning("connections still open after %ss; closed anyway", grace)
        # Background jobs (and the systemd watchdog) ran on while requests drained.
        for callback in self.periodic:
            callback.stop()
        try:
            await asyncio.wait_for(self.flush(everything=True), LAST_STEP_SECONDS)
        except Exception:
            log.exception("could not flush pending writes")
        try:
            await asyncio.wait_for(self.services.close(), LAST_STEP_SECONDS)
        except Exception:
            log.exception("could not close the services in %ss", LAST_STEP_SECONDS)


async def prepare_database(config: Config, secret_generated: bool = False) -> None:
    """Migrate (or check the schema is current) before serving, with a throwaway engine.

    `secret_generated`: the signing secret was created just now. If the database already has
    users, this instance joins (or restarts) a lab whose sessions were signed with another
    secret: another host's that was not copied here, or a lost file. It serves, since the
    sysadmin may have meant to log everyone out, but says so.
    """
    database = Database(config.database)
    try:
        current, head = await migrate.current_revision(database), migrate.head_revision()
        if config.database.auto_upgrade:
            if current != head:
                await migrate.upgrade(database)
                log.info("database schema migrated from %s to %s", current or "nothing", head)
        else:
            if current != head:
                raise ConfigError(
                    [
                        f"database schema is at {current or 'nothing'}, code needs {head}; "
                        "run: synthorg-tornado db upgrade"
                    ]
                )
        if secret_generated and await _has_users(database):
            log.warning(
                "generated a new signing secret %s, but this database already has users: sessions "
                "signed with the old secret are refused here; if other instances serve this "
                "database, stop this one and copy their auth.secret_file (docs/deploy.md, Several hosts)",
                config.secret_path,
            )
    finally:
        await database.dispose()


async def _has_users(database: Database) -> bool:
    async with database.session() as session:
        return (await session.execute(select(User.id).limit(1))).first() is not None


def bind(config: Config) -> list[socket.socket]:
    return netutil.bind_sockets(config.server.port, config.server.host or None)


def public_url(config: Config, sockets: list[socket.socket]) -> str:
    port = sockets[0].getsockname()[1]
    host = config.server.host or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    scheme = "https" if config.server.tls_enabled else "http"
    return f"{scheme}://{host}:{port}{config.server.base_url}"


def run(config: Config) -> int:
    """Serve until SIGTERM/SIGINT. Returns the process exit code.

    Everything done before the workers fork leaves no thread, loop or connection behind:
    `prepare_database` runs its own event loop to the end and disposes of its engine, and the
    supervisor refuses to fork otherwise. The setup token is drawn before the fork, so every
    worker (a restarted one included) accepts the one link printed.
    """
    secret_generated = not config.secret_path.exists()
    secret = ensure_secret(config)
    asyncio.run(prepare_database(config, secret_generated))
    sockets = bind(config)
    setup_token = new_setup_token()
    if config.server.processes == 1:
        return asyncio.run(_serve(config, secret, sockets, setup_token))

    def work(index: int) -> int:
        return asyncio.run(_serve(config, secret, sockets, setup_token, worker=index))

    supervisor = Supervisor(
        config.server.processes,
        work,
        config.server.shutdown_grace_seconds,
        sockets,
        on_stopping=Notifier().stopping,
    )
    return supervisor.run()


def tune_garbage_collector() -> None:
    """Fewer, cheaper collections for a long-running server.

    Everything built at start-up (modules, the app, caches) is frozen out of the collector's
    view, and the youngest generation is collected after 50,000 allocations rather than 700:
    a WebSocket fan-out allocates a task per message, and the default thresholds then ran full
    collections over the whole heap every few events (tens of milliseconds each).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 10, 10)


class Presence:
    """This process's runtime file (see `runtime`), kept true while it serves.

    Written once listening, rewritten when setup is done (by the setup request before it answers,
    else by a check every few seconds) and when a `FLUSH_SIGNAL` flush has been written, removed
    at a clean shutdown. The writes run in an executor, one at a time, never on the IOLoop.
    """

    def __init__(self, server: LabServer, file: RuntimeFile) -> None:
        self.server = server
        self.file = file
        self._write_lock = asyncio.Lock()
        self._flush_wanted = asyncio.Event()
        self._answering: asyncio.Task[None] | None = None

    async def start(self) -> None:
        try:
            await self._write()
        except OSError as exc:
            log.warning(
                "cannot write the runtime file %s (server list will not show this server): %s",
                self.file.path,
                exc,
            )
        self._answering = asyncio.create_task(self._answer_flushes())
        if self.file.info.setup_url:
            self.server.services.login.on_setup_done = self.setup_done
            self.server.add_periodic(self._watch_setup, SETUP_WATCH_SECONDS, "setup watch").start()

    def flush_requested(self) -> None:
        """The signal handler: the flush itself runs in `_answer_flushes`."""
        self._flush_wanted.set()

    async def _answer_flushes(self) -> None:
        while True:
            await self._flush_wanted.wait()
            self._flush_wanted.clear()
            try:
                began = await self.server.flush(everything=True)
                await self._write(flushed_at=isoformat(began))
            except Exception:
                log.exception("the flush asked for by signal failed")

    async def _watch_setup(self) -> None:
        if self.file.info.setup_url and not await self.server.services.login.setup_pending():
            await self.setup_done()

    async def setup_done(self) -> None:
        """Before the setup answer is sent: from then on no command may offer the spent link."""
        if self.file.info.setup_url:
            await self._write(setup_url=None)

    async def _write(self, **changes: object) -> None:
        async with self._write_lock:
            await asyncio.get_running_loop().run_in_executor(None, lambda: self.file.write(**changes))

    async def stop(self) -> None:
        if self._answering is not None:
            self._answering.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._answering
        self.file.remove()


def runtime_file(config: Config, url: str, setup_token: str | None, worker: int | None) -> RuntimeFile:
    """This process's runtime file; a forked worker names the process that forked it."""
    pid = os.getpid()
    info = RuntimeInfo(
        pid=pid,
        main_pid=os.getppid() if worker is not None else pid,
        url=url,
        started=isoformat(utcnow()) or "",
        version=__version__,
        database=config.database.masked_url,
        setup_url=f"{url}setup?token={setup_token}" if setup_token else None,
    )
    return RuntimeFile(runtime_dirs(config)[0], info)


async def _serve(
    config: Config, secret: bytes, sockets: list[socket.socket], setup_token: str, worker: int | None = None
) -> int:
    """One serving process: the only one, or worker `worker` of the supervisor's."""
    services = build_services(config, secret)
    server = LabServer(config, services)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    loop.add_signal_handler(signal.SIGINT, stopping.set)
    loop.add_signal_handler(signal.SIGHUP, server.reload_certificate)
    await server.start(sockets)
    tune_garbage_collector()
    url = public_url(config, sockets)
    notifier = Notifier()
    if notifier.watchdog_seconds:
        watchdog = PeriodicCallback(notifier.watchdog, notifier.watchdog_seconds * 1000)
        watchdog.start()
        server.periodic.append(watchdog)
    offered = await services.login.offer_setup(setup_token)
    if offered is not None and worker in (None, 0):
        # The one-time link is the whole point of this line: it must be printed (once).
        log.warning("No user exists yet. Open %ssetup?token=%s", url, offered, extra=SHOW_SECRETS)
    presence = Presence(server, runtime_file(config, url, offered, worker))
    loop.add_signal_handler(FLUSH_SIGNAL, presence.flush_requested)
    await presence.start()
    if worker is None:
        log.info("synthorg-tornado %s listening on %s", __version__, url)
    else:
        log.info(
            "synthorg-tornado %s worker %d (pid %d) listening on %s", __version__, worker, os.getpid(), url
        )
    notifier.ready(f"listening on {url}")
    await stopping.wait()
    notifier.stopping()
    log.info("shutting down (grace %ss)", config.server.shutdown_grace_seconds)
    try:
        await server.stop()
    finally:
        await presence.stop()
    log.info("stopped")
    return 0
