"""What the engine needs of a service: the seam between sockets and services.

The engine runs whatever is described here and knows no service by name;
``services/registry.py`` holds the table of the ones sockhub ships. A
stateless service is a protocol class (one instance per connection); a
stateful one (the chat hub, exec) builds a :class:`ServiceRuntime` that
opens one or more :class:`Listener` s sharing its state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from typing import Protocol as TypingProtocol

from sockhub.errors import ConfigError
from sockhub.protocols.base import DatagramProtocol, Protocol

if TYPE_CHECKING:
    from sockhub.config import ServiceConfig
    from sockhub.limits import Limits


@dataclass(frozen=True)
class Listener:
    """One listener of a stateful service, sharing the service's state.

    Attributes:
        name: the listener's name in logs (``chat``, ``irc``).
        port: where it listens; ``None`` means this listener stays closed.
        make_protocol: a protocol for one new connection, wired to the state.
        primary: the listener that takes the service's ``--unix`` path and
            ``--banner``, if any.
        refusal: the bytes for a client refused before it was admitted (server
            full), in this listener's protocol; None: the service's default.
    """

    name: str
    port: int | None
    make_protocol: Callable[[], Protocol]
    primary: bool = False
    refusal: Callable[[str], bytes] | None = None


class ServiceRuntime(TypingProtocol):
    """Shared state of a stateful service (the chat hub) and its doors."""

    def listeners(self) -> list[Listener]:
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
            out protocols; ``protocol_class`` is then only its primary listener's type.
        settings: the dataclass of the service's own options (declared with
            :func:`sockhub.options.option`): the config loader makes a
            service's ``options`` into one, the command line gets a group of
            flags from it, docs/config.md a table.
        docs: where the service is documented, shown beside its options.
    """

    name: str
    protocol_class: type[Protocol] | type[DatagramProtocol]
    default_port: int
    summary: str
    stateless: bool = True
    limits: dict[str, Any] = field(default_factory=dict)
    build: Callable[[ServiceConfig, Limits], ServiceRuntime] | None = None
    settings: type[Any] | None = None
    docs: str | None = None
    #: An option of the service that moves its state out of the process (the
    #: chat's ``bus``): set, ``--workers`` is allowed; unset, the refusal says to add it.
    shared_state: str | None = None

    @property
    def datagram(self) -> bool:
        return issubclass(self.protocol_class, DatagramProtocol)

    def check_workers(self, workers: int, options: Mapping[str, Any] | None = None) -> None:
        """Refuse ``workers`` processes for a service that keeps state in memory.

        ``options`` are the service's own (raw) options: with its
        ``shared_state`` option set, state lives outside the process.

        Raises:
            ConfigError: more than one worker for a stateful service.
        """
        if workers <= 1 or self.stateless:
            return
        shared = self.shared_state
        if shared is None:
            raise ConfigError(f"{self.name} keeps state in memory and cannot run with --workers")
        if (options or {}).get(shared) is None:
            flag = "--" + shared.replace("_", "-")
            raise ConfigError(f"{self.name} keeps its rooms in one process's memory: to run it "
                              f"with --workers, add {flag} redis://HOST:PORT/DB so the workers "
                              "share them (docs/scale-out.md)")
