"""A local SMTP server that keeps every message it accepts as an ``.eml`` file (aiosmtpd).

``surgegate up`` runs it as a child (``python -m surgegate.mailsink DIR PORT``) when no
``SURGEGATE_SMTP_URL`` is configured, and points the worker at it, so the demo's confirmations and
reminders can be opened in any mail program. Tests use :class:`MailSink` directly: a real SMTP
server that also keeps the messages in memory.
"""

from __future__ import annotations

import email
import email.policy
import itertools
import os
import signal
import sys
import threading
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


class MailSink:
    """An aiosmtpd handler: each accepted message is written (whole, by rename) under ``directory``
    when given, and appended to :attr:`messages`. ``refuse`` makes it answer 451 (try again later)."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory
        self.messages: list[EmailMessage] = []
        self.refuse = False
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refuse:
            return "451 4.3.0 try again later"
        raw: bytes = envelope.original_content or envelope.content
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self._lock:
            n = next(self._counter)
            self.messages.append(message)
        if self.directory is not None:
            name = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{n:06d}.eml"
            staged = self.directory / f".{name}"
            staged.write_bytes(raw)
            staged.replace(self.directory / name)
        return "250 OK"

    def message_ids(self) -> list[str]:
        with self._lock:
            return [str(m["Message-ID"]) for m in self.messages]


def serve(directory: Path, port: int, host: str = "127.0.0.1") -> Controller:
    """Start a sink on ``host:port`` (in a thread of its own); the caller stops it."""
    controller = Controller(MailSink(directory), hostname=host, port=port)
    controller.start()
    return controller


def main(argv: list[str]) -> int:
    directory, port = Path(argv[0]), int(argv[1])
    controller = serve(directory, port)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass
    controller.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
