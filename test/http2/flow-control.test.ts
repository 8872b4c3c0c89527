/**
 * HTTP/2 flow control under WebSockets, byte level, with a client that gives window back only
 * where the test says (raw-frames.ts's RawH2Client):
 * - a stream stalled by its own window (RFC 9113 6.9.1) receives exactly that window and no more;
 *   the server's `send` says 'buffered' and `bufferedAmount` holds the rest; the connection's
 *   other WebSockets and a page request flow meanwhile; giving the window back drains that
 *   stream alone ('drain' for it, not for the others still stalled);
 * - the connection window is shared by every stream: one stream with a flood queued cannot keep
 *   the others out once window opens — the next window carries a small echo and a page's body
 *   beside the flood, and exactly as many bytes as the window allowed arrive in all.
 */
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import type { ServerWebSocket } from '../../src/index.js'
import { EventQueue } from '../support/events.js'
import { parseFrame } from '../support/frames.js'
import { type Certificate, makeCertificate, maskedFrame, withH2Server } from './helpers.js'
import { RawH2Client } from './raw-frames.js'

let certificate: Certificate
before(() => {
  certificate = makeCertificate()
})
after(() => certificate?.dispose())

const SETTINGS_INITIAL_WINDOW_SIZE = 0x4
/** RFC 9113 6.9.2: the connection's window starts at 65,535 and only WINDOW_UPDATE moves it. */
const CONNECTION_WINDOW = 65_535
const STATUS_200_INDEXED = 0x88

function connectFields(port: number, path: string): [string, string][] {
  return [
    [':method', 'CONNECT'],
    [':protocol', 'websocket'],
    [':scheme', 'https'],
    [':path', path],
    [':authority', `localhost:${port}`],
    ['sec-websocket-version', '13'],
  ]
}

function getFields(port: number, path: string): [string, string][] {
  return [
    [':method', 'GET'],
    [':scheme', 'https'],
    [':path', path],
    [':authority', `localhost:${port}`],
  ]
}

/** The text messages among the WebSocket frames a stream's DATA has carried so far. */
function texts(data: Buffer): string[] {
  const out: string[] = []
  let rest = data
  for (let parsed = parseFrame(rest); parsed !== undefined; parsed = parseFrame(rest)) {
    if (parsed.frame.opcode === 0x1) out.push(parsed.frame.payload.toString('utf8'))
    rest = rest.subarray(parsed.size)
  }
  return out
}

/** Server sockets by path, and their drain and message events. */
class Side {
  readonly byPath = new Map<string, ServerWebSocket<{ path: string }>>()
  readonly opened = new EventQueue<string>()
  readonly drains = new EventQueue<string>()
  readonly echoed = new EventQueue<string>()
  readonly handlers = {
    upgrade: (request: { url?: string | undefined }) => ({ path: request.url ?? '' }),
    open: (ws: ServerWebSocket<{ path: string }>) => {
      this.byPath.set(ws.data.path, ws)
      this.opened.push(ws.data.path)
    },
    message: (ws: ServerWebSocket<{ path: string }>, data: string | Buffer) => {
      ws.send(data)
      this.echoed.push(ws.data.path)
    },
    drain: (ws: ServerWebSocket<{ path: string }>) => this.drains.push(ws.data.path),
  }

  socket(path: string): ServerWebSocket<{ path: string }> {
    const ws = this.byPath.get(path)
    assert.ok(ws !== undefined, `no socket on ${path}`)
    return ws
  }
}

