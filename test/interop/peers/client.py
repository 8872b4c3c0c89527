"""A WebSocket client peer for the interop tests: Python's `websockets` (10.x, asyncio API).

Usage: client.py MODE URI

Every result is one JSON object per line on stdout; the Node test asserts on them. A line
{"event": "done"} ends a mode that finished; a Python exception prints {"event": "error", ...}
and exits 1. Every await is bounded, so the script always ends by itself.

Modes:
  suite       echo round trips (sizes, UTF-8, fragments, pings), then a close with 4001 "bye"
  deflate     connects with the default permessage-deflate offer; reports what was negotiated
  subprotocol offers ["chat", "superchat"]; reports the chosen subprotocol
  frames      hand-made frames: a code point split across fragments, then invalid UTF-8
  hold        connects, says "open", then waits for the server to close (SIGTERM test)
  close-frames
              closing variants on separate connections: an empty close frame, a 123-byte
              reason, a code that is invalid on the wire (1005), a 1-byte close payload
  stall       like hold, but stops reading after "open": the server's close goes unanswered
  limit       a 64 MiB message (rally echo's limit) round-trips; 64 MiB + 1 is closed with 1009
  deflate-on  with permessage-deflate negotiated (rally echo --deflate), in several variants
  deflate-order
              permessage-deflate without context takeover; sends a batch (incompressible 100 KB
              messages, each followed by small ones) without waiting, then checks the echo order
"""

import asyncio
import hashlib
import json
import os
import struct
import sys
import traceback

import websockets
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.frames import OP_CLOSE, OP_CONT, OP_TEXT

MiB = 1024 * 1024
SIZES = [0, 1, 125, 126, 65535, 65536, MiB, 16 * MiB]
# Room for the largest message above (rally echo itself accepts 64 MiB).
MAX_SIZE = 64 * MiB
STEP = 20  # seconds allowed for any single await


def emit(**fields):
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def digest(data):
    raw = data.encode() if isinstance(data, str) else data
    return hashlib.sha256(raw).hexdigest()[:16]


def kind(data):
    return "text" if isinstance(data, str) else "binary"


