"""A real SMTP server on loopback (aiosmtpd) that keeps what it receives."""

from __future__ import annotations

import email
import email.policy
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller


@dataclass
class Mailbox:
    messages: list[EmailMessage] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        self.messages.append(msg)
        return "250 Message accepted"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if address.lower() in str(m["To"]).lower()]

    def last_to(self, address: str) -> EmailMessage:
        found = self.to(address)
        assert found, f"no mail to {address}; got {[str(m['To']) for m in self.messages]}"
        return found[-1]


@dataclass
class SMTPServer:
    url: str
    mailbox: Mailbox


class LoopbackController(Controller):
    """An aiosmtpd server on a loopback port bound before it starts.

    aiosmtpd connects to its own port to check it started, so port 0 cannot be given to it;
    a port found free and closed again could be taken by another process before the server
    bound it. The socket stays bound throughout and the server listens on it.
    """

    def __init__(self, handler: Any) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        port = int(self._sock.getsockname()[1])
        # A busy machine may take more than aiosmtpd's default 5 s to start the thread.
        super().__init__(handler, hostname="127.0.0.1", port=port, ready_timeout=60)

    def _create_server(self) -> Any:
        return self.loop.create_server(self._factory_invoker, sock=self._sock, ssl=self.ssl_context)

    def stop(self, no_assert: bool = False) -> None:
        try:
            super().stop(no_assert)
        finally:
            self._sock.close()


@pytest.fixture
def smtp_server() -> Iterator[SMTPServer]:
    mailbox = Mailbox()
    controller = LoopbackController(mailbox)
    controller.start()
    try:
        yield SMTPServer(url=f"smtp://127.0.0.1:{controller.port}", mailbox=mailbox)
    finally:
        controller.stop()
