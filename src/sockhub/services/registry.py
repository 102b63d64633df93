"""The built-in services by name, and ``pkg.module:Class`` for your own.

A plain dict, not import strings, for the closed set sockhub ships; a
user's class is imported only when named with a colon on the command line.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sockhub.engine.service import ServiceSpec
from sockhub.errors import ConfigError
from sockhub.protocols.base import DatagramProtocol, LineProtocol, Protocol
from sockhub.protocols.echo import Echo, Hello, UdpEcho, Upper
from sockhub.protocols.exec import ExecServerProtocol
from sockhub.protocols.files import FilesServerProtocol
from sockhub.services.chat import ChatService
from sockhub.services.chat_settings import ChatSettings
from sockhub.services.exec import ExecService
from sockhub.services.exec_settings import ExecSettings
from sockhub.services.files import FilesService
from sockhub.services.files_settings import FilesSettings

SERVICES: dict[str, ServiceSpec] = {
    spec.name: spec
    for spec in (
        ServiceSpec("echo", Echo, 9000, "every byte back as received"),
        ServiceSpec("upper", Upper, 9003, "each line back upper-cased"),
        ServiceSpec("hello", Hello, 9004, "greets, answers 'Hello, <line>!', bye on 'exit'"),
        ServiceSpec("udp-echo", UdpEcho, 9000, "every UDP datagram back to its sender"),
        ServiceSpec(
            "chat", LineProtocol, 9999,
            "group chat: line door; --irc-port opens IRC, --web-port the web door",
            stateless=False,
            # Chat users may listen for hours without a word; the door's own
            # flood control and the write limits guard the server instead.
            limits={"idle_timeout": None, "max_line": 8192},
            build=ChatService.from_config,
            settings=ChatSettings,
            shared_state="bus",
        ),
        ServiceSpec(
            "exec", ExecServerProtocol, 9001,
            "runs allow-listed commands for token holders",
            # Not for --workers: the failed-login limiter and max-concurrent
            # live in one process's memory, and N workers would give an
            # attacker N times the guesses and the host N times the commands.
            stateless=False,
            build=ExecService.from_config,
            settings=ExecSettings,
            docs="docs/exec-protocol.md",
        ),
        ServiceSpec(
            "files", FilesServerProtocol, 9002,
            "verified, resumable file transfer under --root for token holders",
            # One process: the login limits and the uploads in progress live in memory.
            stateless=False,
            build=FilesService.from_config,
            settings=FilesSettings,
            docs="docs/files-protocol.md",
        ),
    )
}



@dataclass(frozen=True)
class DefaultService:
    """A service plain ``sockhub serve`` runs, with the other doors it opens there.

    Attributes:
        name: the service, run on its default port.
        ports: its options (by key) that open more doors, and their ports;
            with ``--port 0`` each is 0 too, a free port.
    """

    name: str
    ports: Mapping[str, int] = field(default_factory=dict)

    def options(self, *, free_ports: bool) -> dict[str, int]:
        """The options that open its other doors."""
        return {key: 0 if free_ports else port for key, port in self.ports.items()}


#: What ``sockhub serve`` runs with no service named: the chat hub with every
#: door open, IRC on 6667, the port IRC clients try first (IANA's ircu range),
#: and the web door on 8080, HTTP's usual alternative port.
DEFAULT_SERVICES = (DefaultService("chat", ports={"irc_port": 6667, "web_port": 8080}),)


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
