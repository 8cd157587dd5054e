"""`config.yaml`, its environment overrides, and `config check|show`, as a sysadmin meets them.

Most tests call the command line in-process (`main(argv)` returns the exit code); one runs the real
`python -m synthorg_tornado` to show that the shipped command exits 2 without a traceback.
"""

from __future__ import annotations

import os
import ssl
import stat
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from synthorg_tornado.cli.main import main
from synthorg_tornado.config import (
    ConfigError,
    build_ssl_context,
    ensure_secret,
    load_config,
    resolve_config_path,
)
from tests.servers import REPO, make_certificate, write_config

SQLITE = "sqlite+aiosqlite:///synthorg.db"
POSTGRES = "postgresql+psycopg://lab@127.0.0.1:1/lab"


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str

    @property
    def errors(self) -> list[str]:
        return [line[len("error: ") :] for line in self.stderr.splitlines() if line.startswith("error: ")]

    @property
    def warnings(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("warning: ")]


Cli = Callable[..., Outcome]


@dataclass
class Certificates:
    cert_a: Path
    key_a: Path
    cert_b: Path
    key_b: Path


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No SYNTHORG_* variable from the caller's shell, and no ./config.yaml but the test's own."""
    for name in list(os.environ):
        if name.startswith("SYNTHORG_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    def run(*argv: str) -> Outcome:
        code = main(list(argv))
        out, err = capsys.readouterr()
        return Outcome(code, out, err)

    return run


@pytest.fixture
def check(cli: Cli) -> Callable[[Path], Outcome]:
    return lambda path: cli("config", "check", "--config", str(path))


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    directory = tmp_path_factory.mktemp("tls")
    cert_a, key_a = make_certificate(directory, "a")
    cert_b, key_b = make_certificate(directory, "b")
    return Certificates(cert_a, key_a, cert_b, key_b)


def assert_one_error(outcome: Outcome, *fragments: str) -> str:
    """Exit 2, exactly one `error:` line containing every fragment, and nothing else on stderr."""
    assert outcome.code == 2, outcome
    assert len(outcome.errors) == 1, outcome.stderr
    assert all(line.startswith(("error: ", "warning: ")) for line in outcome.stderr.splitlines())
    for fragment in fragments:
        assert fragment in outcome.errors[0]
    return outcome.errors[0]


def assert_accepted(outcome: Outcome) -> None:
    assert outcome.code == 0, outcome.stderr
    assert outcome.errors == []
    assert outcome.stdout.startswith("config OK: ")


def config_file(tmp_path: Path, database_url: str = SQLITE, **sections: dict[str, Any]) -> Path:
    return write_config(tmp_path, database_url, **sections)


# The shipped file


def test_shipped_config_yaml_is_accepted(check: Callable[[Path], Outcome]) -> None:
    outcome = check(REPO / "config.yaml")
    assert_accepted(outcome)
    assert str(REPO / "config.yaml") in outcome.stdout


def test_shipped_config_yaml_gives_the_documented_defaults(tmp_path: Path) -> None:
    copy = tmp_path / "config.yaml"
    copy.write_text((REPO / "config.yaml").read_text())
    config = load_config(copy, environ={})
    assert (config.server.host, config.server.port, config.server.base_url) == ("127.0.0.1", 8888, "/")
    assert config.database.url == f"sqlite+aiosqlite:///{tmp_path / 'synthorg.db'}"
    assert config.secret_path == tmp_path / "synthorg_secret"
    assert config.server.processes == 1 and not config.server.tls_enabled
    assert config.sources["server.port"] == "file"
    assert config.sources["auth.bcrypt_rounds"] == "default"


# TLS


def test_certfile_without_keyfile_is_one_error(tmp_path: Path, check, certificates: Certificates) -> None:
    path = config_file(tmp_path, server={"ssl_certfile": str(certificates.cert_a)})
    assert_one_error(check(path), "server.ssl_certfile is set but server.ssl_keyfile is not")


def test_keyfile_without_certfile_is_one_error(tmp_path: Path, check, certificates: Certificates) -> None:
    path = config_file(tmp_path, server={"ssl_keyfile": str(certificates.key_a)})
    assert_one_error(check(path), "server.ssl_keyfile is set but server.ssl_certfile is not")


def test_missing_certificate_file_is_named(tmp_path: Path, check, certificates: Certificates) -> None:
    missing = tmp_path / "nowhere.crt"
    path = config_file(
        tmp_path, server={"ssl_certfile": str(missing), "ssl_keyfile": str(certificates.key_a)}
    )
    assert_one_error(check(path), "server.ssl_certfile", str(missing), "does not exist")


def test_key_that_does_not_match_the_certificate_is_one_error(
    tmp_path: Path, check, certificates: Certificates
) -> None:
    path = config_file(
        tmp_path,
        server={"ssl_certfile": str(certificates.cert_a), "ssl_keyfile": str(certificates.key_b)},
    )
    assert_one_error(check(path), str(certificates.key_b), "does not match", str(certificates.cert_a))


def test_matching_certificate_and_key_are_accepted(tmp_path: Path, check, certificates: Certificates) -> None:
    path = config_file(
        tmp_path,
        server={"ssl_certfile": str(certificates.cert_a), "ssl_keyfile": str(certificates.key_a)},
    )
    assert_accepted(check(path))


def test_certificate_file_that_holds_no_certificate_is_named(
    tmp_path: Path, check, certificates: Certificates
) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    path = config_file(
        tmp_path, server={"ssl_certfile": str(garbage), "ssl_keyfile": str(certificates.key_a)}
    )
    assert_one_error(check(path), "server.ssl_certfile", str(garbage), "no PEM certificate")


def test_certificate_path_that_is_a_directory_is_named(
    tmp_path: Path, check, certificates: Certificates
) -> None:
    path = config_file(
        tmp_path, server={"ssl_certfile": str(tmp_path), "ssl_keyfile": str(certificates.key_a)}
    )
    assert_one_error(check(path), "server.ssl_certfile", "is not a file")


def test_encrypted_key_is_refused_without_asking_for_a_passphrase(
    tmp_path: Path, check, certificates: Certificates
) -> None:
    encrypted = tmp_path / "encrypted.key"
    subprocess.run(
        [
            "openssl",
            "pkey",
            "-in",
            str(certificates.key_a),
            "-aes256",
            "-passout",
            "pass:lab",
            "-out",
            str(encrypted),
        ],
        check=True,
        capture_output=True,
    )
    path = config_file(
        tmp_path, server={"ssl_certfile": str(certificates.cert_a), "ssl_keyfile": str(encrypted)}
    )
    assert_one_error(check(path), "server.ssl_keyfile", str(encrypted), "encrypted")


@pytest.mark.parametrize("blank", ["", "   "])
def test_empty_or_whitespace_tls_paths_mean_not_set(tmp_path: Path, check, blank: str) -> None:
    path = config_file(tmp_path, server={"ssl_certfile": blank, "ssl_keyfile": blank, "ssl_ca_certs": blank})
    assert_accepted(check(path))
    config = load_config(path, environ={})
    assert config.server.ssl_certfile is None and config.server.ssl_keyfile is None
    assert config.server.ssl_ca_certs is None and not config.server.tls_enabled


def test_empty_environment_value_unsets_a_tls_path_from_the_file(
    tmp_path: Path, certificates: Certificates
) -> None:
    path = config_file(
        tmp_path,
        server={"ssl_certfile": str(certificates.cert_a), "ssl_keyfile": str(certificates.key_a)},
    )
    config = load_config(
        path, environ={"SYNTHORG_SERVER_SSL_CERTFILE": "", "SYNTHORG_SERVER_SSL_KEYFILE": " "}
    )
    assert not config.server.tls_enabled
    assert config.sources["server.ssl_certfile"] == "env:SYNTHORG_SERVER_SSL_CERTFILE"


def test_ca_certs_without_certificate_and_key_is_one_error(
    tmp_path: Path, check, certificates: Certificates
) -> None:
    path = config_file(tmp_path, server={"ssl_ca_certs": str(certificates.cert_b)})
    assert_one_error(check(path), "server.ssl_ca_certs needs server.ssl_certfile and server.ssl_keyfile")


def test_ca_certs_with_certificate_and_key_require_client_certificates_over_tls_1_2(
    tmp_path: Path, check, certificates: Certificates
) -> None:
    path = config_file(
        tmp_path,
        server={
            "ssl_certfile": str(certificates.cert_a),
            "ssl_keyfile": str(certificates.key_a),
            "ssl_ca_certs": str(certificates.cert_b),
        },
    )
    assert_accepted(check(path))
    context = build_ssl_context(load_config(path, environ={}).server)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


def test_ca_bundle_that_holds_no_certificate_is_blamed_not_the_key(
    tmp_path: Path, check, certificates: Certificates
) -> None:
    garbage = tmp_path / "ca.pem"
    garbage.write_text("not a bundle\n")
    path = config_file(
        tmp_path,
        server={
            "ssl_certfile": str(certificates.cert_a),
            "ssl_keyfile": str(certificates.key_a),
            "ssl_ca_certs": str(garbage),
        },
    )
    line = assert_one_error(check(path), "server.ssl_ca_certs", str(garbage))
    assert "ssl_keyfile" not in line


def test_relative_tls_paths_resolve_against_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, check, certificates: Certificates
) -> None:
    folder = tmp_path / "etc"
    (folder / "tls").mkdir(parents=True)
    (folder / "tls" / "server.crt").write_bytes(certificates.cert_a.read_bytes())
    (folder / "tls" / "server.key").write_bytes(certificates.key_a.read_bytes())
    path = config_file(folder, server={"ssl_certfile": "tls/server.crt", "ssl_keyfile": "tls/server.key"})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    config = load_config(path, environ={})
    assert config.server.ssl_certfile == str(folder / "tls" / "server.crt")
    assert config.server.ssl_keyfile == str(folder / "tls" / "server.key")
    assert_accepted(check(path))


# Trusted proxies


@pytest.mark.parametrize("entry", ["0.0.0.0/0", "10.0.0.0/7", "::/0", "2001:db8::/31"])
def test_trusted_proxy_network_that_is_too_broad_is_one_error(tmp_path: Path, check, entry: str) -> None:
    path = config_file(tmp_path, server={"trusted_proxies": [entry]})
    assert_one_error(check(path), "server.trusted_proxies", f"'{entry}'", "too broad")


def test_trusted_proxy_with_host_bits_set_names_the_network_meant(tmp_path: Path, check) -> None:
    path = config_file(tmp_path, server={"trusted_proxies": ["10.0.0.5/8"]})
    assert_one_error(check(path), "'10.0.0.5/8' has host bits set", "did you mean '10.0.0.0/8'?")


def test_trusted_proxy_that_is_not_an_address_is_one_error(tmp_path: Path, check) -> None:
    path = config_file(tmp_path, server={"trusted_proxies": ["nginx.internal"]})
    assert_one_error(check(path), "'nginx.internal' is not an IP address or CIDR")


@pytest.mark.parametrize("entry", ["127.0.0.1", "10.0.0.0/8", "::1", "2001:db8::/32", "192.168.1.0/24"])
def test_trusted_proxy_addresses_and_narrow_networks_are_accepted(tmp_path: Path, check, entry: str) -> None:
    path = config_file(tmp_path, server={"trusted_proxies": [entry]})
    assert_accepted(check(path))


# Unknown keys


def test_unknown_key_is_named_with_the_closest_known_one(tmp_path: Path, check) -> None:
    path = config_file(tmp_path, server={"prot": 1})
    assert_one_error(check(path), "unknown key 'server.prot'", "did you mean 'server.port'?")


def test_unknown_section_is_named_with_the_closest_known_one(tmp_path: Path, check) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("servre:\n  port: 9000\n")
    assert_one_error(check(path), "unknown section 'servre'", "did you mean 'server'?")


# Plain HTTP on the network


def test_non_loopback_bind_without_tls_or_proxies_refuses_and_says_how_to_fix(tmp_path: Path, check) -> None:
    path = config_file(tmp_path, server={"host": "0.0.0.0"})
    line = assert_one_error(check(path), "server.host 0.0.0.0")
    for remedy in ("server.ssl_certfile", "server.ssl_keyfile", "server.trusted_proxies"):
        assert remedy in line
    assert "server.allow_plain_http_remote: true" in line


def test_non_loopback_plain_http_is_accepted_with_a_warning_when_allowed(tmp_path: Path, check) -> None:
    path = config_file(tmp_path, server={"host": "0.0.0.0", "allow_plain_http_remote": True})
    outcome = check(path)
    assert_accepted(outcome)
    assert len(outcome.warnings) == 1 and "plain HTTP on 0.0.0.0" in outcome.warnings[0]


def test_non_loopback_bind_behind_trusted_proxies_is_accepted(tmp_path: Path, check) -> None:
    path = config_file(tmp_path, server={"host": "0.0.0.0", "trusted_proxies": ["10.1.2.3"]})
    outcome = check(path)
    assert_accepted(outcome)
    assert any("trusted proxies" in warning for warning in outcome.warnings)


def test_non_loopback_bind_with_tls_is_accepted(tmp_path: Path, check, certificates: Certificates) -> None:
    path = config_file(
        tmp_path,
        server={
            "host": "0.0.0.0",
            "ssl_certfile": str(certificates.cert_a),
            "ssl_keyfile": str(certificates.key_a),
        },
    )
    outcome = check(path)
    assert_accepted(outcome)
    assert outcome.warnings == []


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_binds_need_neither_tls_nor_proxies(tmp_path: Path, check, host: str) -> None:
    assert_accepted(check(config_file(tmp_path, server={"host": host})))


# Processes and the database


def test_several_processes_on_sqlite_is_one_error_saying_why(tmp_path: Path, check) -> None:
    path = config_file(tmp_path, server={"processes": 2})
    assert_one_error(check(path), "server.processes: 2 needs PostgreSQL", "share revocations")


def test_several_processes_on_postgresql_are_accepted_without_connecting(tmp_path: Path, check) -> None:
    # Port 1 has no database behind it: a check that connected would fail.
    path = config_file(tmp_path, POSTGRES, server={"processes": 2})
    assert_accepted(check(path))
    assert load_config(path, environ={}).server.processes == 2


def test_relative_sqlite_database_resolves_against_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "lab"
    path = config_file(folder, "sqlite+aiosqlite:///data/lab.db")
    monkeypatch.chdir(tmp_path)
    config = load_config(path, environ={})
    assert config.database.url == f"sqlite+aiosqlite:///{folder / 'data' / 'lab.db'}"
    assert config.secret_path == folder / "data" / "synthorg_secret"


def test_plain_sqlite_and_postgresql_urls_get_the_async_drivers(tmp_path: Path) -> None:
    sqlite = load_config(config_file(tmp_path, "sqlite:///lab.db"), environ={})
    assert sqlite.database.url == f"sqlite+aiosqlite:///{tmp_path / 'lab.db'}"
    postgres = load_config(config_file(tmp_path, "postgresql://lab@db/lab"), environ={})
    assert postgres.database.url == "postgresql+psycopg://lab@db/lab"


def test_unsupported_database_is_one_error(tmp_path: Path, check) -> None:
    path = config_file(tmp_path, "mysql://lab:hunter2@db/lab")
    outcome = check(path)
    assert_one_error(outcome, "database.url", "not mysql")
    assert "hunter2" not in outcome.stderr


def test_unparseable_database_url_is_one_error_without_the_password(tmp_path: Path, check) -> None:
    path = config_file(tmp_path, "postgresql://lab:hunter2@db:notaport/lab", server={"processes": 2})
    outcome = check(path)
    assert_one_error(outcome, "database.url is not a valid database URL")
    assert "hunter2" not in outcome.stderr


# Several problems


def test_several_problems_give_one_line_each(tmp_path: Path, check) -> None:
    path = config_file(
        tmp_path,
        server={"prot": 1, "processes": 2, "trusted_proxies": ["0.0.0.0/0"]},
        auth={"bcrypt_rounds": 99},
    )
    outcome = check(path)
    assert outcome.code == 2
    assert len(outcome.errors) == 4, outcome.stderr
    joined = "\n".join(outcome.errors)
    for key in ("server.prot", "server.processes", "server.trusted_proxies", "auth.bcrypt_rounds"):
        assert key in joined
    assert outcome.stdout == ""


def test_check_command_exits_2_with_one_line_per_problem_and_no_traceback(tmp_path: Path) -> None:
    path = config_file(tmp_path, server={"prot": 1, "trusted_proxies": ["10.0.0.5/8"]})
    environment = {name: value for name, value in os.environ.items() if not name.startswith("SYNTHORG_")}
    result = subprocess.run(
        [sys.executable, "-m", "synthorg_tornado", "config", "check", "--config", str(path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=environment,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 2, result.stderr
    assert all(line.startswith("error: ") for line in lines)
    assert "Traceback" not in result.stderr
    assert "did you mean 'server.port'?" in lines[0]
    assert "did you mean '10.0.0.0/8'?" in lines[1]


# Values and types


@pytest.mark.parametrize(
    ("section", "values", "fragment"),
    [
        ("server", {"port": 70000}, "server.port: must be at most 65535"),
        ("server", {"port": "eighty"}, "server.port: expected a whole number"),
        (
            "server",
            {"allow_plain_http_remote": "maybe"},
            "server.allow_plain_http_remote: expected true or false",
        ),
        ("server", {"trusted_proxies": "127.0.0.1"}, "server.trusted_proxies: expected a list"),
        ("server", {"allowed_origins": ["lab.example.org"]}, "'lab.example.org' is not an origin"),
        ("logging", {"level": "LOUD"}, "logging.level: must be one of"),
        ("server", {"host": ""}, "server.host: must not be empty"),
    ],
)
def test_bad_values_are_one_error_naming_the_key(
    tmp_path: Path, check, section: str, values: dict[str, Any], fragment: str
) -> None:
    assert_one_error(check(config_file(tmp_path, **{section: values})), fragment)


def test_base_url_is_normalised_to_leading_and_trailing_slash(tmp_path: Path) -> None:
    config = load_config(config_file(tmp_path, server={"base_url": "lab"}), environ={})
    assert config.server.base_url == "/lab/"


# Environment overrides


def test_environment_wins_over_the_file_and_reports_its_source(tmp_path: Path) -> None:
    path = config_file(tmp_path, server={"port": 8123})
    config = load_config(path, environ={"SYNTHORG_SERVER_PORT": "9000"})
    assert config.server.port == 9000
    assert config.sources["server.port"] == "env:SYNTHORG_SERVER_PORT"
    assert load_config(path, environ={}).server.port == 8123


def test_config_show_reports_an_environment_value_and_its_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Cli
) -> None:
    path = config_file(tmp_path, server={"port": 8123})
    monkeypatch.setenv("SYNTHORG_SERVER_PORT", "9000")
    outcome = cli("config", "show", "--config", str(path))
    assert outcome.code == 0, outcome.stderr
    rows = {line.split()[0]: line for line in outcome.stdout.splitlines() if not line.startswith("#")}
    assert rows["server.port"].split() == ["server.port", "9000", "(env:SYNTHORG_SERVER_PORT)"]
    assert rows["server.host"].split() == ["server.host", "127.0.0.1", "(file)"]
    assert rows["auth.lockout_minutes"].split() == ["auth.lockout_minutes", "15", "(default)"]


def test_environment_lists_are_comma_separated(tmp_path: Path) -> None:
    path = config_file(tmp_path)
    config = load_config(path, environ={"SYNTHORG_SERVER_TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/8,"})
    assert config.server.trusted_proxies == ("127.0.0.1", "10.0.0.0/8")


def test_environment_booleans_accept_the_usual_words(tmp_path: Path) -> None:
    path = config_file(tmp_path, server={"host": "0.0.0.0"})
    config = load_config(path, environ={"SYNTHORG_SERVER_ALLOW_PLAIN_HTTP_REMOTE": "yes"})
    assert config.server.allow_plain_http_remote is True
    with pytest.raises(ConfigError) as refused:
        load_config(path, environ={"SYNTHORG_SERVER_ALLOW_PLAIN_HTTP_REMOTE": "off"})
    assert len(refused.value.problems) == 1 and "allow_plain_http_remote" in refused.value.problems[0]


def test_database_url_comes_from_synthorg_database_url(tmp_path: Path) -> None:
    config = load_config(config_file(tmp_path), environ={"SYNTHORG_DATABASE_URL": POSTGRES})
    assert config.database.url == POSTGRES and config.database.is_postgresql
    assert config.sources["database.url"] == "env:SYNTHORG_DATABASE_URL"


def test_unknown_environment_variable_is_an_error_with_a_suggestion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, check
) -> None:
    monkeypatch.setenv("SYNTHORG_SERVER_PROT", "9000")
    outcome = check(config_file(tmp_path))
    assert_one_error(outcome, "SYNTHORG_SERVER_PROT", "did you mean 'SYNTHORG_SERVER_PORT'?")


def test_bad_environment_value_is_one_error_naming_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, check
) -> None:
    monkeypatch.setenv("SYNTHORG_SERVER_PORT", "http")
    assert_one_error(check(config_file(tmp_path)), "server.port: expected a whole number, got 'http'")


# Choosing the file


def test_synthorg_config_chooses_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Cli) -> None:
    path = config_file(tmp_path / "chosen", server={"port": 8123})
    monkeypatch.setenv("SYNTHORG_CONFIG", str(path))
    outcome = cli("config", "show")
    assert outcome.code == 0, outcome.stderr
    assert outcome.stdout.splitlines()[0] == f"# {path}"
    assert "8123" in outcome.stdout


def test_config_option_wins_over_synthorg_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Cli
) -> None:
    monkeypatch.setenv("SYNTHORG_CONFIG", str(config_file(tmp_path / "from-env")))
    explicit = config_file(tmp_path / "explicit")
    outcome = cli("config", "show", "--config", str(explicit))
    assert outcome.stdout.splitlines()[0] == f"# {explicit}"


def test_config_path_falls_back_to_config_yaml_in_the_working_directory(tmp_path: Path) -> None:
    assert resolve_config_path(None, environ={}) == tmp_path / "config.yaml"
    assert resolve_config_path(None, environ={"SYNTHORG_CONFIG": "lab.yaml"}) == tmp_path / "lab.yaml"
    assert (
        resolve_config_path("given.yaml", environ={"SYNTHORG_CONFIG": "lab.yaml"}) == tmp_path / "given.yaml"
    )


def test_missing_config_file_is_one_error(tmp_path: Path, check) -> None:
    assert_one_error(check(tmp_path / "absent.yaml"), str(tmp_path / "absent.yaml"), "does not exist")


def test_yaml_that_is_not_a_mapping_is_one_error(tmp_path: Path, check) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("- server\n- database\n")
    assert_one_error(check(path), "must be a mapping of sections")


def test_invalid_yaml_is_one_error_with_its_position(tmp_path: Path, check) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("server:\n  trusted_proxies: [127.0.0.1\n")
    assert_one_error(check(path), str(path), "is not valid YAML at line 3")


def test_empty_file_means_all_defaults(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("")
    config = load_config(path, environ={})
    assert config.server.port == 8888
    assert set(config.sources.values()) == {"default"}


# Secrets


def test_config_show_never_prints_the_database_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Cli
) -> None:
    path = config_file(tmp_path, "postgresql+psycopg://lab:hunter2@db.example.org/lab")
    outcome = cli("config", "show", "--config", str(path))
    assert outcome.code == 0, outcome.stderr
    assert "hunter2" not in outcome.stdout + outcome.stderr
    assert "postgresql+psycopg://lab:***@db.example.org/lab" in outcome.stdout

    monkeypatch.setenv("SYNTHORG_DATABASE_URL", "postgresql+psycopg://lab:s3cret@db/lab")
    outcome = cli("config", "show", "--config", str(path))
    assert "s3cret" not in outcome.stdout + outcome.stderr
    assert "(env:SYNTHORG_DATABASE_URL)" in outcome.stdout


def test_ensure_secret_creates_the_file_readable_only_by_its_owner(tmp_path: Path) -> None:
    config = load_config(config_file(tmp_path), environ={})
    secret_path = tmp_path / "synthorg_secret"
    assert not secret_path.exists()
    secret = ensure_secret(config)
    assert len(secret) >= 32
    assert stat.S_IMODE(secret_path.stat().st_mode) == 0o600
    assert ensure_secret(config) == secret


def test_ensure_secret_honours_a_relative_secret_file(tmp_path: Path) -> None:
    config = load_config(config_file(tmp_path, auth={"secret_file": "keys/signing"}), environ={})
    ensure_secret(config)
    assert stat.S_IMODE((tmp_path / "keys" / "signing").stat().st_mode) == 0o600


def test_secret_readable_by_others_is_refused(tmp_path: Path, check) -> None:
    path = config_file(tmp_path)
    config = load_config(path, environ={})
    secret_path = tmp_path / "synthorg_secret"
    secret_path.write_text("x" * 64)
    secret_path.chmod(0o644)

    with pytest.raises(ConfigError) as refused:
        ensure_secret(config)
    assert refused.value.problems == [
        f"auth.secret_file {secret_path} is readable by group or others; run: chmod 600 {secret_path}"
    ]
    assert_one_error(check(path), str(secret_path), "mode 644", f"chmod 600 {secret_path}")


def test_secret_that_is_too_short_is_refused(tmp_path: Path) -> None:
    config = load_config(config_file(tmp_path), environ={})
    secret_path = tmp_path / "synthorg_secret"
    secret_path.write_text("short\n")
    secret_path.chmod(0o600)
    with pytest.raises(ConfigError, match="shorter than 32 bytes"):
        ensure_secret(config)
