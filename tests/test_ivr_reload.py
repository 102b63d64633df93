"""``sockhub serve ivr`` as a real process: SIGHUP reloads the menu, a bad menu is refused."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.net import LineClient, chat_client, open_client
from tests.proc import run_sockhub, start_sockhub

from sockhub.services.ivr import EXAMPLE_MENU, packaged_menu

WELCOME = "Welcome to Example Telecom."


async def test_sighup_reloads_the_menu_and_a_bad_file_keeps_the_old_one(tmp_path: Path) -> None:
    menu = tmp_path / "menu.toml"
    menu.write_text(packaged_menu(EXAMPLE_MENU), encoding="utf-8")
    served = await start_sockhub("ivr", "--port", "0", "--line-port", "0", "--menu", str(menu),
                                 "--data-dir", str(tmp_path / "data"), listeners=2)
    try:
        assert set(served.ports) == {"ivr", "chat"}
        early = LineClient(*await open_client(served.ports["ivr"]))
        await early.expect(WELCOME)

        menu.write_text(packaged_menu(EXAMPLE_MENU).replace(WELCOME, "Welcome back, caller."),
                        encoding="utf-8")
        served.process.send_signal(signal.SIGHUP)
        assert "ivr: menu" in await served.expect_log("reloaded")
        late = LineClient(*await open_client(served.ports["ivr"]))
        await late.expect("Welcome back, caller.")
        await early.send(b"2")                     # a caller already on the line keeps going
        await early.expect("You have used 3.2 GB")

        menu.write_text(packaged_menu(EXAMPLE_MENU).replace('goto = "billing"',
                                                            'goto = "bills"'), encoding="utf-8")
        served.process.send_signal(signal.SIGHUP)
        line = await served.expect_log("reload")
        assert "old settings kept" in line
        assert f"{menu}:16: choice '1' of node 'main' goes to 'bills'" in line
        third = LineClient(*await open_client(served.ports["ivr"]))
        await third.expect("Welcome back, caller.")
        # The operators' line door is the same hub's.
        alice = await chat_client(served.ports["chat"], "alice")
        for client in (early, late, third, alice):
            client.close()
    finally:
        assert await served.stop() == 0


async def test_a_bad_menu_at_start_is_refused_with_its_line(tmp_path: Path) -> None:
    menu = tmp_path / "menu.toml"
    menu.write_text('[menu]\nstart = "main"\n\n[nodes.main]\nprompt = "hi"\n'
                    '[nodes.main.choices]\n"1" = { hangup = true, goto = "main" }\n')
    code, _, err = await run_sockhub("serve", "ivr", "--port", "0", "--line-port", "0",
                                     "--menu", str(menu), "--data-dir", str(tmp_path))
    assert code != 0
    assert f"{menu}:7: choice '1' of node 'main' does two things at once" in err.decode()


async def test_the_chat_hub_can_open_the_hotline_door_beside_its_others(tmp_path: Path) -> None:
    served = await start_sockhub("chat", "--port", "0", "--ivr-port", "0",
                                 "--data-dir", str(tmp_path), listeners=2)
    try:
        caller = LineClient(*await open_client(served.ports["ivr"]))
        await caller.expect("欢迎致电 10086")
        caller.close()
    finally:
        assert await served.stop() == 0
    code, _, err = await run_sockhub("serve", "chat", "--port", "0", "--line-port", "0",
                                     "--data-dir", str(tmp_path))
    assert code != 0 and "--line-port is for 'sockhub serve ivr'" in err.decode()
