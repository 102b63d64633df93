"""irctest's ngIRCd controller, bound to 127.0.0.1 instead of the 0.0.0.0 that
irctest hands out, for the reference run in README.md.  Symlink it next to
irctest/controllers/ngircd.py and use --controller irctest.controllers.ngircd_loopback.
"""

from typing import Any, Type

from irctest.controllers.ngircd import NgircdController


class NgircdLoopbackController(NgircdController):
    def run(self, hostname: str, port: int, **kwargs: Any) -> None:
        super().run("127.0.0.1", port, **kwargs)


def get_irctest_controller_class() -> Type[NgircdLoopbackController]:
    return NgircdLoopbackController
