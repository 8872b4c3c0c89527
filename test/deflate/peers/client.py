"""permessage-deflate interop peer: Python `websockets` (Debian's 10.x, asyncio API) as a client.

Usage: client.py URI

Connects with the library's default compression (compression="deflate": it offers
permessage-deflate), echoes text and binary messages of several sizes (compressible and random)
through the server, and reports one JSON object per line on stdout:
  {"event": "open", "responseExtensions": [...], "extensions": [...]}
  {"case": ..., "size": ..., "equal": true|false}       one per round trip
  {"event": "closed", "code": ..., "reason": ...}
  {"event": "done"}
An exception prints {"event": "error", ...} and exits 1. Every await is bounded.
"""

import asyncio
import json
import os
import random
import sys
import traceback

import websockets

MiB = 1024 * 1024
SIZES = [0, 1, 1000, 2000, 65 * 1024, MiB, 4 * MiB]
STEP = 20  # seconds allowed for any single await


def emit(**fields):
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def compressible_text(size):
    unit = "permessage-deflate interop, café 😀 "
    text = (unit * (size // len(unit.encode()) + 1)).encode()[:size].decode("utf-8", "ignore")
    return text + "x" * (size - len(text.encode()))


def random_text(size):
    rng = random.Random(size)
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(size))


def compressible_bytes(size):
    return (bytes(range(64)) * (size // 64 + 1))[:size]


async def round_trip(ws, case, message, expected=None):
    """Sends `message` (str, bytes, or a list of fragments) and checks the echo against `expected`."""
    if expected is None:
        expected = message
    await asyncio.wait_for(ws.send(message), STEP)
    echo = await asyncio.wait_for(ws.recv(), STEP)
    size = len(expected.encode()) if isinstance(expected, str) else len(expected)
    emit(case=case, size=size, sameType=type(echo) is type(expected), equal=echo == expected)


async def main(uri):
    async with websockets.connect(
        uri, max_size=64 * MiB, ping_interval=None, open_timeout=STEP, close_timeout=STEP
    ) as ws:
        emit(
            event="open",
            extensions=[e.name for e in ws.extensions],
            requestExtensions=ws.request_headers.get_all("Sec-WebSocket-Extensions"),
            responseExtensions=ws.response_headers.get_all("Sec-WebSocket-Extensions"),
        )
        for size in SIZES:
            await round_trip(ws, f"compressible-text-{size}", compressible_text(size))
            await round_trip(ws, f"random-text-{size}", random_text(min(size, 256 * 1024)))
            await round_trip(ws, f"compressible-binary-{size}", compressible_bytes(size))
            await round_trip(ws, f"random-binary-{size}", os.urandom(size))
        # Fragmented: websockets sends an iterable as one message, one frame per item; with
        # compression, RSV1 goes on the first frame only.
        parts = ["frag", "mented ", "😀" * 500, "", " end"]
        await round_trip(ws, "fragmented-text", parts, "".join(parts))
        await asyncio.wait_for(ws.close(1000, "done"), STEP)
        emit(event="closed", code=ws.close_code, reason=ws.close_reason)


if __name__ == "__main__":
    try:
        asyncio.run(asyncio.wait_for(main(sys.argv[1]), 120))
        emit(event="done")
    except Exception as error:  # noqa: BLE001 - report anything to the Node test
        emit(event="error", error=repr(error), trace=traceback.format_exc())
        sys.exit(1)
