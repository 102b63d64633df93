"""What to run: frozen settings objects, built from the CLI or a TOML file.

A TOML file lists services; top-level keys are defaults for all of them::

    host = "127.0.0.1"
    idle_timeout = 60

    [[service]]
    service = "echo"
    port = 9000

    [[service]]
    service = "hello"
    port = 0
    banner = "welcome to the hotline"
    max_conns = 100

    [[service]]
    service = "mypkg.shout:Shout"
    unix = "/tmp/shout.sock"
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from sockhub.errors import ConfigError
from sockhub.limits import Limits, limit_names


@dataclass(frozen=True, kw_only=True)
class ServiceConfig:
    """One service to run and where.

    Attributes:
        service: a built-in name (``"echo"``) or ``"pkg.module:Class"``.
        hosts: addresses to bind; loopback unless asked otherwise.
        port: TCP/UDP port; ``None`` means the service's default, 0 a free one.
        unix: a Unix socket path to listen on instead of TCP.
        tls_cert, tls_key: PEM files; both set means TLS on this listener.
        banner: a line sent to every client on connect (seed 000's welcome).
        workers: processes sharing the port with SO_REUSEPORT.
        reuse_port: set SO_REUSEPORT (workers do it for you).
        limits: caps and timeouts set explicitly (by name, see
            :class:`~sockhub.limits.Limits`); the rest come from the
            service's own defaults, then the engine's.
        options: service-specific settings, passed to the protocol.
    """

    service: str
    hosts: tuple[str, ...] = ("127.0.0.1",)
    port: int | None = None
    unix: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    banner: str | None = None
    workers: int = 1
    reuse_port: bool = False
    limits: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError(f"{self.service}: --tls-cert and --tls-key go together")
        if self.port is not None and not 0 <= self.port <= 65535:
            raise ConfigError(f"{self.service}: port {self.port} is out of range 0-65535")
        if self.workers < 1:
            raise ConfigError(f"{self.service}: workers must be at least 1")

        try:
            Limits().merged(**self.limits)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{self.service}: {exc}") from exc

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    def resolved_limits(self, service_defaults: dict[str, Any]) -> Limits:
        """Engine defaults, then the service's, then what was set explicitly."""
        return Limits().merged(**{**service_defaults, **self.limits})


_SERVICE_KEYS = {f.name for f in fields(ServiceConfig)} - {"limits", "hosts"} | {"host"}


def load_toml(path: str | Path, *, base: dict[str, Any] | None = None) -> list[ServiceConfig]:
    """Read a TOML file of services (see the module docstring).

    Args:
        path: the file.
        base: defaults from the command line, overridden by the file.

    Raises:
        ConfigError: unreadable file, bad TOML, unknown keys, bad values.
    """
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    services = data.pop("service", None)
    if not isinstance(services, list) or not services:
        raise ConfigError(f"{path}: no [[service]] tables")
    defaults = {**(base or {}), **data}
    return [service_from_mapping({**defaults, **table}, where=f"{path}") for table in services]


def service_from_mapping(values: dict[str, Any], *, where: str = "config") -> ServiceConfig:
    """Build a ServiceConfig from flat keys (service keys plus limit names)."""
    limits_keys = set(limit_names())
    unknown = set(values) - _SERVICE_KEYS - limits_keys - {"options"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s): {', '.join(sorted(unknown))}")
    if "service" not in values:
        raise ConfigError(f"{where}: every [[service]] needs a 'service' key")
    kwargs = {k: v for k, v in values.items() if k in _SERVICE_KEYS and k != "host"}
    host = values.get("host")
    if host is not None:
        kwargs["hosts"] = tuple(host) if isinstance(host, list) else (str(host),)
    limit_values = {k: v for k, v in values.items() if k in limits_keys}
    try:
        return ServiceConfig(limits=limit_values, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
