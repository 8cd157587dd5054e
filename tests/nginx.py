"""A real nginx in front of the lab server, run from the shipped `deploy/nginx/synthorg.conf`.

The shipped file stays what a sysadmin installs. The tests change only what must differ on a test
machine: ports, listen addresses, the server name, certificate and webroot paths, the upstream
address and, for a sub-path deployment, the two location prefixes (as deploy/nginx/README.md tells
a sysadmin to). Each replacement must match the shipped file, so an edit there that the tests no
longer follow fails loudly instead of testing something else.

The server-level file is wrapped in a minimal nginx.conf of our own: no daemon, pid, logs and
temporary files inside a throwaway directory, so nginx runs as root without touching /var/lib/nginx.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
from pathlib import Path

from tests.servers import REPO, free_port, wait_for

NGINX = "/usr/sbin/nginx"
SHIPPED_CONF = REPO / "deploy" / "nginx" / "synthorg.conf"
SHIPPED_NAME = "lab.example.org"
SHIPPED_UPSTREAM = "server 127.0.0.1:8888;"
SHIPPED_CERTIFICATE = "/etc/ssl/synthorg/fullchain.pem"
SHIPPED_KEY = "/etc/ssl/synthorg/privkey.pem"
SHIPPED_WEBROOT = "/var/www/letsencrypt"
SHIPPED_MAINTENANCE_ROOT = "root /var/www/synthorg-maintenance;"
MAINTENANCE_PAGE = REPO / "deploy" / "nginx" / "maintenance.html"
SHIPPED_REDIRECT = "return 301 https://$host$request_uri;"
SHIPPED_PROXY_LOCATION = "location / {\n        proxy_pass http://synthorg;"
SHIPPED_WS_LOCATION = "location /api/v1/ws {"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0

WRAPPER = """\
daemon off;
master_process on;
worker_processes 1;
{user}pid {root}/nginx.pid;
error_log {root}/error.log info;

events {{
    worker_connections 1024;
}}

