#!/usr/bin/env python3
"""A WebSocket-over-HTTP/2 client (RFC 8441) made of two libraries nobody on Rally wrote:
hyper-h2 (Debian's python3-h2) for HTTP/2 and its extended CONNECT, and wsproto (python3-wsproto)
for RFC 6455 framing on the stream. Used by test/http2/foreign-client.test.ts.

Usage: h2_websocket_client.py PORT CA_FILE STREAMS

Over one TLS connection (ALPN h2) it waits for the server's SETTINGS_ENABLE_CONNECT_PROTOCOL,
opens STREAMS WebSockets (subprotocols "chat, other"), sends a text message, a binary message and
a ping on each, a 100 KB message on the first (more than the 65,535-byte initial stream window,
both ways), resets the last stream, checks that another stream still echoes, and ends the others
with the closing handshake. Prints one JSON object per line; exits 0 after {"event": "done"}.
"""
import json
import socket
import ssl
import sys

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage

BIG = 100 * 1024


def report(**fields):
    print(json.dumps(fields), flush=True)


class Stream:
    def __init__(self, stream_id):
        self.id = stream_id
        self.ws = Connection(ConnectionType.CLIENT)
        self.headers = None
        self.messages = []
        self.partial = None
        self.pongs = []
        self.close = None
        self.ended = False
        self.reset = None
        # WebSocket bytes the HTTP/2 windows have not let out yet.
        self.unsent = b""


class Client:
    def __init__(self, port, ca_file):
        context = ssl.create_default_context(cafile=ca_file)
        context.set_alpn_protocols(["h2"])
        raw = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock = context.wrap_socket(raw, server_hostname="localhost")
        self.port = port
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        self.h2.initiate_connection()
        self.flush()
        self.connect_protocol = None
        self.streams = {}

    def flush(self):
        out = self.h2.data_to_send()
        if out:
            self.sock.sendall(out)

    def pump(self, done):
        """Reads and handles frames until done() holds; a socket timeout ends the run."""
        while not done():
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("the server closed the connection")
            for event in self.h2.receive_data(data):
                self.handle(event)
            self.flush()

    def handle(self, event):
        if isinstance(event, h2.events.RemoteSettingsChanged):
            changed = event.changed_settings.get(h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL)
            if changed is not None:
                self.connect_protocol = changed.new_value
        elif isinstance(event, h2.events.ResponseReceived):
            self.streams[event.stream_id].headers = dict(event.headers)
        elif isinstance(event, h2.events.DataReceived):
            # Give the window back as the bytes are consumed, or the server's sends stall.
            self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            stream = self.streams[event.stream_id]
            stream.ws.receive_data(event.data)
            for ws_event in stream.ws.events():
                self.handle_ws(stream, ws_event)
        elif isinstance(event, h2.events.WindowUpdated):
            for stream in self.streams.values():
                if stream.unsent:
                    self.send_unsent(stream)
        elif isinstance(event, h2.events.StreamEnded):
            self.streams[event.stream_id].ended = True
        elif isinstance(event, h2.events.StreamReset):
            self.streams[event.stream_id].reset = int(event.error_code)

    def handle_ws(self, stream, event):
        if isinstance(event, (TextMessage, BytesMessage)):
            stream.partial = event.data if stream.partial is None else stream.partial + event.data
            if event.message_finished:
                kind = "text" if isinstance(event, TextMessage) else "binary"
                stream.messages.append((kind, stream.partial))
                stream.partial = None
        elif isinstance(event, Ping):
            self.send_ws(stream, event.response())
        elif isinstance(event, Pong):
            stream.pongs.append(bytes(event.payload))
        elif isinstance(event, CloseConnection):
            stream.close = (event.code, event.reason)

    def send_ws(self, stream, event):
        stream.unsent += stream.ws.send(event)
        self.send_unsent(stream)

    def send_unsent(self, stream):
        # hyper-h2 leaves flow control to its user: at most the smaller of the stream's and the
        # connection's send window, in frames no larger than the peer's SETTINGS_MAX_FRAME_SIZE.
        while stream.unsent and stream.reset is None:
            room = min(
                self.h2.local_flow_control_window(stream.id),
                self.h2.max_outbound_frame_size,
                len(stream.unsent),
            )
            if room <= 0:
                break
            self.h2.send_data(stream.id, stream.unsent[:room])
            stream.unsent = stream.unsent[room:]
        self.flush()

    def open(self, path):
        stream_id = self.h2.get_next_available_stream_id()
        self.streams[stream_id] = Stream(stream_id)
        self.h2.send_headers(
            stream_id,
            [
                (":method", "CONNECT"),
                (":protocol", "websocket"),
                (":scheme", "https"),
                (":path", path),
                (":authority", f"localhost:{self.port}"),
                ("sec-websocket-version", "13"),
                ("sec-websocket-protocol", "chat, other"),
            ],
            end_stream=False,
        )
        self.flush()
        return self.streams[stream_id]


def main():
    port, ca_file, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    client = Client(port, ca_file)
    report(event="alpn", protocol=client.sock.selected_alpn_protocol())
    client.pump(lambda: client.connect_protocol is not None)
    report(event="settings", enable_connect_protocol=client.connect_protocol)

    streams = [client.open(f"/echo/{i}") for i in range(count)]
    client.pump(lambda: all(s.headers is not None or s.reset is not None for s in streams))
    for s in streams:
        headers = s.headers or {}
        report(
            event="response",
            stream=s.id,
            status=headers.get(":status"),
            protocol=headers.get("sec-websocket-protocol"),
            accept="sec-websocket-accept" in headers,
        )

    for i, s in enumerate(streams):
        client.send_ws(s, TextMessage(data=f"hello {i}"))
        client.send_ws(s, BytesMessage(data=bytes([i, 1, 2, 3])))
        client.send_ws(s, Ping(payload=f"ping {i}".encode()))
    client.pump(lambda: all(len(s.messages) >= 2 and s.pongs for s in streams))
    for s in streams:
        report(
            event="echoes",
            stream=s.id,
            text=s.messages[0][1],
            binary=list(s.messages[1][1]),
            pong=s.pongs[0].decode(),
        )

    first = streams[0]
    client.send_ws(first, TextMessage(data="x" * BIG))
    client.pump(lambda: len(first.messages) >= 3)
    report(event="big", stream=first.id, length=len(first.messages[2][1]))

    # One stream reset (RST_STREAM CANCEL): the others carry on.
    last = streams[-1]
    client.h2.reset_stream(last.id, h2.errors.ErrorCodes.CANCEL)
    client.flush()
    survivor = streams[1] if count > 2 else first
    before = len(survivor.messages)
    client.send_ws(survivor, TextMessage(data="after the reset"))
    client.pump(lambda: len(survivor.messages) > before)
    report(event="after_reset", stream=survivor.id, text=survivor.messages[-1][1])

    # The closing handshake ends each remaining stream: the server's close frame, then its
    # END_STREAM; the client ends its own side once its close is answered.
    for s in streams[:-1]:
        client.send_ws(s, CloseConnection(code=1000, reason="bye"))
        client.pump(lambda: s.close is not None and s.ended)
        client.h2.end_stream(s.id)
        client.flush()
        report(event="closed", stream=s.id, code=s.close[0], reason=s.close[1], reset=s.reset)

    client.h2.close_connection()
    client.flush()
    client.sock.close()
    report(event="done")


if __name__ == "__main__":
    try:
        main()
    except Exception as error:  # the test prints stderr and the reports so far
        report(event="error", error=f"{type(error).__name__}: {error}")
        sys.exit(1)
