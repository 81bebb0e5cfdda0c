"""A TCP relay in front of an HTTP upstream that can lose answers: the request reaches the upstream
(which acts on it), the answer never reaches the caller (the connection is cut). What a crash of
the network, or of us, between the upstream's commit and our own looks like from our side."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field


@dataclass
class LosingRelay:
    target_host: str
    target_port: int
    # Answers to requests whose first line starts with this are lost, `lose` times.
    prefix: bytes = b""
    lose: int = 0
    lost: int = 0
    # Instead of losing them, hold matching answers until the caller goes away (a process killed
    # while it waits); `answered` is set once the upstream has answered a matching request.
    hold: bool = False
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    seen: list[bytes] = field(default_factory=list)
    port: int = 0

    async def _read_message(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        return head + (await reader.readexactly(length) if length else b"")

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        try:
            while True:
                try:
                    request = await self._read_message(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                self.seen.append(request.split(b"\r\n", 1)[0])
                up_writer.write(request)
                await up_writer.drain()
                answer = await self._read_message(up_reader)
                if self.hold and self.prefix and request.startswith(self.prefix):
                    self.answered.set()
                    await reader.read()  # until the caller's side closes
                    return
                if self.prefix and request.startswith(self.prefix) and self.lose > 0:
                    self.lose -= 1
                    self.lost += 1
                    return  # the upstream acted; its answer is lost with the connection
                writer.write(answer)
                await writer.drain()
        finally:
            for w in (writer, up_writer):
                with contextlib.suppress(Exception):
                    w.close()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[LosingRelay]:
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)
