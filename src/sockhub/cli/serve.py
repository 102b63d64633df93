"""``sockhub serve``: flags → ServiceConfigs → the runner.

Every flag here is generated from a declaration (:mod:`sockhub.options`):
where to listen from :class:`~sockhub.config.ServiceConfig`, the shared
service options from :class:`~sockhub.services.settings.ServiceSettings`,
one group per service from its spec's settings class, the limits from
:class:`~sockhub.limits.Limits`. The services, their ports and what plain
``sockhub serve`` runs come from the registry. So nothing here knows a
service by name, and a new service's options appear without an edit here.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Mapping
from typing import Any

from sockhub import options
from sockhub.cli.summaries import SUMMARIES
from sockhub.config import ServiceConfig, load_toml, service_from_mapping
from sockhub.engine.service import ServiceSpec
from sockhub.errors import ConfigError, StartError
from sockhub.limits import Limits
from sockhub.services.login_settings import LoginSettings
from sockhub.services.registry import DEFAULT_SERVICES, SERVICES, resolve
from sockhub.services.settings import ServiceSettings

#: The ServiceConfig fields in the "where to listen" group; the rest but
#: ``banner`` are for config files only.
WHERE = ("hosts", "port", "unix", "tls_cert", "tls_key", "workers")
#: The options every service's settings share: in the "service" group, given to all.
SHARED = tuple(d.name for d in options.declared(ServiceSettings))
#: The options of the services behind the token login (exec, files): one
#: group, given to whichever of them runs.
LOGIN = tuple(d.name for d in options.declared(LoginSettings) if d.name not in SHARED)
#: Services run by plain ``sockhub serve``, by name.
DEFAULT_NAMES = tuple(default.name for default in DEFAULT_SERVICES)


def _with_settings() -> list[tuple[ServiceSpec, type[Any]]]:
    return [(spec, spec.settings) for spec in SERVICES.values() if spec.settings is not None]


def _logs_in(settings: type[Any] | None) -> bool:
    return settings is not None and issubclass(settings, LoginSettings)


def _own(settings: type[Any]) -> list[str]:
    """A service's own options: its settings' fields but the shared ones."""
    shared = SHARED + LOGIN if _logs_in(settings) else SHARED
    return [d.name for d in options.declared(settings) if d.name not in shared]


def _flag(settings: type[Any] | None, key: str) -> str:
    found = options.flags(settings, [key]) if settings is not None else []
    return found[0] if found else key


def _epilog() -> str:
    services = []
    for name, spec in SERVICES.items():
        port = f"(port {spec.default_port}{'/udp' if spec.datagram else ''})"
        services.append(f"  {name:<10} {spec.summary:<48} {port}")
    runs = " and ".join(
        f"{d.name} (port {SERVICES[d.name].default_port}"
        + "".join(f", {_flag(SERVICES[d.name].settings, k)} {p}" for k, p in d.ports.items())
        + ")"
        for d in DEFAULT_SERVICES
    )
    default = textwrap.fill(
        f"With no SERVICE and no --config, sockhub serve runs {runs}; with --port 0, "
        "each on a free port. Each bound socket is logged to stderr as", width=79)
    return f"""\
services:
{chr(10).join(services)}
  pkg.module:Class   your own sockhub.Protocol subclass (docs/writing-a-service.md)

{default}
  listening on HOST:PORT (SERVICE)
with the real port, so scripts can wait for it. SIGINT or SIGTERM shut down
gracefully: stop accepting, tell clients, drain for --drain-timeout, exit 0.
SIGHUP reloads without dropping anyone: the files named here (TLS, MOTD, the
exec token) and the --config file are read again, and one log line says what
changed or why nothing did (a bad file keeps the old settings).

Options marked repeatable may be given more than once. Sizes are in bytes,
times in seconds. Every option is also a config file key (docs/config.md).

examples:
  sockhub serve echo --port 0
  sockhub serve hello --banner 'welcome to the hotline' --idle-timeout 60
  sockhub serve echo --tls-cert cert.pem --tls-key key.pem
  sockhub serve upper --unix /tmp/upper.sock
  sockhub serve echo --workers 2 --port 9000
  sockhub serve --config services.toml
  sockhub serve chat --irc-port 6667 --motd-file motd.txt
  sockhub serve exec --allow uptime --allow df --timeout 30
"""


EPILOG_SERVE = _epilog()


def _limit_defaults() -> dict[str, list[str]]:
    """Each limit a service overrides: ``["chat 8192"]``, shown after the engine's default."""
    shown: dict[str, list[str]] = {}
    for name, spec in SERVICES.items():
        for limit, value in spec.limits.items():
            unit = next(d.meta.unit for d in options.declared(Limits) if d.name == limit)
            shown.setdefault(limit, []).append(f"{name} {options.shown(value, unit)}")
    return shown


def _default_set_notes(spec: ServiceSpec) -> dict[str, list[str]]:
    """``irc_port: ["6667 with no SERVICE"]``: the doors plain ``sockhub serve`` opens."""
    return {key: [f"{port} with no SERVICE"]
            for default in DEFAULT_SERVICES if default.name == spec.name
            for key, port in default.ports.items()}


