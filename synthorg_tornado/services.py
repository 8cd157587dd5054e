"""The services container: every service built once per process, below the handlers.

Handlers reach it through `Application.settings["services"]`; it imports nothing from the web
layer, so the dependency arrows point one way (handlers -> services -> db).
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import func, select

from synthorg_tornado.auth.accounts import AccountService
from synthorg_tornado.auth.api_tokens import ApiTokenService
from synthorg_tornado.auth.audit import AuditLog
from synthorg_tornado.auth.identity import Authenticator
from synthorg_tornado.auth.login import LoginService
from synthorg_tornado.auth.passwords import PasswordHasher
from synthorg_tornado.auth.sessions import SessionPolicy, SessionService
from synthorg_tornado.auth.sync import ChangeFeed
from synthorg_tornado.auth.throttle import LoginThrottle
from synthorg_tornado.auth.tickets import TicketService
from synthorg_tornado.auth.tokens import SessionTokens, derive_key
from synthorg_tornado.auth.users import UserService
from synthorg_tornado.clock import parse_isoformat, utcnow
from synthorg_tornado.config import Config
from synthorg_tornado.db.engine import Database
from synthorg_tornado.db.models import Session
from synthorg_tornado.metrics import MULTIPROCESS_ENV, Metrics, read_scrape_token
from synthorg_tornado.realtime.bus import USER_UNLOCKED, Bus, LocalBus, Message
from synthorg_tornado.realtime.hub import Hub
from synthorg_tornado.realtime.limits import PublishLimits
from synthorg_tornado.realtime.pg_bus import PostgresBus
from synthorg_tornado.realtime.presence import LabPresence
from synthorg_tornado.settings.registry import SettingsRegistry
from synthorg_tornado.settings.service import SettingsService


@dataclass
class Services:
    """Everything handlers use, built once per process."""

    config: Config
    secret: bytes
    database: Database
    bus: Bus
    hasher: PasswordHasher
    audit: AuditLog
    users: UserService
    sessions: SessionService
    # Every change to an existing account, with its rules (handlers and command line alike).
    accounts: AccountService
    api_tokens: ApiTokenService
    authenticator: Authenticator
    throttle: LoginThrottle
    login: LoginService
    metrics: Metrics
    settings: SettingsService
    tickets: TicketService
    hub: Hub
    presence: LabPresence
    # SQLite only: what the command line changed, noticed by polling (PostgreSQL has the bus).
    changes: ChangeFeed | None
    started_at: float = field(default_factory=time.monotonic)

    async def start(self) -> None:
        await self.hasher.prepare()
        if self.changes is not None:
            self.changes.watermark = utcnow()
        # The bus first: what commits from here on is applied from the log, what committed
        # before is in what the caches load next.
        await self.bus.start()
        await self.settings.load()
        await self.sessions.load_revoked()
        await self.presence.start()

    async def resync(self) -> None:
        """After events this process missed were pruned from the log: re-read what they could
        have changed. Revocations and settings are loaded again, and users are forgotten, so
        each is read afresh at its next use."""
        await self.settings.load()
        await self.sessions.load_revoked()
        self.users.forget_all()
        self.api_tokens.forget_all()

    async def flush(self) -> None:
        """The writes held in memory: activity timestamps and the counts of throttled bursts."""
        await self.sessions.flush_activity()
        await self.api_tokens.flush_usage()
        await self.throttle.flush()

    async def cleanup(self) -> None:
        """The periodic pruning: expired sessions, spent tickets, audit entries past retention,
        login attempts past every throttling window (in memory first: it needs no database)."""
        self.throttle.prune_memory()
        await self.sessions.cleanup()
        await self.bus.prune()
        await self.throttle.prune()
        retention_days = self.config.audit.retention_days
        if retention_days:
            await self.audit.prune(utcnow() - timedelta(days=retention_days))

    async def close(self) -> None:
        try:
            await self.presence.stop()
        finally:
            await self.bus.stop()
        self.hasher.close()
        await self.database.dispose()


async def count_active_sessions(database: Database) -> int:
    """Live sessions in the lab, for the scrape of several processes (each caches only its own
    users' sessions); one count over the indexed `expires_at`, at scrape time only."""
    query = (
        select(func.count())
        .select_from(Session)
        .where(Session.revoked_at.is_(None), Session.expires_at > utcnow())
    )
    async with database.session() as session:
        return int((await session.execute(query)).scalar_one())


def build_services(config: Config, secret: bytes, environ: Mapping[str, str] | None = None) -> Services:
    auth_config = config.auth
    database = Database(config.database)
    node = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
    retention = config.realtime.event_retention_seconds
    bus: Bus = (
        LocalBus(retention, config.realtime.event_log_max_bytes)
        if config.database.is_sqlite
        else PostgresBus(
            database,
            node,
            retention,
            config.websocket.outbound_queue_limit,
            config.realtime.event_log_max_bytes,
        )
    )
    hasher = PasswordHasher(auth_config.bcrypt_rounds, auth_config.password_min_length)
    audit_log = AuditLog(database)
    settings_service = SettingsService(
        database,
        SettingsRegistry(),
        config,
        os.environ if environ is None else environ,
        audit_log,
        bus,
        derive_key(secret, "etag"),
    )
    user_service = UserService(database, hasher, audit_log, bus)
    idle_timeout = (
        timedelta(minutes=auth_config.idle_timeout_minutes) if auth_config.idle_timeout_minutes else None
    )
    # Runtime-editable settings are read at each use, so a change applies without a restart.
    policy = SessionPolicy(
        ttl=lambda: timedelta(minutes=settings_service.value("auth", "session_ttl_minutes")),
        idle_timeout=lambda: idle_timeout,
        max_per_user=lambda: settings_service.value("auth", "max_sessions_per_user"),
    )
    sessions = SessionService(
        database, SessionTokens(derive_key(secret, "session-jwt")), user_service, audit_log, bus, policy
    )
    api_tokens = ApiTokenService(
        database,
        user_service,
        audit_log,
        bus,
        auth_config.api_token_max_days,
        auth_config.max_api_tokens_per_user,
    )
    throttle = LoginThrottle.build(
        audit_log,
        per_minute=lambda: settings_service.value("auth", "login_rate_limit_per_minute"),
        lockout_threshold=lambda: auth_config.lockout_threshold,
        lockout_seconds=lambda: auth_config.lockout_minutes * 60.0,
        allowlist=auth_config.rate_limit_networks,
        lab_database=None if config.database.is_sqlite else database,
    )
    login = LoginService(user_service, sessions, hasher, throttle, audit_log)
    # Set by the main process of `server.processes > 1` (metrics.SharedDirectory) before it forks.
    shared = os.environ.get(MULTIPROCESS_ENV) if config.server.processes > 1 else None
    metrics_registry = Metrics(read_scrape_token(config.metrics.token_file), shared)
    metrics_registry.watch(
        active_sessions=lambda: sessions.cache.active_count(utcnow()),
        failed_logins=lambda: login.failed_logins,
        lab_active_sessions=lambda: count_active_sessions(database),
        caches={
            "sessions": lambda: len(sessions.cache.sessions),
            "revoked_session_ids": lambda: len(sessions.cache.revoked),
            "verified_session_tokens": sessions.tokens.remembered,
            "api_tokens": api_tokens.remembered,
            "users": user_service.remembered,
            "event_log": bus.retained,
        },
    )
    login.on_failure = metrics_registry.failed_login

    def unlocked(message: Message) -> None:
        throttle.unlock(message.payload["account"], parse_isoformat(message.payload["cleared_at"]))

    bus.subscribe(USER_UNLOCKED, unlocked)
    presence = LabPresence(bus, node)
    built = Services(
        config=config,
        secret=secret,
        database=database,
        bus=bus,
        hasher=hasher,
        audit=audit_log,
        users=user_service,
        sessions=sessions,
        accounts=AccountService(database, user_service, sessions, login, audit_log, bus),
        api_tokens=api_tokens,
        authenticator=Authenticator(sessions, api_tokens),
        throttle=throttle,
        login=login,
        metrics=metrics_registry,
        settings=settings_service,
        tickets=TicketService(database, sessions, api_tokens, config.websocket.ticket_ttl_seconds),
        presence=presence,
        hub=Hub(
            bus,
            presence,
            max_subscriptions=lambda: settings_service.value("websocket", "max_subscriptions"),
            max_connections_per_user=config.websocket.max_connections_per_user,
            queue_limit=config.websocket.outbound_queue_limit,
            limits=PublishLimits(config.realtime.max_event_bytes, config.realtime.publish_rate_per_minute),
        ),
        changes=(
            ChangeFeed(database, user_service, sessions, api_tokens, settings_service, bus, throttle)
            if config.database.is_sqlite
            else None
        ),
    )
    if isinstance(bus, PostgresBus):
        bus.resync = built.resync
    return built
