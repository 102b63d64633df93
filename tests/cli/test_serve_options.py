"""Each option declared once: the serve flags, the TOML keys, the typed settings and the docs.

The flags of ``sockhub serve`` are made from the registry's specs, so these
tests also add a toy service to the registry and find its options there.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

import sockhub
from sockhub.cli import build_parser, main, reference
from sockhub.cli.serve import serve_configs
from sockhub.config import ServiceConfig
from sockhub.engine.service import ServiceSpec
from sockhub.errors import ConfigError
from sockhub.limits import Limits
from sockhub.options import declared, option
from sockhub.protocols.echo import Echo
from sockhub.services.chat import ChatService
from sockhub.services.chat_settings import ChatSettings
from sockhub.services.exec_settings import ExecSettings
from sockhub.services.registry import DEFAULT_SERVICES, SERVICES
from sockhub.services.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[2]


def configs(*argv: str) -> list[ServiceConfig]:
    return serve_configs(build_parser().parse_args(["serve", *argv]))


# --- Typed settings ----------------------------------------------------------------------


def test_the_command_line_gives_a_service_its_typed_settings(tmp_path):
    (config,) = configs("chat", "--history", "5", "--flood-rate", "none", "--oper",
                        "Admin=scrypt$16384$8$1$c2FsdA$aGFzaA", "--data-dir", str(tmp_path))
    settings = config.settings
    assert isinstance(settings, ChatSettings)
    assert (settings.history, settings.flood_rate, settings.data_dir) == (5, None, tmp_path)
    assert list(settings.operators) == ["admin"]  # folded, as nicks are
    assert settings.protected_rooms == ("#lobby",)  # the declared default


def test_the_service_is_built_from_the_settings_read_with_the_config(tmp_path):
    (config,) = configs("chat", "--port", "0", "--data-dir", str(tmp_path))
    service = ChatService.from_config(config, Limits())
    try:
        assert service.settings is config.settings
    finally:
        service.close()


def test_replacing_the_options_remakes_the_settings(tmp_path):
    (config,) = configs("chat", "--data-dir", str(tmp_path))
    changed = dataclasses.replace(config, options={**config.options, "history": 7})
    assert changed.settings.history == 7
    with pytest.raises(ConfigError, match="chat: history must be 0-1000"):
        dataclasses.replace(config, options={"history": -1})


def test_a_config_file_makes_each_services_settings_when_read(tmp_path):
    path = tmp_path / "services.toml"
    path.write_text(
        f'options = {{ data_dir = "{tmp_path}" }}\n'
        '[[service]]\nservice = "chat"\nport = 0\nidle_timeout = "none"\n'
        'options = { history = 3, flood_rate = "none" }\n'
        '[[service]]\nservice = "exec"\nport = 0\noptions = { allow = ["ls"] }\n'
    )
    chat, exec_ = configs("--config", str(path), "--flood-burst", "7", "--timeout", "9")
    assert (chat.settings.history, chat.settings.flood_rate) == (3, None)
    assert chat.settings.flood_burst == 7 and chat.settings.data_dir == tmp_path
    assert chat.limits == {"idle_timeout": None}
    assert isinstance(exec_.settings, ExecSettings)
    assert (exec_.settings.allow, exec_.settings.timeout) == (("ls",), 9)
    assert "flood_burst" not in exec_.options  # chat's options go to chat services only


def test_bad_options_in_a_file_name_the_file_the_service_and_the_key(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[[service]]\nservice = "chat"\noptions = { history = "lots" }\n')
    with pytest.raises(ConfigError, match=f"{path}: chat: history must be a whole number"):
        configs("--config", str(path))
    path.write_text('[[service]]\nservice = "chat"\noptions = { histroy = 5 }\n')
    with pytest.raises(ConfigError, match=r"chat: unknown option\(s\): histroy"):
        configs("--config", str(path))


def test_a_services_options_without_that_service_in_the_file_are_refused(tmp_path):
    path = tmp_path / "echo.toml"
    path.write_text('[[service]]\nservice = "echo"\nport = 0\n')
    with pytest.raises(ConfigError, match=f"apply to chat services, and {path} runs none"):
        configs("--config", str(path), "--history", "5")


# --- The default set comes from the registry --------------------------------------------


def test_plain_serve_runs_the_registrys_default_set(tmp_path):
    (default,) = DEFAULT_SERVICES
    (config,) = configs("--data-dir", str(tmp_path))
    assert config.service == default.name and config.port is None
    assert {k: getattr(config.settings, k) for k in default.ports} == dict(default.ports)
    (config,) = configs("--port", "0", "--data-dir", str(tmp_path))
    assert config.port == 0 and all(getattr(config.settings, k) == 0 for k in default.ports)
    (config,) = configs("--irc-port", "7000", "--data-dir", str(tmp_path))
    assert config.settings.irc_port == 7000


def test_the_serve_epilog_lists_the_default_set_from_the_registry():
    from sockhub.cli.serve import EPILOG_SERVE

    text = " ".join(EPILOG_SERVE.split())
    for default in DEFAULT_SERVICES:
        port = SERVICES[default.name].default_port
        doors = "".join(f", --{k.replace('_', '-')} {p}" for k, p in default.ports.items())
        assert f"sockhub serve runs {default.name} (port {port}{doors})" in text


def test_the_chat_clients_default_address_is_the_registrys_chat_port(capsys):
    with pytest.raises(SystemExit):
        main(["chat", "--help"])
    assert f"(default 127.0.0.1:{SERVICES['chat'].default_port})" in capsys.readouterr().out


# --- A new service's options appear without a CLI edit -----------------------------------


@dataclass(frozen=True, kw_only=True)
class ToySettings(ServiceSettings):
    shout: int = option(3, "exclamation marks per line", minimum=0)
    deep: bool = option(False, "a file-only switch", cli=False)


@pytest.fixture
def toy_service(monkeypatch):
    spec = ServiceSpec("toy", Echo, 9123, "a toy for the tests", settings=ToySettings)
    monkeypatch.setitem(SERVICES, "toy", spec)
    return spec


def test_a_registered_services_options_become_a_serve_group(toy_service, capsys):
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    out = capsys.readouterr().out
    assert re.search(r"^toy:\n  --shout N +exclamation marks per line \(default 3\)$", out, re.M)
    assert "--deep" not in out
    (config,) = configs("toy", "--shout", "5")
    assert config.settings == ToySettings(shout=5, data_dir=config.settings.data_dir)


def test_a_services_options_apply_to_it_only(toy_service, capsys):
    assert main(["serve", "echo", "--shout", "5"]) == 2
    assert "the toy options (--shout) apply to 'sockhub serve toy' only" in (
        capsys.readouterr().err)
    assert main(["serve", "toy", "--history", "5"]) == 2
    assert "the chat options (--history) apply to chat only" in capsys.readouterr().err


def test_a_registered_service_gets_its_docs_table(toy_service):
    table = reference.tables()["toy"]
    assert "| `shout` | `--shout N` | 3 | exclamation marks per line |" in table
    assert "| `deep` | — | false | a file-only switch |" in table


# --- Docs and code agree ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["docs/config.md", "README.md"])
def test_the_option_tables_in_the_docs_are_the_generated_ones(name):
    text = (ROOT / name).read_text()
    assert "<!-- options: " in text
    assert reference.render(text) == text, (
        f"{name} is out of date: python -m sockhub.cli.reference --write {name}")


def test_docs_config_has_a_table_for_every_settings_class():
    text = (ROOT / "docs" / "config.md").read_text()
    owners: dict[type, str] = {}  # services sharing a settings class (chat, ivr) share a table
    for n, s in SERVICES.items():
        if s.settings:
            owners.setdefault(s.settings, n)
    wanted = {"service", "limits"} | set(owners.values())
    assert set(re.findall(r"<!-- options: ([\w-]+) -->", text)) == wanted
    for cls in (ServiceConfig, Limits, ChatSettings, ExecSettings):
        for d in declared(cls):
            assert f"| `{d.key}` |" in text, d.key


def test_the_reference_tool_checks_and_rewrites(tmp_path):
    stale = tmp_path / "doc.md"
    stale.write_text("# x\n\n<!-- options: limits -->\n| old |\n<!-- /options -->\n")
    run = [sys.executable, "-m", "sockhub.cli.reference"]
    assert subprocess.run([*run, str(stale)], capture_output=True).returncode == 1
    assert subprocess.run([*run, "--write", str(stale)]).returncode == 0
    assert subprocess.run([*run, str(stale)]).returncode == 0
    assert "| `max_conns` |" in stale.read_text()


# --- The version is written once ----------------------------------------------------------


def test_the_version_is_written_once(capsys):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"]
    assert "version" in project["project"]["dynamic"]
    attr = project["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "sockhub._version.__version__"
    from sockhub._version import __version__

    assert sockhub.__version__ is __version__
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out == f"sockhub {__version__}\n"