http {{
    default_type application/octet-stream;
    access_log {root}/access.log;
    client_body_temp_path {root}/temp/body;
    proxy_temp_path {root}/temp/proxy;
    fastcgi_temp_path {root}/temp/fastcgi;
    uwsgi_temp_path {root}/temp/uwsgi;
    scgi_temp_path {root}/temp/scgi;

    include {site};
}}
"""


def ipv6_loopback_available() -> bool:
    with socket.socket(socket.AF_INET6) as probe:
        try:
            probe.bind(("::1", 0))
        except OSError:
            return False
    return True


def _replace(text: str, old: str, new: str) -> str:
    if old not in text:
        raise AssertionError(f"deploy/nginx/synthorg.conf no longer contains {old!r}")
    return text.replace(old, new)


def render_site(
    shipped: str,
    *,
    http_port: int,
    https_port: int,
    server_name: str,
    certificate: Path,
    key: Path,
    webroot: Path,
    upstream: str | list[str],
    maintenance_root: Path,
    base_url: str = "/",
    ipv6: bool = True,
) -> str:
    """The shipped server-level config with test ports, names and paths; nothing else changes."""
    text = shipped
    for shipped_port, port in (("80", http_port), ("443", https_port)):
        if not re.search(rf"listen {shipped_port}[ ;]", text):
            raise AssertionError(f"deploy/nginx/synthorg.conf no longer listens on {shipped_port}")
        text = re.sub(rf"listen {shipped_port}(?=[ ;])", f"listen 127.0.0.1:{port}", text)
        ipv6_listen = rf"listen \[::\]:{shipped_port}(?=[ ;])"
        if not re.search(ipv6_listen, text):
            raise AssertionError(f"deploy/nginx/synthorg.conf no longer listens on [::]:{shipped_port}")
        if ipv6:
            text = re.sub(ipv6_listen, f"listen [::1]:{port}", text)
        else:
            text = re.sub(rf"^\s*{ipv6_listen}[^\n]*\n", "", text, flags=re.MULTILINE)
    # The redirect names the HTTPS port, which the shipped file leaves at the default 443.
    text = _replace(text, SHIPPED_REDIRECT, f"return 301 https://$host:{https_port}$request_uri;")
    text = _replace(text, f"server_name {SHIPPED_NAME};", f"server_name {server_name};")
    text = _replace(text, SHIPPED_CERTIFICATE, str(certificate))
    text = _replace(text, SHIPPED_KEY, str(key))
    text = _replace(text, SHIPPED_WEBROOT, str(webroot))
    text = _replace(text, SHIPPED_MAINTENANCE_ROOT, f"root {maintenance_root};")
    # Several backends: one `server` line each, as the shipped file's comment tells a sysadmin.
    backends = [upstream] if isinstance(upstream, str) else upstream
    text = _replace(text, SHIPPED_UPSTREAM, "\n    ".join(f"server {backend};" for backend in backends))
    if base_url != "/":
        text = _replace(text, SHIPPED_PROXY_LOCATION, SHIPPED_PROXY_LOCATION.replace("/", base_url, 1))
        text = _replace(text, SHIPPED_WS_LOCATION, f"location {base_url}api/v1/ws {{")
    return text


class NginxServer:
    """nginx in the foreground (`daemon off`), as a subprocess of the tests."""

    def __init__(
        self,
        root: Path,
        upstream: str | list[str],
        certificate: Path,
        key: Path,
        base_url: str = "/",
        server_name: str = "localhost",
    ) -> None:
        self.root = root
        self.http_port = free_port()
        self.https_port = free_port()
        self.server_name = server_name
        self.webroot = root / "webroot"
        self.maintenance_root = root / "maintenance"
        self.site_path = root / "synthorg.conf"
        self.conf_path = root / "nginx.conf"
        self.error_log = root / "error.log"
        self.process: subprocess.Popen | None = None

        for folder in (root / "temp", self.webroot, self.maintenance_root):
            folder.mkdir(parents=True, exist_ok=True)
        (self.maintenance_root / "maintenance.html").write_bytes(MAINTENANCE_PAGE.read_bytes())
        self.site_path.write_text(
            render_site(
                SHIPPED_CONF.read_text(),
                http_port=self.http_port,
                https_port=self.https_port,
                server_name=server_name,
                certificate=certificate,
                key=key,
                webroot=self.webroot,
                upstream=upstream,
                maintenance_root=self.maintenance_root,
                base_url=base_url,
                ipv6=ipv6_loopback_available(),
            )
        )
        # As root, nginx would hand the workers to `nobody`, who cannot enter pytest's private
        # temporary directories; the test workers keep our own identity instead.
        user = "user root;\n" if os.geteuid() == 0 else ""
        self.conf_path.write_text(WRAPPER.format(user=user, root=root, site=self.site_path))

    @property
    def https_url(self) -> str:
        return f"https://{self.server_name}:{self.https_port}/"

    @property
    def http_url(self) -> str:
        return f"http://{self.server_name}:{self.http_port}/"

    def command(self, *extra: str) -> list[str]:
        return [NGINX, "-p", str(self.root), "-e", str(self.error_log), "-c", str(self.conf_path), *extra]

    def check(self) -> subprocess.CompletedProcess:
        """`nginx -t` on the rendered configuration."""
        return subprocess.run(self.command("-t"), capture_output=True, text=True, check=False)

    def start(self) -> NginxServer:
        with (self.root / "stderr.log").open("w") as stderr:
            self.process = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            wait_for(self._accepting, START_TIMEOUT, "nginx to accept connections")
        except BaseException:
            self.stop()
            raise
        return self

    def _accepting(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"nginx exited with {self.process.returncode}:\n{self.log()}")
        for port in (self.http_port, self.https_port):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except OSError:
                return False
        return True

    def log(self) -> str:
        logs = (self.error_log, self.root / "stderr.log")
        return "".join(path.read_text(errors="replace") for path in logs if path.exists())

    def stop(self) -> None:
        """Graceful stop (SIGQUIT), then SIGTERM, then SIGKILL, each with a deadline."""
        if self.process is None:
            return
        for sig in (signal.SIGQUIT, signal.SIGTERM, signal.SIGKILL):
            if self.process.poll() is not None:
                break
            self.process.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(STOP_TIMEOUT)