describe('HTTP/2 flow control under WebSockets, byte level', () => {
  test('a stream stalled by its window gets exactly the window; the others and a page flow; WINDOW_UPDATE drains it alone', async () => {
    const WINDOW = 4096
    const side = new Side()
    await withH2Server(certificate, side.handlers, async (h) => {
      const client = await RawH2Client.connect(h.port, certificate.cert, [
        [SETTINGS_INITIAL_WINDOW_SIZE, WINDOW],
      ])
      try {
        const paths = ['/stalled-a', '/stalled-b', '/stalled-c', '/live']
        // The stalled streams' windows are never given back (credit false) until the test says.
        const ids = new Map(
          paths.map((path) => [path, client.request(connectFields(h.port, path), false, path === '/live')]),
        )
        await client.until(
          () =>
            paths.every((path) => client.stream(ids.get(path)!).headerBlockFirstByte === STATUS_200_INDEXED),
          'four 200s',
        )
        for (let i = 0; i < paths.length; i++) await side.opened.next(20_000, 'the server sockets')

        // 16 binary messages of 16 KiB to each stalled stream: 16 × (4 + 16,384) bytes of frames.
        const message = Buffer.alloc(16 * 1024, 0x61)
        const frameBytes = 16 * (4 + message.length)
        const stalled = paths.slice(0, 3)
        for (const path of stalled) {
          const ws = side.socket(path)
          const statuses = Array.from({ length: 16 }, () => ws.send(message))
          assert.equal(statuses.at(-1), 'buffered', `${path}: ${statuses}`)
        }
        await client.until(
          () => stalled.every((path) => client.stream(ids.get(path)!).data.length >= WINDOW),
          'the stalled streams to fill their windows',
        )
        // A PING round trip: whatever the server could send has arrived by its answer.
        await client.ping()
        for (const path of stalled) {
          assert.equal(client.stream(ids.get(path)!).data.length, WINDOW, `${path} got more than its window`)
          // Every byte not yet on the wire is the socket's backlog.
          assert.ok(
            side.socket(path).bufferedAmount >= frameBytes - WINDOW,
            `${path}: bufferedAmount ${side.socket(path).bufferedAmount} < ${frameBytes - WINDOW}`,
          )
        }

        // Meanwhile: the connection's live WebSocket echoes, and a page request is answered.
        const live = ids.get('/live')!
        client.sendData(live, maskedFrame(0x1, Buffer.from('still flowing')))
        await client.until(() => texts(client.stream(live).data).includes('still flowing'), 'the live echo')
        const page = client.request(getFields(h.port, '/page'), true)
        await client.until(() => client.stream(page).ended, 'the page')
        assert.equal(client.stream(page).headerBlockFirstByte, STATUS_200_INDEXED)
        assert.equal(client.stream(page).data.toString(), 'page /page')

        // The window of one stalled stream given back: it drains, and it alone.
        const released = ids.get('/stalled-a')!
        client.stream(released).credit = true
        client.windowUpdate(released, WINDOW)
        assert.equal(await side.drains.next(20_000, 'the drain'), '/stalled-a')
        await client.until(
          () => client.stream(released).data.length === frameBytes,
          () => `all ${frameBytes} bytes on the released stream (${client.stream(released).data.length})`,
        )
        assert.equal(side.socket('/stalled-a').bufferedAmount, 0)
        await client.ping()
        for (const path of ['/stalled-b', '/stalled-c']) {
          assert.equal(client.stream(ids.get(path)!).data.length, WINDOW, `${path} moved`)
          assert.ok(side.socket(path).bufferedAmount >= frameBytes - WINDOW)
        }
        assert.equal(side.drains.size, 0, 'no drain for the streams still stalled')
        assert.equal(client.goaway, undefined)
      } finally {
        client.close()
      }
    })
  })

  test('the connection window is shared: with a flood queued on one stream, the next window also carries an echo and a page', async () => {
    const side = new Side()
    await withH2Server(certificate, side.handlers, async (h) => {
      // Streams may take 1 MiB each; the connection keeps its 65,535 bytes and gets more only
      // when the test gives it (no automatic connection credit on this client: see below).
      const client = await RawH2Client.connect(h.port, certificate.cert, [
        [SETTINGS_INITIAL_WINDOW_SIZE, 1024 * 1024],
      ])
      client.creditConnection = false
      try {
        const flood = client.request(connectFields(h.port, '/flood'), false)
        const chat = client.request(connectFields(h.port, '/chat'), false)
        await client.until(
          () =>
            client.stream(flood).headerBlockFirstByte === STATUS_200_INDEXED &&
            client.stream(chat).headerBlockFirstByte === STATUS_200_INDEXED,
          'two 200s',
        )
        await side.opened.next(20_000, 'a server socket')
        await side.opened.next(20_000, 'a server socket')
        // 512 KiB queued on one stream: eight times the connection window.
        const message = Buffer.alloc(64 * 1024, 0x62)
        for (let i = 0; i < 8; i++) side.socket('/flood').send(message)
        await client.until(
          () => client.stream(flood).data.length === CONNECTION_WINDOW,
          () => `the first window on the flooded stream (${client.stream(flood).data.length})`,
        )
        // The connection window is spent: the echo and the page wait for the next one.
        client.sendData(chat, maskedFrame(0x1, Buffer.from('small')))
        assert.equal(await side.echoed.next(20_000, 'the echo written'), '/chat')
        const page = client.request(getFields(h.port, '/page'), true)
        await client.until(() => client.stream(page).headerBlockFirstByte !== undefined, 'the page headers')
        await client.ping()
        assert.equal(client.stream(chat).data.length, 0, 'DATA beyond the connection window')
        assert.equal(client.stream(page).data.length, 0, 'DATA beyond the connection window')

        // One more window: nghttp2 takes turns among the streams with data, so the small echo and
        // the page's body come in it although the flood queued first.
        client.windowUpdate(0, CONNECTION_WINDOW)
        await client.until(
          // (The page's END_STREAM, an empty DATA frame, waits for window in nghttp2: its body is what counts.)
          () =>
            texts(client.stream(chat).data).includes('small') &&
            client.stream(page).data.toString() === 'page /page',
          () =>
            `the echo and the page in the second window (flood ${client.stream(flood).data.length}, chat ${client.stream(chat).data.length}, page ${client.stream(page).data.length})`,
        )
        await client.ping()
        const total = [flood, chat, page].reduce((sum, id) => sum + client.stream(id).data.length, 0)
        assert.equal(total, 2 * CONNECTION_WINDOW, 'exactly two windows of DATA in all')
        assert.ok(client.stream(flood).data.length < 8 * (10 + message.length))
        assert.equal(client.goaway, undefined)
      } finally {
        client.close()
      }
    })
  })
})
