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

Each key is declared once, as a field of :class:`ServiceConfig` or
:class:`~sockhub.limits.Limits`, or of a service's settings class for the
keys of its ``options`` table (docs/config.md lists them all).
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sockhub.errors import ConfigError
from sockhub.limits import Limits, limit_names
from sockhub.options import build, declared, from_words, option, port_number, settle

if TYPE_CHECKING:
    from sockhub.engine.service import ServiceSpec

S = TypeVar("S")


def _table(name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{name} must be a table, not {value!r}")
    return value


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
        options: the service's own options as written (the command line's,
            the file's ``options`` table); a protocol of your own gets them as
            ``info.options``.
        settings_type: the service's settings class (``spec.settings``), if
            it has one: ``options`` are then checked and made into
            ``settings`` when the config is made (or replaced).
        settings: the typed settings made from ``options``.
    """

    service: str = option(
        help="a built-in service name, or package.module:Class (SERVICE on the command line)",
        cli=False,
    )
    hosts: tuple[str, ...] = option(
        ("127.0.0.1",), "address to bind; '::1' for IPv6", key="host", metavar="ADDR"
    )
    port: int | None = option(
        None, "port; 0 picks a free one, logged", metavar="N", check=port_number,
        default_text="the service's",
    )
    unix: str | None = option(
        None, "listen on a Unix socket at this path instead of TCP", metavar="PATH"
    )
    tls_cert: str | None = option(
        None, "TLS certificate chain, PEM (with --tls-key)", metavar="PEM"
    )
    tls_key: str | None = option(None, "TLS private key, PEM (with --tls-cert)", metavar="PEM")
    banner: str | None = option(None, "a line sent to each client on connect", metavar="TEXT")
    workers: int = option(
        1, "processes sharing the port via SO_REUSEPORT, for stateless services", minimum=1
    )
    reuse_port: bool = option(False, "set SO_REUSEPORT (workers do it for you)", cli=False)
    limits: dict[str, Any] = field(default_factory=dict)
    # Not in the repr: it may hold a password.
    options: dict[str, Any] = option(
        factory=dict, help="the service's own options (the tables below), or a table your "
        "protocol gets as info.options", secret=True, cli=False, check=_table,
    )
    settings_type: type[Any] | None = field(default=None, repr=False, compare=False)
    settings: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError(f"{self.service}: --tls-cert and --tls-key go together")
        try:
            settle(self)
            Limits().merged(**self.limits)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{self.service}: {exc}") from exc
        if self.settings_type is not None:
            settings = build(self.settings_type, self.options, where=self.service)
            object.__setattr__(self, "settings", settings)

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    def resolved_limits(self, service_defaults: dict[str, Any]) -> Limits:
        """Engine defaults, then the service's, then what was set explicitly."""
        return Limits().merged(**{**service_defaults, **self.limits})

    def settings_as(self, kind: type[S]) -> S:
        """The service's typed settings, made from ``options`` if the config was made without.

        Raises:
            ConfigError: the options do not pass their checks.
        """
        if isinstance(self.settings, kind):
            return self.settings
        return build(kind, self.options, where=self.service)


#: Finds a service's spec by name (``services.registry.resolve``).
Resolver = Callable[[str], "ServiceSpec"]

#: The config keys of a service table, each the name of a ServiceConfig field but ``host``.
_SERVICE_KEYS = {d.key: d.name for d in declared(ServiceConfig)}


def load_toml(
    path: str | Path,
    *,
    base: Mapping[str, Any] | None = None,
    options: Callable[[str], Mapping[str, Any]] | None = None,
    resolve: Resolver | None = None,
) -> list[ServiceConfig]:
    """Read a TOML file of services (see the module docstring).

    Args:
        path: the file.
        base: defaults from the command line, overridden by the file.
        options: a service's options from the command line (by service
            name), overridden key by key by the file's ``options`` tables.
        resolve: finds each service's spec, so that its options are made
            into its settings (and checked) now, not when it starts.

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
    configs = []
    for table in services:
        values = {**defaults, **table}
        if options is not None and isinstance(values.get("service"), str):
            layers = (options(values["service"]), data.get("options", {}),
                      table.get("options", {}))
            if all(isinstance(layer, Mapping) for layer in layers):
                values["options"] = {k: v for layer in layers for k, v in layer.items()}
        configs.append(service_from_mapping(values, where=str(path), resolve=resolve))
    return configs


def service_from_mapping(
    values: Mapping[str, Any], *, where: str | None = None, resolve: Resolver | None = None
) -> ServiceConfig:
    """Build a ServiceConfig from flat keys (service keys plus limit names).

    Args:
        values: the keys, as a config file spells them.
        where: put before every message (a file's name).
        resolve: finds the service's spec, for its settings class.
    """
    try:
        return _from_mapping(values, resolve)
    except ConfigError as exc:
        if where is None:
            raise
        raise ConfigError(f"{where}: {exc}") from exc


def _from_mapping(values: Mapping[str, Any], resolve: Resolver | None) -> ServiceConfig:
    limits_keys = set(limit_names())
    unknown = set(values) - set(_SERVICE_KEYS) - limits_keys
    if unknown:
        raise ConfigError(f"unknown key(s): {', '.join(sorted(unknown))}")
    if "service" not in values:
        raise ConfigError("every [[service]] needs a 'service' key")
    kwargs = {_SERVICE_KEYS[k]: v for k, v in values.items() if k in _SERVICE_KEYS}
    host = values.get("host")
    if host is not None:
        kwargs["hosts"] = tuple(host) if isinstance(host, list) else (str(host),)
    limit_values = from_words(Limits, {k: v for k, v in values.items() if k in limits_keys})
    if resolve is not None:
        spec = resolve(str(values["service"]))
        if isinstance(kwargs.get("workers"), int):
            spec.check_workers(kwargs["workers"], kwargs.get("options"))
        kwargs["settings_type"] = spec.settings
    try:
        return ServiceConfig(limits=limit_values, **kwargs)
    except TypeError as exc:
        raise ConfigError(str(exc)) from exc
