"""permessage-deflate interop peer: Python `websockets` (Debian's 10.x, asyncio API) as a server.

Usage: server.py

Serves on 127.0.0.1 and an ephemeral port with the library's default compression
(compression="deflate"), echoing every message with its type. Prints one JSON object per line:
  {"event": "listening", "port": N}
  {"event": "connection", "requestExtensions": [...], "responseExtensions": [...], "extensions": [...]}
  {"event": "closed", "code": ...}
Exits when stdin closes (the Node test ends it that way or with SIGTERM), or after 120 s.
"""

import asyncio
import json
import sys

import websockets

MiB = 1024 * 1024


def emit(**fields):
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


async def echo(ws, path):
    emit(
        event="connection",
        path=path,
        extensions=[e.name for e in ws.extensions],
        requestExtensions=ws.request_headers.get_all("Sec-WebSocket-Extensions"),
        responseExtensions=ws.response_headers.get_all("Sec-WebSocket-Extensions"),
    )
    try:
        async for message in ws:
            await ws.send(message)
    except websockets.ConnectionClosed:
        pass
    emit(event="closed", code=ws.close_code)


async def stdin_closed():
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)


async def main():
    async with websockets.serve(echo, "127.0.0.1", 0, max_size=64 * MiB, ping_interval=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        emit(event="listening", port=port)
        await asyncio.wait_for(stdin_closed(), 120)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except (asyncio.TimeoutError, KeyboardInterrupt):
        pass
    sys.exit(0)
