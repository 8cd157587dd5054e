"""`GET /metrics` in Prometheus text format.

Who may scrape, in order:
- a client in `metrics.allow_networks` (loopback by default) whose request no proxy relayed, so a
  Prometheus on the same host or network needs no credentials, while the same path reached through
  nginx (which always adds forwarding headers) does. A relayed request is one that carries any
  forwarding header, whatever its value. A peer that is a trusted proxy does not make a request
  relayed: with the guide's `trusted_proxies: [127.0.0.1]`, a local Prometheus has that address;
- a scraper presenting the token of `metrics.token_file` (Prometheus's `bearer_token_file`);
- an admin's session, or any API token.
"""

from __future__ import annotations

import ipaddress

from prometheus_client import CONTENT_TYPE_LATEST

from synthorg_tornado.accounts import roles
from synthorg_tornado.auth.identity import TOKEN
from synthorg_tornado.errors import PermissionDenied
from synthorg_tornado.handlers.base import ApiHandler
from synthorg_tornado.handlers.decorators import allow_anonymous
from synthorg_tornado.serving.proxies import has_forwarding_headers


class MetricsHandler(ApiHandler):
    @allow_anonymous  # the access rule is `require_scrape_access`, first thing below
    async def get(self) -> None:
        self.require_scrape_access()
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.set_header("Cache-Control", "no-store")
        self.finish(await self.services.metrics.render())

    def require_scrape_access(self) -> None:
        if self.from_scrape_network() or self.has_scrape_token():
            return
        self.require_identity()
        if self.identity.kind != TOKEN and self.identity.user.role != roles.ADMIN:
            raise PermissionDenied("Metrics need an admin session, an API token or the scrape token.")

    def from_scrape_network(self) -> bool:
        if has_forwarding_headers(self.request.headers):
            return False
        try:
            address = ipaddress.ip_address(self.request.remote_ip or "")
        except ValueError:
            return False
        return any(address in network for network in self.config.metrics.networks)

    def has_scrape_token(self) -> bool:
        scheme, _, presented = self.request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and self.services.metrics.is_scrape_token(presented.strip())


default_handlers = [(r"metrics", MetricsHandler)]
