"""Fixtures shared by the chat service's door tests that run without sockets."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sockhub.limits import Limits
from sockhub.services.chat import ChatService, ChatSettings


@pytest.fixture
def service(tmp_path) -> Iterator[ChatService]:
    """A chat service on its own history file, flood control off; closed after the test.

    A module that needs other settings defines its own ``service``, which wins.
    """
    chat = ChatService(ChatSettings(data_dir=tmp_path, flood_rate=None), Limits())
    yield chat
    chat.close()
