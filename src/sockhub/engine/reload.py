"""SIGHUP: re-read what can change without dropping anyone (nginx and ircd habit).

The command line (or ``--config`` file) is read again and compared with what
runs. Listeners cannot move without closing them, so a change of service,
address, port, Unix path or TLS on/off refuses the whole reload with a note
that it needs a restart. Everything else is checked first (TLS files loaded,
limits validated) and then applied: the TLS certificate and limits for new
connections, and whatever each stateful service's ``reload`` takes (chat:
operators, MOTD, passwords; exec: the allow list, the token). A service that
refuses keeps its old settings; the others still reload. One log line says
what happened.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from sockhub.config import ServiceConfig
from sockhub.engine.server import Engine, RunningService, StreamServer, runtime_config
from sockhub.engine.tls import server_tls_context, tls_files_digest
from sockhub.errors import ConfigError
from sockhub.limits import Limits

log = logging.getLogger("sockhub.reload")

#: What a listener is: changing any of these needs a restart.
LISTENER_KEYS = ("service", "hosts", "port", "unix", "workers", "reuse_port", "tls")


@dataclass
class _Plan:
    """One service's checked new settings, ready to apply."""

    running: RunningService
    config: ServiceConfig
    limits: Limits
    tls: ssl.SSLContext | None
    tls_digest: bytes


def _plan(running: RunningService, config: ServiceConfig) -> _Plan:
    old = running.config
    moved = [k for k in LISTENER_KEYS if getattr(old, k) != getattr(config, k)]
    if moved:
        raise ConfigError(f"{old.service}: {', '.join(moved)} changed, which needs a restart")
    try:
        limits = config.resolved_limits(running.spec.limits)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{old.service}: {exc}") from exc
    bound = running.servers[0].limits
    if limits.tls_handshake_timeout != bound.tls_handshake_timeout:
        # asyncio binds it to the listener when it starts.
        raise ConfigError(f"{old.service}: tls_handshake_timeout changed, which needs a restart")
    tls, digest = None, b""
    if config.tls_cert and config.tls_key:
        digest = tls_files_digest(config.tls_cert, config.tls_key)
        tls = server_tls_context(config.tls_cert, config.tls_key)
    return _Plan(running, config, limits, tls, digest)


def _apply(plan: _Plan) -> list[str]:
    running, config = plan.running, plan.config
    changes: list[str] = []
    if running.runtime is not None:
        changes += running.runtime.reload(runtime_config(config, running.spec), plan.limits)
    if plan.tls is not None:
        replaced = [server.tls.replace(plan.tls, plan.tls_digest) for server in running.servers
                    if isinstance(server, StreamServer) and server.tls is not None]
        if any(replaced):
            changes.append("TLS certificate")
    if plan.limits != running.servers[0].limits:
        changes.append("limits (for new connections)")
    for server in running.servers:
        server.limits = plan.limits
        server.config = config
        if isinstance(server, StreamServer) and server.primary:
            server.banner = config.banner
    if config.banner != running.config.banner:
        changes.append("banner")
    running.config = config
    return changes


def reload(engine: Engine, load: Callable[[], list[ServiceConfig]]) -> str:
    """Re-read the configuration and apply it; returns the line that was logged."""
    try:
        configs = load()
        if len(configs) != len(engine.services):
            raise ConfigError("the list of services changed, which needs a restart")
        plans = [_plan(r, c) for r, c in zip(engine.services, configs, strict=True)]
    except ConfigError as exc:
        line = f"reload refused, old settings kept: {exc}"
        log.warning("%s", line)
        return line
    parts: list[str] = []
    refused = False
    for plan in plans:
        name = plan.running.spec.name
        try:
            changes = _apply(plan)
        except ConfigError as exc:
            refused = True
            parts.append(f"{name} refused, old settings kept: {exc}")
            continue
        except Exception as exc:  # a bug: say so, and let the other services reload
            log.exception("reload of %s failed", name)
            refused = True
            parts.append(f"{name} failed ({exc!r}), its settings may be partly new")
            continue
        if changes:
            parts.append(f"{name}: {', '.join(changes)}")
    line = "reloaded " + ("; ".join(parts) if parts else "(nothing changed)")
    (log.warning if refused else log.info)("%s", line)
    return line