def _off_description() -> str:
    fixed = [d.flag for d in options.declared(Limits) if not d.meta.off]
    text = (f"Each takes a number, or 'none' for no limit, but {', '.join(fixed[:-1])} "
            f"and {fixed[-1]}, which are always on.")
    return textwrap.fill(text, width=76)


def add_serve(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        help=SUMMARIES["serve"],
        description="Run socket services until SIGINT/SIGTERM; SIGHUP reloads.",
        epilog=EPILOG_SERVE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("service", nargs="?", metavar="SERVICE",
                   help="a built-in service name or pkg.module:Class")
    p.add_argument("--config", metavar="FILE.toml",
                   help="run the services listed in a TOML file (see docs/config.md)")
    where = p.add_argument_group("where to listen")
    options.add_arguments(where, ServiceConfig, prefix="common.", names=WHERE)
    behaviour = p.add_argument_group("service")
    options.add_arguments(behaviour, ServiceConfig, prefix="common.", names=("banner",))
    options.add_arguments(behaviour, ServiceSettings, prefix="shared.")
    login = p.add_argument_group(
        "login (" + ", ".join(s.name for s, c in _with_settings() if _logs_in(c)) + ")")
    options.add_arguments(login, LoginSettings, prefix="login.", names=LOGIN)
    for spec, settings in _with_settings():
        title = spec.name + (f" ({spec.docs})" if spec.docs else "")
        group = p.add_argument_group(title)
        options.add_arguments(group, settings, prefix=spec.name + ".", names=_own(settings),
                              also=_default_set_notes(spec))
    limits = p.add_argument_group("limits and timeouts", _off_description())
    options.add_arguments(limits, Limits, prefix="limit.", also=_limit_defaults(),
                          off_note=False)
    run = p.add_argument_group("process")
    for flag, choices, default, what in (
        ("--loop", ("auto", "asyncio", "uvloop"), "auto",
         "event loop: auto is uvloop if installed, else asyncio"),
        ("--log-level", ("debug", "info", "warning", "error"), "info", "how much to log"),
        ("--log-format", ("text", "json"), "text", "text lines or one JSON object per line"),
    ):
        run.add_argument(flag, choices=choices, default=default,
                         help=f"{what} (default {default})")
    p.set_defaults(run=_cmd_serve)


def serve_configs(args: argparse.Namespace) -> list[ServiceConfig]:
    """What to run, from the command line (and the ``--config`` file it names).

    Raises:
        ConfigError: options that do not go together, or bad values.
    """
    common = {**options.given(args, ServiceConfig, prefix="common."),
              **options.given(args, Limits, prefix="limit.")}
    shared = options.given(args, ServiceSettings, prefix="shared.")
    login = options.given(args, LoginSettings, prefix="login.", names=LOGIN)
    own = {spec.name: options.given(args, settings, prefix=spec.name + ".",
                                    names=_own(settings))
           for spec, settings in _with_settings()}

    def given_for(service: str) -> dict[str, Any]:
        spec = SERVICES.get(service)
        logs_in = login if spec is not None and _logs_in(spec.settings) else {}
        return {**shared, **logs_in, **own.get(service, {})}

    if args.config:
        if args.service:
            raise ConfigError("give a SERVICE or --config, not both")
        configs = load_toml(args.config, base=common, options=given_for, resolve=resolve)
        _check_used(own, {c.service for c in configs}, config=args.config)
        return configs
    if args.service:
        _check_used(own, {args.service})
        spec = SERVICES.get(args.service)
        if login and not (spec is not None and _logs_in(spec.settings)):
            given = ", ".join(options.flags(LoginSettings, login))
            raise ConfigError(f"{given}: only for the services with a token login (exec, files)")
        values = {**common, "service": args.service, "options": given_for(args.service)}
        return [service_from_mapping(values, resolve=resolve)]
    port = common.get("port")
    if port not in (None, 0):
        raise ConfigError("--port needs a SERVICE (or --port 0 for free ports for all)")
    if "unix" in common or common.get("workers", 1) != 1:
        raise ConfigError("--unix and --workers need a SERVICE")
    _check_used(own, set(DEFAULT_NAMES))
    return [
        service_from_mapping(
            {**common, "service": default.name,
             "options": {**default.options(free_ports=port == 0), **given_for(default.name)}},
            resolve=resolve,
        )
        for default in DEFAULT_SERVICES
    ]


def _check_used(own: Mapping[str, Mapping[str, Any]], running: set[str], *,
                config: str | None = None) -> None:
    """A service's own options given, but that service not run: say so."""
    for name, values in own.items():
        if not values or name in running:
            continue
        settings = SERVICES[name].settings
        assert settings is not None
        given = ", ".join(options.flags(settings, values))
        if config is not None:
            raise ConfigError(f"the {name} options ({given}) apply to {name} services, "
                              f"and {config} runs none")
        where = name if name in DEFAULT_NAMES else f"'sockhub serve {name}'"
        raise ConfigError(f"the {name} options ({given}) apply to {where} only")


def _cmd_serve(args: argparse.Namespace) -> int:
    from sockhub.engine import runner
    from sockhub.logs import setup_logging

    runner.ignore_hangup()
    setup_logging(args.log_level, args.log_format)
    configs = serve_configs(args)
    try:
        return runner.run(configs, resolve, loop=args.loop, load=lambda: serve_configs(args))
    except StartError as exc:
        print(f"sockhub serve: {exc}", file=sys.stderr)
        return 1
