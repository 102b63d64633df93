"""The built-in services by name, and ``pkg.module:Class`` for your own.

A plain dict, not import strings, for the closed set sockhub ships; a
user's class is imported only when named with a colon on the command line.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from typing import Protocol as TypingProtocol

from sockhub.errors import ConfigError
from sockhub.protocols.base import DatagramProtocol, LineProtocol, Protocol
from sockhub.protocols.echo import Echo, Hello, UdpEcho, Upper
from sockhub.protocols.exec import ExecServerProtocol

if TYPE_CHECKING:
    from sockhub.config import ServiceConfig
    from sockhub.limits import Limits


@dataclass(frozen=True)
class Door:
    """One listener of a stateful service, sharing the service's state.

    Attributes:
        name: the listener's name in logs (``chat``, ``irc``).
        port: where it listens; ``None`` means this door stays closed.
        make_protocol: a protocol for one new connection, wired to the state.
        primary: the door that takes the service's ``--unix`` path and
            ``--banner``, if any.
        refusal: the bytes for a client refused before it was admitted (server
            full), in this door's protocol; None: the service's default.
    """

    name: str
    port: int | None
    make_protocol: Callable[[], Protocol]
    primary: bool = False
    refusal: Callable[[str], bytes] | None = None


class ServiceRuntime(TypingProtocol):
    """Shared state of a stateful service (the chat hub) and its doors."""

    def doors(self) -> list[Door]:
        """The listeners to open, each with its own protocol."""

    def reload(self, config: ServiceConfig, limits: Limits) -> list[str]:
        """Apply a freshly loaded config of this service (SIGHUP), dropping no one.

        Everything is checked before anything is applied, so a refused reload
        leaves the old settings wholly in force.

        Returns:
            a few words for each thing that changed; empty if nothing did.

        Raises:
            ConfigError: the new settings are invalid or need a restart.
        """

    def begin_shutdown(self) -> None:
        """The server is going down: clients are about to be told and closed."""

    def close(self) -> None:
        """Every connection is gone: release files and databases."""


def _build_chat(config: ServiceConfig, limits: Limits) -> ServiceRuntime:
    from sockhub.services.chat import ChatService

    return ChatService.from_config(config, limits)


def _build_exec(config: ServiceConfig, limits: Limits) -> ServiceRuntime:
    from sockhub.services.exec import ExecService

    return ExecService.from_config(config, limits)


@dataclass(frozen=True)
class ServiceSpec:
    """How to run one kind of service.

    Attributes:
        name: the name used on the command line and in logs.
        protocol_class: instantiated with no arguments, once per connection
            (stream) or once per endpoint (datagram).
        default_port: the port used when none is given.
        summary: one line for ``--help``.
        stateless: safe to run in several processes (``--workers``).
        limits: overrides of the engine's default limits for this service.
        build: for stateful services, makes the shared runtime that hands
            out protocols; ``protocol_class`` is then only its door's type.
    """

    name: str
    protocol_class: type[Protocol] | type[DatagramProtocol]
    default_port: int
    summary: str
    stateless: bool = True
    limits: dict[str, Any] = field(default_factory=dict)
    build: Callable[[ServiceConfig, Limits], ServiceRuntime] | None = None

    @property
    def datagram(self) -> bool:
        return issubclass(self.protocol_class, DatagramProtocol)


SERVICES: dict[str, ServiceSpec] = {
    spec.name: spec
    for spec in (
        ServiceSpec("echo", Echo, 9000, "every byte back as received"),
        ServiceSpec("upper", Upper, 9003, "each line back upper-cased"),
        ServiceSpec("hello", Hello, 9004, "greets, answers 'Hello, <line>!', bye on 'exit'"),
        ServiceSpec("udp-echo", UdpEcho, 9000, "every UDP datagram back to its sender"),
        ServiceSpec(
            "chat", LineProtocol, 9999, "group chat for nc/telnet users, with history",
            stateless=False,
            # Chat users may listen for hours without a word; the door's own
            # flood control and the write limits guard the server instead.
            limits={"idle_timeout": None, "max_line": 8192},
            build=_build_chat,
        ),
        ServiceSpec(
            "exec", ExecServerProtocol, 9001,
            "runs commands (argv, no shell) for clients holding the token",
            # Not for --workers: the failed-login limiter and max-concurrent
            # live in one process's memory, and N workers would give an
            # attacker N times the guesses and the host N times the commands.
            stateless=False,
            build=_build_exec,
        ),
    )
}

#: What ``sockhub serve`` runs with no service named: the chat hub's doors.
DEFAULT_SERVICES = ("chat",)


def resolve(name: str) -> ServiceSpec:
    """Find a built-in service, or import ``pkg.module:Class``.

    Raises:
        ConfigError: unknown name, module not importable, or a class that is
            not a sockhub protocol.
    """
    if name in SERVICES:
        return SERVICES[name]
    if ":" not in name:
        known = ", ".join(SERVICES)
        raise ConfigError(f"unknown service {name!r} (built-in: {known}; or pkg.module:Class)")
    module_name, _, attr = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import {module_name!r}: {exc}") from exc
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise ConfigError(f"{module_name!r} has no attribute {attr!r}")
    if not isinstance(obj, type) or not issubclass(obj, Protocol | DatagramProtocol):
        raise ConfigError(
            f"{name} is not a subclass of sockhub.Protocol, LineProtocol or DatagramProtocol"
        )
    return ServiceSpec(name, obj, 0, obj.__doc__ or name, stateless=False)
