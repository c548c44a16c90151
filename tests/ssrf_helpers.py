"""The connect replacement of the SSRF tests: no packet leaves loopback.

``no_packets`` replaces ``socket.socket.connect`` and
``socket.create_connection``: loopback passes, any other address is
recorded and refused before a packet is sent. A test of the guard then
asserts what the probe *tried*: nothing for a refused address, exactly the
address for an allowed one.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import pytest


def _loopback(address: Any) -> bool:
    try:
        return ipaddress.ip_address(str(address[0]).split("%")[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture
def no_packets(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Replace connect: loopback passes, anything else is recorded and refused."""
    attempts: list[Any] = []
    real_connect = socket.socket.connect
    real_create = socket.create_connection

    def connect(self: socket.socket, address: Any) -> None:
        if not _loopback(address):
            attempts.append(address)
            raise ConnectionRefusedError(111, "test: no packets beyond loopback")
        real_connect(self, address)

    def create_connection(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
        if not _loopback(address):
            attempts.append(address)
            raise ConnectionRefusedError(111, "test: no packets beyond loopback")
        return real_create(address, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "create_connection", create_connection)
    return attempts
