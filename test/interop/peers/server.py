"""A WebSocket server peer for the interop tests: Python's `websockets` (10.x, asyncio API).

Usage: server.py [--deflate]

With --deflate the server accepts permessage-deflate offers (websockets' defaults: it asks for
12-bit windows both ways); without it, compression is off and offers are declined.

Listens on 127.0.0.1 on a free port and prints {"port": N} once ready, then a line
{"event": "closed", "path": ..., "code": ..., "reason": ...} as each connection ends (the code
and reason of the client's close frame). Behaviour by path (the query string is ignored):
  /forbidden     refuses the handshake: 403 with body "forbidden"
  /close-after-first
                 receives one message, then closes with 4002 "server bye"
  /burst-close   sends "one", b"two", "three", "four" * 50000 and closes with 4003 "burst",
                 all at once
  /server-pings  pings the client three times (payloads b"", b"p1", 125 bytes), waits for each
                 pong, then sends {"pongs": N}
  /pings         echoes; the text "report-pings" is answered with the JSON list (hex) of the
                 ping payloads received so far on this connection
  anything else  echoes every message with its type (text or binary)

Subprotocols "chat" and "superchat" are accepted when offered. It exits by itself when stdin closes (the test process went away) or after 55 s, whichever
comes first.
"""

import asyncio
import http
import json
import sys
import threading

import websockets
from websockets.legacy.server import WebSocketServerProtocol

MAX_SIZE = 64 * 1024 * 1024
LIFETIME = 55


def emit(**fields):
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


class RecordingProtocol(WebSocketServerProtocol):
    """Notes the payload of every ping before answering it (websockets answers pings itself)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.pings_received = []

    async def pong(self, data=b""):
        self.pings_received.append(bytes(data).hex())
        await super().pong(data)


async def process_request(path, _headers):
    if path == "/forbidden":
        return http.HTTPStatus.FORBIDDEN, [("Content-Type", "text/plain")], b"forbidden"
    return None


async def handler(ws):
    route = ws.path.split("?")[0]
    try:
        if route == "/close-after-first":
            await ws.recv()
            await ws.close(4002, "server bye")
            return
        if route == "/burst-close":
            await ws.send("one")
            await ws.send(b"two")
            await ws.send("three")
            await ws.send("four" * 50000)
            await ws.close(4003, "burst")
            return
        if route == "/server-pings":
            pongs = 0
            for payload in [b"", b"p1", bytes(range(125))]:
                waiter = await ws.ping(payload)
                await asyncio.wait_for(waiter, 5)
                pongs += 1
            await ws.send(json.dumps({"pongs": pongs}))
        async for message in ws:
            if route == "/pings" and message == "report-pings":
                await ws.send(json.dumps(ws.pings_received))
            else:
                await ws.send(message)
    except websockets.ConnectionClosed:
        pass
    finally:
        await ws.wait_closed()
        # What the client's close frame said (1006 if none came), for the test to check.
        emit(event="closed", path=ws.path, code=ws.close_code, reason=ws.close_reason)


async def stdin_closed():
    # A daemon thread, so that a read still blocked at exit does not keep the process alive.
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def read():
        sys.stdin.buffer.read()
        loop.call_soon_threadsafe(lambda: done.done() or done.set_result(None))

    threading.Thread(target=read, daemon=True).start()
    await done


async def main():
    async with websockets.serve(
        handler,
        "127.0.0.1",
        0,
        compression="deflate" if "--deflate" in sys.argv[1:] else None,
        max_size=MAX_SIZE,
        ping_interval=None,
        close_timeout=5,
        process_request=process_request,
        # Chosen only for clients that offer one of these.
        subprotocols=["chat", "superchat"],
        create_protocol=RecordingProtocol,
    ) as server:
        port = server.sockets[0].getsockname()[1]
        emit(port=port)
        await asyncio.wait([asyncio.ensure_future(stdin_closed())], timeout=LIFETIME)


if __name__ == "__main__":
    asyncio.run(main())