def text_of(size):
    # ASCII, so that size in characters is size in bytes; a pattern, so that order matters.
    return "".join(chr(0x61 + (i * 7) % 26) for i in range(size)) if size < 4096 else (
        ("abcdefghijklmnopqrstuvwxyz0123456789" * (size // 36 + 1))[:size]
    )


def bytes_of(size):
    return bytes((i * 31 + 7) & 0xFF for i in range(size)) if size < 4096 else (
        bytes(range(256)) * (size // 256 + 1)
    )[:size]


async def round_trip(ws, case, message, expected=None):
    """Sends `message` (a str, bytes, or an iterable of fragments) and checks the echo."""
    if expected is None:
        expected = message
    await asyncio.wait_for(ws.send(message), STEP)
    echo = await asyncio.wait_for(ws.recv(), STEP)
    size = len(expected.encode()) if isinstance(expected, str) else len(expected)
    echo_size = len(echo.encode()) if isinstance(echo, str) else len(echo)
    fields = dict(
        case=case,
        type=kind(expected),
        size=size,
        echoType=kind(echo),
        echoSize=echo_size,
        equal=echo == expected,
    )
    if size <= 256:
        fields["echo"] = echo if isinstance(echo, str) else echo.hex()
    else:
        fields["digest"] = digest(expected)
        fields["echoDigest"] = digest(echo)
    emit(**fields)


async def fragments_async(parts):
    for part in parts:
        await asyncio.sleep(0)
        yield part


async def suite(uri):
    async with websockets.connect(
        uri, compression=None, max_size=MAX_SIZE, ping_interval=None, open_timeout=STEP, close_timeout=STEP
    ) as ws:
        emit(event="open", extensions=[e.name for e in ws.extensions], subprotocol=ws.subprotocol)
        for size in SIZES:
            await round_trip(ws, f"text-{size}", text_of(size))
            await round_trip(ws, f"binary-{size}", bytes_of(size))
        await round_trip(ws, "utf8", "emoji 😀🎉👍🏽 CJK 漢字かなカナ한국어 mixed é ß ∑ 𝄞")
        # websockets sends an iterable as one fragmented message: one frame per item.
        await round_trip(ws, "fragmented-text", ["frag", "men", "ted 😀", "", " end"], "fragmented 😀 end")
        await round_trip(ws, "fragmented-binary", [b"\x00\x01", b"", b"\x02" * 1000], b"\x00\x01" + b"\x02" * 1000)
        await round_trip(ws, "fragmented-async", fragments_async(["a", "sync ", "漢字"]), "async 漢字")
        many = [bytes([i & 0xFF]) for i in range(5000)]
        await round_trip(ws, "fragmented-5000", many, b"".join(many))
        for payload in [b"", b"ping!", bytes(range(125))]:
            waiter = await asyncio.wait_for(ws.ping(payload), STEP)
            latency = await asyncio.wait_for(waiter, STEP)
            emit(case="ping", size=len(payload), pong=True, latency=latency)
        # A ping between the frames of a fragmented message (RFC 6455 5.4: control frames may be
        # injected in the middle of a fragmented message); the pong must come back too.
        waiters = []

        async def with_ping():
            yield "before ping, "
            waiters.append(await ws.ping(b"mid"))
            yield "after ping"

        await round_trip(ws, "fragmented-with-ping", with_ping(), "before ping, after ping")
        await asyncio.wait_for(waiters[0], STEP)
        emit(case="ping-mid-message", pong=True)
        await asyncio.wait_for(ws.close(4001, "bye"), STEP)
        emit(event="closed", code=ws.close_code, reason=ws.close_reason)


async def deflate(uri):
    # compression="deflate" is the default: the client offers permessage-deflate.
    async with websockets.connect(uri, max_size=MAX_SIZE, ping_interval=None, open_timeout=STEP) as ws:
        emit(
            event="open",
            extensions=[e.name for e in ws.extensions],
            responseExtensions=ws.response_headers.get_all("Sec-WebSocket-Extensions"),
            requestExtensions=ws.request_headers.get_all("Sec-WebSocket-Extensions"),
        )
        await round_trip(ws, "compressible-text", "compress me " * 5000)
        await round_trip(ws, "compressible-binary", b"\x00" * 100000)
        await asyncio.wait_for(ws.close(1000, "done"), STEP)
        emit(event="closed", code=ws.close_code, reason=ws.close_reason)


async def subprotocol(uri):
    async with websockets.connect(
        uri, compression=None, subprotocols=["chat", "superchat"], ping_interval=None, open_timeout=STEP
    ) as ws:
        emit(
            event="open",
            subprotocol=ws.subprotocol,
            responseProtocols=ws.response_headers.get_all("Sec-WebSocket-Protocol"),
        )
        await round_trip(ws, "text", "hi")
        await asyncio.wait_for(ws.close(), STEP)
        emit(event="closed", code=ws.close_code, reason=ws.close_reason)


async def frames(uri):
    async with websockets.connect(uri, compression=None, ping_interval=None, open_timeout=STEP) as ws:
        # "😀" is F0 9F 98 80: its bytes split across a text frame and a continuation frame
        # (valid: UTF-8 is checked on the whole message, RFC 6455 8.1).
        await asyncio.wait_for(ws.write_frame(False, OP_TEXT, b"x\xf0\x9f"), STEP)
        await asyncio.wait_for(ws.write_frame(True, OP_CONT, b"\x98\x80y"), STEP)
        echo = await asyncio.wait_for(ws.recv(), STEP)
        emit(case="split-code-point", echoType=kind(echo), echo=echo if isinstance(echo, str) else echo.hex())
        # Invalid UTF-8 in a text message: the server must close with 1007 (RFC 6455 8.1).
        await asyncio.wait_for(ws.write_frame(True, OP_TEXT, b"ok \xff\xfe"), STEP)
        try:
            extra = await asyncio.wait_for(ws.recv(), STEP)
            emit(case="invalid-utf8", unexpectedMessage=kind(extra))
        except websockets.ConnectionClosed:
            pass
        await asyncio.wait_for(ws.wait_closed(), STEP)
        emit(event="closed", code=ws.close_code, reason=ws.close_reason)


async def hold(uri):
    async with websockets.connect(
        uri, compression=None, ping_interval=None, open_timeout=STEP, close_timeout=STEP
    ) as ws:
        await round_trip(ws, "before", "hello")
        emit(event="open")
        try:
            extra = await asyncio.wait_for(ws.recv(), STEP)
            emit(event="unexpected", type=kind(extra))
        except websockets.ConnectionClosed:
            pass
        await asyncio.wait_for(ws.wait_closed(), STEP)
        emit(event="closed", code=ws.close_code, reason=ws.close_reason)


CLOSE_REASON_123 = "ß" * 61 + "!"  # 123 bytes of UTF-8


async def close_frames(uri):
    variants = [
        ("empty", b""),
        ("long-reason", struct.pack("!H", 4123) + CLOSE_REASON_123.encode()),
        ("wire-1005", struct.pack("!H", 1005)),
        ("one-byte", b"\x03"),
        ("bad-utf8-reason", struct.pack("!H", 1000) + b"\xff"),
    ]
    for variant, payload in variants:
        async with websockets.connect(
            uri, compression=None, ping_interval=None, open_timeout=STEP, close_timeout=STEP
        ) as ws:
            await round_trip(ws, f"{variant}/before", "hi")
            # Written by hand, so that websockets' own checks do not stop invalid payloads.
            await asyncio.wait_for(ws.write_frame(True, OP_CLOSE, payload), STEP)
            try:
                extra = await asyncio.wait_for(ws.recv(), STEP)
                emit(case=variant, unexpectedMessage=kind(extra))
            except websockets.ConnectionClosed:
                pass
            await asyncio.wait_for(ws.wait_closed(), STEP)
            emit(event="closed", variant=variant, code=ws.close_code, reason=ws.close_reason)


async def stall(uri):
    ws = await websockets.connect(
        uri, compression=None, ping_interval=None, open_timeout=STEP, close_timeout=STEP
    )
    await round_trip(ws, "before", "hello")
    # Stop reading: the server's close frame stays in the kernel, unanswered.
    ws.transport.pause_reading()
    emit(event="open")
    lost = asyncio.get_running_loop().create_future()
    ws.connection_lost_waiter.add_done_callback(lambda _: lost.done() or lost.set_result(None))
    await asyncio.wait_for(lost, STEP)
    emit(event="lost")


async def limit(uri):
    async with websockets.connect(
        uri, compression=None, max_size=MAX_SIZE, ping_interval=None, open_timeout=STEP, close_timeout=STEP
    ) as ws:
        await round_trip(ws, "binary-64MiB", bytes_of(MAX_SIZE))
        await asyncio.wait_for(ws.send(b"\x01" * (MAX_SIZE + 1)), STEP)
        try:
            extra = await asyncio.wait_for(ws.recv(), STEP)
            emit(case="too-big", unexpectedMessage=len(extra))
        except websockets.ConnectionClosed:
            pass
        await asyncio.wait_for(ws.wait_closed(), STEP)
        emit(event="closed", code=ws.close_code, reason=ws.close_reason)


DEFLATE_VARIANTS = {
    # What websockets offers by default: "permessage-deflate; client_max_window_bits".
    "default": None,
    "no-context-takeover": dict(server_no_context_takeover=True, client_no_context_takeover=True),
    "window-bits": dict(server_max_window_bits=10, client_max_window_bits=9),
}


async def deflate_on(uri):
    for variant, params in DEFLATE_VARIANTS.items():
        options = {} if params is None else dict(
            compression=None, extensions=[ClientPerMessageDeflateFactory(**params)]
        )
        async with websockets.connect(
            uri, max_size=MAX_SIZE, ping_interval=None, open_timeout=STEP, close_timeout=STEP, **options
        ) as ws:
            emit(
                event="open",
                variant=variant,
                extensions=[e.name for e in ws.extensions],
                responseExtensions=ws.response_headers.get_all("Sec-WebSocket-Extensions"),
            )
            messages = [
                ("small", "x" * 10),
                ("empty", ""),
                ("compressible-text", "hello deflate " * 10000),
                ("zeros", b"\x00" * MiB),
                ("random", os.urandom(65536)),
                ("utf8", "😀 漢字 " * 3000),
                ("text-16MiB", text_of(16 * MiB)),
                ("fragmented", ["frag", "men", "ted"]),
            ]
            for name, message in messages:
                # Three times each (the 16 MiB one once): with context takeover, later copies
                # compress against earlier ones.
                for i in range(1 if name == "text-16MiB" else 3):
                    expected = "".join(message) if isinstance(message, list) else message
                    await round_trip(ws, f"{variant}/{name}/{i}", message, expected)
            await asyncio.wait_for(ws.close(4001, "bye"), STEP)
            emit(event="closed", variant=variant, code=ws.close_code, reason=ws.close_reason)


async def deflate_order(uri):
    factory = ClientPerMessageDeflateFactory(server_no_context_takeover=True, client_no_context_takeover=True)
    async with websockets.connect(
        uri, compression=None, extensions=[factory], max_size=MAX_SIZE, ping_interval=None,
        open_timeout=STEP, close_timeout=STEP,
    ) as ws:
        emit(event="open", responseExtensions=ws.response_headers.get_all("Sec-WebSocket-Extensions"))
        batch = []
        for i in range(10):
            batch += [os.urandom(100_000), f"small {i}a", f"small {i}b", b"tiny"]
        for message in batch:
            await asyncio.wait_for(ws.send(message), STEP)
        echoes = [await asyncio.wait_for(ws.recv(), STEP) for _ in batch]
        first_bad = next((i for i, (a, b) in enumerate(zip(batch, echoes)) if a != b), None)
        emit(
            case="order",
            count=len(echoes),
            inOrder=first_bad is None,
            firstMismatch=first_bad,
            sent=[f"{kind(m)}:{len(m)}" for m in batch],
            received=[f"{kind(m)}:{len(m)}" for m in echoes],
        )
        await asyncio.wait_for(ws.close(1000), STEP)


MODES = {"suite": suite, "deflate": deflate, "subprotocol": subprotocol, "frames": frames, "hold": hold, "limit": limit,
         "close-frames": close_frames, "stall": stall,
         "deflate-on": deflate_on, "deflate-order": deflate_order}


def main():
    mode, uri = sys.argv[1], sys.argv[2]
    try:
        asyncio.run(asyncio.wait_for(MODES[mode](uri), 50))
    except BaseException as exc:  # noqa: BLE001 - everything is reported to the test
        emit(event="error", error=f"{type(exc).__name__}: {exc}", trace=traceback.format_exc())
        sys.exit(1)
    emit(event="done")


if __name__ == "__main__":
    main()
