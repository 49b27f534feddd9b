"""``JoinedWrites``: an answer's status line, headers and body leave in one send, and nothing is held back
past the current turn of the event loop. A real asyncio transport over a socket pair."""
from __future__ import annotations

import asyncio
import socket
from unittest import mock

from engine.serve.server import JoinedWrites


async def _pair():
    ours, theirs = socket.socketpair()
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_connection(asyncio.Protocol, sock=ours)
    theirs.setblocking(False)
    return loop, transport, theirs


async def _read(loop, sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), 5)
        if not chunk:
            break
        data += chunk
    return data


def test_writes_in_one_turn_leave_as_one_send_at_the_end_of_that_turn():
    async def scenario():
        loop, transport, theirs = await _pair()
        joined = JoinedWrites(transport, loop)
        with mock.patch.object(transport, "write", wraps=transport.write) as sent:
            joined.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
            joined.write(b"ok")
            assert sent.call_count == 0          # held for the rest of this turn only
            await asyncio.sleep(0)
            assert sent.call_count == 1
        assert await _read(loop, theirs, 40) == b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
        joined.close()
        theirs.close()

    asyncio.run(scenario())


def test_close_sends_what_is_pending_first_and_the_rest_is_the_transports_own():
    async def scenario():
        loop, transport, theirs = await _pair()
        joined = JoinedWrites(transport, loop)
        assert joined.get_extra_info("socket") is transport.get_extra_info("socket")
        joined.write(b"HTTP/1.1 408 Request Timeout\r\n\r\n")
        joined.close()
        assert joined.is_closing()
        assert await _read(loop, theirs, 1000) == b"HTTP/1.1 408 Request Timeout\r\n\r\n"   # then end of stream
        await asyncio.sleep(0)   # the turn's pending send, if any, must not write to the closed transport
        theirs.close()

    asyncio.run(scenario())
