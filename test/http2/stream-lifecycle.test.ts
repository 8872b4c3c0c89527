/**
 * A WebSocket's life on an HTTP/2 stream: the closing handshake ends the stream with END_STREAM
 * (no reset), terminate resets only its own stream (RST_STREAM CANCEL), a client resetting one
 * stream leaves the connection's other WebSockets untouched, HTTP/2 flow control is the
 * backpressure ('buffered', bufferedAmount, then drain), and permessage-deflate on a stream.
 */
import assert from 'node:assert/strict'
import { constants as http2Constants } from 'node:http2'
import { after, before, describe, test } from 'node:test'
import { inflateRawSync, constants as zlibConstants } from 'node:zlib'
import type { CloseInfo, ServerWebSocket } from '../../src/index.js'
import { PauseReason } from '../../src/node/socket-driver.js'
import {
  type Certificate,
  connectHeaders,
  makeCertificate,
  maskedFrame,
  responseOf,
  StreamClient,
  withH2Server,
} from './helpers.js'

let certificate: Certificate
before(() => {
  certificate = makeCertificate()
})
after(() => certificate?.dispose())

/** Server-side sockets and their close events, waited on by the tests. */
class ServerSide {
  readonly open: ServerWebSocket<undefined>[] = []
  readonly closes = new Map<ServerWebSocket<undefined>, CloseInfo>()
  drains = 0
  private waiters: (() => void)[] = []

  readonly handlers = {
    open: (ws: ServerWebSocket<undefined>) => {
      this.open.push(ws)
      this.wake()
    },
    message: (ws: ServerWebSocket<undefined>, data: string | Buffer) => {
      ws.send(data)
    },
    drain: () => {
      this.drains++
      this.wake()
    },
    close: (ws: ServerWebSocket<undefined>, _code: number, _reason: string, info: CloseInfo) => {
      this.closes.set(ws, info)
      this.wake()
    },
  }

  until(condition: () => boolean): Promise<void> {
    if (condition()) return Promise.resolve()
    return new Promise((resolve) => {
      const check = () => {
        if (condition()) resolve()
        else this.waiters.push(check)
      }
      this.waiters.push(check)
    })
  }

  private wake(): void {
    const waiters = this.waiters
    this.waiters = []
    for (const waiter of waiters) waiter()
  }
}

