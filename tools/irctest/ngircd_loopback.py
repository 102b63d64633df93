"""irctest's ngIRCd controller, listening on 127.0.0.1 only, for the reference
run in README.md.  Symlink it next to irctest/controllers/ngircd.py and use
--controller irctest.controllers.ngircd_loopback.

Two fixes over irctest's own ngircd.py (at irctest b00c039):
* its template says ``Bind = {hostname}``, which ngIRCd 26 ignores (the key is
  ``Listen``), so ngIRCd listened on every interface (0.0.0.0 and ::);
* servers whose test skipped in setUp (BotModeTestCase) are never torn down by
  irctest; they are stopped when the next test starts, or at worker exit.
"""

import atexit
from typing import Any

from irctest.controllers import ngircd
from irctest.controllers.ngircd import NgircdController

ngircd.TEMPLATE_CONFIG = ngircd.TEMPLATE_CONFIG.replace("Bind = {hostname}", "Listen = {hostname}")
assert "Listen = {hostname}" in ngircd.TEMPLATE_CONFIG

_live: "dict[int, NgircdLoopbackController]" = {}


def _stop_leftovers(keep: "NgircdLoopbackController | None" = None) -> None:
    for controller in list(_live.values()):
        if controller is not keep:
            controller.kill()


atexit.register(_stop_leftovers)


class NgircdLoopbackController(NgircdController):
    def run(self, hostname: str, port: int, **kwargs: Any) -> None:
        _stop_leftovers(keep=self)
        _live[id(self)] = self
        super().run("127.0.0.1", port, **kwargs)

    def kill(self) -> None:
        _live.pop(id(self), None)
        super().kill()


def get_irctest_controller_class() -> type[NgircdLoopbackController]:
    return NgircdLoopbackController
