"""A local SMTP server that accepts and keeps every message (EHLO, MAIL, RCPT, DATA, QUIT), for tests."""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest


class SmtpSink(socketserver.ThreadingTCPServer):
    daemon_threads = True
    messages: list[bytes]
    recipients: list[str]


class _Handler(socketserver.StreamRequestHandler):
    timeout = 10  # seconds of silence before the handler gives up
    server: SmtpSink

    def handle(self) -> None:
        self.wfile.write(b"220 sink ready\r\n")
        lines: list[bytes] | None = None
        while line := self.rfile.readline():
            if lines is not None:
                if line.rstrip(b"\r\n") == b".":
                    self.server.messages.append(b"".join(lines))
                    lines = None
                    self.wfile.write(b"250 queued\r\n")
                else:
                    lines.append(line[1:] if line.startswith(b"..") else line)
                continue
            verb = line[:4].upper()
            if verb == b"EHLO":
                self.wfile.write(b"250-sink\r\n250 OK\r\n")
            elif verb == b"RCPT":
                self.server.recipients.append(line.decode().split(":", 1)[1].strip(" <>\r\n"))
                self.wfile.write(b"250 OK\r\n")
            elif verb == b"DATA":
                lines = []
                self.wfile.write(b"354 go ahead\r\n")
            elif verb == b"QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 OK\r\n")


@contextmanager
def running_smtp_sink(monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpSink]:
    """A sink on a free port, with ``LOYALTY_SMTP_HOST``, ``_PORT`` and ``_FROM`` pointing at it."""
    server = SmtpSink(("127.0.0.1", 0), _Handler)
    server.messages, server.recipients = [], []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    monkeypatch.setenv("LOYALTY_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("LOYALTY_SMTP_PORT", str(server.server_address[1]))
    monkeypatch.setenv("LOYALTY_SMTP_FROM", "loyalty@example.com")
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