describe('WebSocket on an HTTP/2 stream', () => {
  test('the closing handshake ends the stream with END_STREAM both ways, not a reset', async () => {
    const side = new ServerSide()
    await withH2Server(certificate, side.handlers, async (h) => {
      const session = await h.session()
      const { client } = await StreamClient.open(session, h.port)
      await side.until(() => side.open.length === 1)
      const ws = side.open[0]!
      ws.close(1000, 'bye')
      const info = await client.closed()
      assert.deepEqual(client.closeFrame, { code: 1000, reason: 'bye' })
      assert.equal(info.wasClean, true)
      assert.equal(client.stream.rstCode, http2Constants.NGHTTP2_NO_ERROR)
      await side.until(() => side.closes.has(ws))
      assert.equal(side.closes.get(ws)!.code, 1000)
      assert.equal(side.closes.get(ws)!.wasClean, true)
      assert.equal(session.closed, false)
      assert.deepEqual(h.rally.stats().transports, { http1: 0, http2: 0, http2Sessions: 0 })
    })
  })

  test('terminate resets its stream with CANCEL; the other streams of the connection go on', async () => {
    const side = new ServerSide()
    await withH2Server(certificate, side.handlers, async (h) => {
      const session = await h.session()
      // a: a bare stream that does not end its side on END_STREAM, so what it sees is the reset.
      const a = session.request(connectHeaders(h.port), { endStream: false })
      const response = await responseOf(a)
      assert.ok('status' in response)
      a.resume()
      await side.until(() => side.open.length === 1)
      const b = (await StreamClient.open(session, h.port)).client
      await side.until(() => side.open.length === 2)
      side.open[0]!.terminate()
      await new Promise((resolve) => a.once('close', resolve))
      assert.equal(a.rstCode, http2Constants.NGHTTP2_CANCEL)
      await side.until(() => side.closes.has(side.open[0]!))
      assert.equal(side.closes.get(side.open[0]!)!.code, 1006)
      b.send('alive')
      assert.equal(await b.message(), 'alive')
      assert.equal(session.closed, false)
    })
  })

  test('a client resetting one stream: that socket closes 1006, the others and page requests are untouched', async () => {
    const side = new ServerSide()
    await withH2Server(certificate, side.handlers, async (h) => {
      const session = await h.session()
      const clients = []
      for (let i = 0; i < 3; i++) clients.push((await StreamClient.open(session, h.port)).client)
      await side.until(() => side.open.length === 3)
      clients[1]!.stream.close(http2Constants.NGHTTP2_CANCEL)
      await side.until(() => side.closes.size === 1)
      const [info] = [...side.closes.values()]
      assert.equal(info!.code, 1006)
      assert.equal(info!.wasClean, false)
      for (const i of [0, 2]) {
        clients[i]!.send(`after reset ${i}`)
        assert.equal(await clients[i]!.message(), `after reset ${i}`)
      }
      const page = session.request({ ':path': '/after' })
      page.end()
      const response = await responseOf(page)
      assert.ok('status' in response)
      assert.equal(response.status, 200)
      assert.deepEqual(h.rally.stats().transports, { http1: 0, http2: 2, http2Sessions: 1 })
    })
  })

  test('flow control is the backpressure: a peer that stops reading makes send return buffered, drain follows', async () => {
    const side = new ServerSide()
    await withH2Server(certificate, side.handlers, async (h) => {
      const session = await h.session()
      const { client } = await StreamClient.open(session, h.port)
      await side.until(() => side.open.length === 1)
      const ws = side.open[0]!
      // The client stops reading: no WINDOW_UPDATE, the stream's send window (65,535 bytes by
      // default, RFC 9113 6.9.2) runs out.
      client.driver.pause(PauseReason.User)
      const chunk = 'x'.repeat(32 * 1024)
      const statuses: string[] = []
      for (let i = 0; i < 16; i++) statuses.push(ws.send(chunk))
      assert.ok(statuses.includes('buffered'), `statuses: ${statuses}`)
      // A PING round trip: the server has written all it could by the time the PONG comes back.
      await new Promise<void>((resolve, reject) => {
        session.ping((error) => (error === null ? resolve() : reject(error)))
      })
      // At most the windows' worth (the stream's and what the client's buffers took) has left.
      assert.ok(ws.bufferedAmount > 16 * chunk.length - 256 * 1024, `bufferedAmount ${ws.bufferedAmount}`)
      assert.equal(side.drains, 0)
      client.driver.resume(PauseReason.User)
      await side.until(() => side.drains > 0)
      await client.until(() => client.messages.length === 16)
      assert.equal(ws.bufferedAmount, 0)
    })
  })

  test('permessage-deflate is negotiated on a stream as on HTTP/1.1; compressed frames flow', async () => {
    const text = 'compress me '.repeat(200)
    await withH2Server(
      certificate,
      {
        perMessageDeflate: true,
        message(ws, data) {
          if (String(data) === 'go') ws.send(text)
        },
      },
      async (h) => {
        const session = await h.session()
        const stream = session.request(
          connectHeaders(h.port, {
            'sec-websocket-extensions': 'permessage-deflate; client_max_window_bits',
          }),
          { endStream: false },
        )
        const response = await responseOf(stream)
        assert.ok('status' in response)
        assert.equal(response.status, 200)
        assert.match(String(response.headers['sec-websocket-extensions']), /^permessage-deflate/)
        const frame = readFrame(stream)
        stream.write(maskedFrame(0x1, Buffer.from('go')))
        const { firstByte, payload } = await frame
        // FIN, RSV1 (compressed, RFC 7692 6), text.
        assert.equal(firstByte, 0xc1)
        assert.ok(payload.length < text.length / 10)
        // RFC 7692 7.2.2: the receiver appends 00 00 ff ff; the result ends at a sync flush.
        const inflated = inflateRawSync(Buffer.concat([payload, Buffer.from([0, 0, 0xff, 0xff])]), {
          finishFlush: zlibConstants.Z_SYNC_FLUSH,
        })
        assert.equal(inflated.toString(), text)
      },
    )
  })
})

/** Reads one unmasked server frame with a payload under 126 bytes from a raw stream. */
function readFrame(stream: NodeJS.ReadableStream): Promise<{ firstByte: number; payload: Buffer }> {
  return new Promise((resolve) => {
    let bytes = Buffer.alloc(0)
    const onData = (chunk: Buffer) => {
      bytes = Buffer.concat([bytes, chunk])
      if (bytes.length < 2) return
      const length = bytes[1]! & 0x7f
      assert.ok(length < 126)
      if (bytes.length < 2 + length) return
      stream.removeListener('data', onData)
      resolve({ firstByte: bytes[0]!, payload: bytes.subarray(2, 2 + length) })
    }
    stream.on('data', onData)
  })
}
