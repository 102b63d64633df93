"""Run services until SIGINT/SIGTERM, reloading on SIGHUP, in one process or several.

Signals (the table in the README):

* SIGTERM, SIGINT: graceful stop: stop accepting, tell clients, drain, exit 0.
* SIGHUP: reload (see :mod:`sockhub.engine.reload`); never exits. It is
  ignored from the first moment, so a HUP during start-up cannot kill us.
* Whatever way the process leaves ``serve_until_signalled`` (a signal, an
  error), the engine's shutdown runs first, and with it each service's
  ``close``, which kills every command the exec service started.

``--workers N`` forks N processes that each bind the same port with
SO_REUSEPORT, so the kernel spreads connections across them. The parent
binds the port first (so ``--port 0`` means one port for all), forks,
waits for every worker to report that it is listening, then logs the usual
``listening on`` line and forwards signals. Only stateless services may do
this, or a service whose state lives outside the process: the chat hub with
``--bus redis://...`` (docs/scale-out.md); a chat room split across
processes with the in-process bus would be several rooms.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Callable
from dataclasses import replace

from sockhub.config import ServiceConfig
from sockhub.engine import loops
from sockhub.engine.reload import reload as reload_engine
from sockhub.engine.server import Engine
from sockhub.engine.service import ServiceSpec
from sockhub.errors import ConfigError

log = logging.getLogger("sockhub.runner")

#: Reads the configuration again (the command line, the --config file).
Loader = Callable[[], list[ServiceConfig]]
#: Finds a service's spec by name (``services.registry.resolve``).
Resolver = Callable[[str], ServiceSpec]


def ignore_hangup() -> None:
    """Until the loop takes SIGHUP over, a hangup must not kill the process."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


async def serve_until_signalled(
    configs: list[ServiceConfig], resolve: Resolver, *, ready_fd: int | None = None,
    load: Loader | None = None,
) -> None:
    """Run ``configs`` until SIGINT or SIGTERM, reloading with ``load`` on SIGHUP."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    ignore_hangup()
    engine = Engine(configs, resolve)
    loop.add_signal_handler(signal.SIGHUP, _on_hangup, engine, load or (lambda: configs))
    log.debug("event loop: %s", loops.loop_label(loop))
    await engine.start()
    if ready_fd is not None:
        os.write(ready_fd, b"1")
        os.close(ready_fd)
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        await engine.shutdown()


def _on_hangup(engine: Engine, load: Loader) -> None:
    try:
        reload_engine(engine, load)
    except Exception:  # a reload must never take the server down
        log.exception("reload failed; old settings kept")


def run(configs: list[ServiceConfig], resolve: Resolver, *, loop: str = "auto",
        load: Loader | None = None) -> int:
    """Run services in this process, or in workers if one asks for them.

    Args:
        configs: what to run.
        resolve: finds each service's spec by name.
        loop: ``auto``, ``asyncio`` or ``uvloop``.
        load: reads the configuration again on SIGHUP; None re-applies
            ``configs`` (which still re-reads the files they name).
    """
    ignore_hangup()
    with_workers = [c for c in configs if c.workers > 1]
    if not with_workers:
        loops.run(serve_until_signalled(configs, resolve, load=load), loop)
        return 0
    if len(configs) != 1:
        raise ConfigError("--workers runs one service; use separate processes for the rest")
    return _run_workers(configs[0], resolve, loop, load)


def _run_workers(config: ServiceConfig, resolve: Resolver, loop: str,
                 load: Loader | None) -> int:
    spec = resolve(config.service)
    spec.check_workers(config.workers, config.options)
    if config.unix:
        raise ConfigError("--workers needs a TCP or UDP port, not a Unix socket")
    kind = socket.SOCK_DGRAM if spec.datagram else socket.SOCK_STREAM
    host = config.hosts[0]
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # Reserve the port (and learn it, for port 0) before any worker exists.
    reserve = socket.socket(family, kind)
    reserve.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    port = spec.default_port if config.port is None else config.port
    try:
        reserve.bind((host, port))
    except OSError as exc:
        raise ConfigError(f"{spec.name}: cannot bind {host}:{port}: {exc.strerror}") from exc
    port = reserve.getsockname()[1]
    worker_config = replace(config, port=port, workers=1, reuse_port=True)
    read_fd, write_fd = os.pipe()
    children: list[int] = []
    for _ in range(config.workers):
        pid = os.fork()
        if pid == 0:  # worker
            os.close(read_fd)
            reserve.close()
            code = 0
            try:
                logging.getLogger("sockhub.server").setLevel(logging.WARNING)
                worker_load = None if load is None else (
                    lambda: [replace(c, port=port, workers=1, reuse_port=True) for c in load()]
                )
                loops.run(serve_until_signalled([worker_config], resolve, ready_fd=write_fd,
                                                load=worker_load), loop)
            except BaseException:
                log.exception("worker %d failed", os.getpid())
                code = 1
            os._exit(code)
        children.append(pid)
    os.close(write_fd)
    ready = 0
    while ready < config.workers:
        chunk = os.read(read_fd, config.workers)
        if not chunk:
            break
        ready += len(chunk)
    os.close(read_fd)
    reserve.close()

    def forward(signum: int, _frame: object) -> None:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, forward)
    if ready < config.workers:
        log.error("only %d of %d workers started", ready, config.workers)
        forward(signal.SIGTERM, None)
    else:
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        label = f"{spec.name}, {config.workers} workers" + (", udp" if spec.datagram else "")
        log.info("listening on %s (%s)", address, label)
    status = 0
    for pid in children:
        _, code = os.waitpid(pid, 0)
        status = status or os.waitstatus_to_exitcode(code)
    return 0 if ready == config.workers and status == 0 else 1
