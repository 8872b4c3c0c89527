/**
 * Hostile cases of the HTTP/1.1 hardening suite that apply to WebSocket streams: an `upgrade` that
 * never settles (503 at handshakeTimeout), a peer resetting its stream while `upgrade` decides
 * (its slots freed), oversized header fields (431, as on HTTP/1.1), a bad `:scheme` (400), more
 * streams than SETTINGS_MAX_CONCURRENT_STREAMS (nghttp2 ends the connection), frame-level
 * violations (1002, 1009, 1007 on that stream only), a foreign Origin
 * (403), maxConnections counted across HTTP/1.1 and HTTP/2, and terminate on a socket whose reading
 * is paused with input unread (its close still comes). Malformed requests: malformed.test.ts.
 */
import assert from 'node:assert/strict'
import { type ClientHttp2Stream, constants as http2Constants } from 'node:http2'
import { after, before, describe, test } from 'node:test'
import type { ServerWebSocket } from '../../src/index.js'
import { WebSocket } from '../../src/index.js'
import { parseFrame } from '../support/frames.js'
import { withTimeout } from '../support/timing.js'
import {
  bodyOf,
  type Certificate,
  connectHeaders,
  makeCertificate,
  maskedFrame,
  responseOf,
  StreamClient,
  withH2Server,
} from './helpers.js'
import { RawH2Client } from './raw-frames.js'

const SETTINGS_MAX_CONCURRENT_STREAMS = 0x3

let certificate: Certificate
before(() => {
  certificate = makeCertificate()
})
after(() => certificate?.dispose())

describe('hostile peers on HTTP/2 streams', () => {
  test('an upgrade hook that never settles: 503 at handshakeTimeout, the connection goes on', async () => {
    await withH2Server(
      certificate,
      {
        handshakeTimeout: 200,
        upgrade: (request) => (request.url === '/hang' ? new Promise<undefined>(() => {}) : undefined),
        message: (ws, data) => void ws.send(data),
      },
      async (h) => {
        const session = await h.session()
        const hanging = session.request(connectHeaders(h.port, {}, '/hang'), { endStream: false })
        const response = await responseOf(hanging)
        assert.ok('status' in response)
        assert.equal(response.status, 503)
        const { client } = await StreamClient.open(session, h.port)
        client.send('after')
        assert.equal(await client.message(), 'after')
      },
    )
  })

  test('a stream reset while upgrade decides frees its maxConnections slot and its place on the connection', async () => {
    let release: (() => void) | undefined
    let entered: (() => void) | undefined
    const upgradeEntered = new Promise<void>((resolve) => {
      entered = resolve
    })
    let calls = 0
    await withH2Server(
      certificate,
      {
        maxConnections: 1,
        upgrade: () => {
          calls++
          if (calls > 1) return undefined
          return new Promise<undefined>((resolve) => {
            release = () => resolve(undefined)
            entered!()
          })
        },
        message: (ws, data) => void ws.send(data),
      },
      async (h) => {
        const session = await h.session()
        const pending = session.request(connectHeaders(h.port), { endStream: false })
        pending.on('error', () => {})
        await upgradeEntered
        const gone = new Promise((resolve) => pending.once('close', resolve))
        pending.close(http2Constants.NGHTTP2_CANCEL)
        await gone
        // The pending handshake no longer holds the only slot.
        const { client } = await StreamClient.open(session, h.port)
        client.send('slot free')
        assert.equal(await client.message(), 'slot free')
        release!()
      },
      { maxWebSocketStreamsPerSession: 1 },
    )
  })

  test('allowedOrigins: a foreign Origin on a stream gets 403', async () => {
    await withH2Server(certificate, { allowedOrigins: ['https://app.example'] }, async (h) => {
      const session = await h.session()
      const foreign = session.request(connectHeaders(h.port, { origin: 'https://evil.example' }), {
        endStream: false,
      })
      const response = await responseOf(foreign)
      assert.ok('status' in response)
      assert.equal(response.status, 403)
      await StreamClient.open(session, h.port, { origin: 'https://app.example' })
    })
  })

  test('oversized header fields: 431 past maxHeaderBytes or maxHeaderCount, as on HTTP/1.1', async () => {
    await withH2Server(certificate, { message: (ws, data) => void ws.send(data) }, async (h) => {
      const session = await h.session()
      const status = async (extra: Record<string, string>) => {
        const stream = session.request(connectHeaders(h.port, extra), { endStream: false })
        const response = await responseOf(stream)
        if (!('status' in response)) return response
        stream.close()
        return response.status
      }
      // The default maxHeaderBytes is 16 KiB, counted as HTTP/2 counts a header list (RFC 9113
      // 6.5.2): 15 KiB of cookie passes, 17 KiB does not.
      assert.equal(await status({ cookie: `a=${'x'.repeat(15 * 1024)}` }), 200)
      assert.equal(await status({ cookie: `a=${'x'.repeat(17 * 1024)}` }), 431)
      // maxHeaderCount (100) counts the pseudo-header fields too.
      const many = Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`x-field-${i}`, 'v']))
      assert.equal(await status(many), 431)
      const { client } = await StreamClient.open(session, h.port)
      client.send('after')
      assert.equal(await client.message(), 'after')
      assert.deepEqual(h.rally.stats().handshakeRejections, { '431': 2 })
    })
  })

  test('a :scheme other than https or http (RFC 8441 5) is refused 400', async () => {
    await withH2Server(certificate, {}, async (h) => {
      const session = await h.session()
      const stream = session.request(connectHeaders(h.port, { ':scheme': 'ftp' }), { endStream: false })
      const response = await responseOf(stream)
      assert.ok('status' in response, JSON.stringify(response))
      assert.equal(response.status, 400)
      assert.match(await bodyOf(stream), /:scheme/)
    })
  })

  test('SETTINGS_MAX_CONCURRENT_STREAMS: a client that opens more is cut off, its sockets close 1006', async () => {
    const closes: number[] = []
    let allClosed: (() => void) | undefined
    await withH2Server(
      certificate,
      {
        close: (_ws, code) => {
          closes.push(code)
          if (closes.length === 3) allClosed?.()
        },
      },
      async (h) => {
        // Sessions opened from now on advertise 3.
        h.h2.updateSettings({ maxConcurrentStreams: 3 })
        const client = await RawH2Client.connect(h.port, certificate.cert)
        try {
          assert.equal(client.serverSettings.get(SETTINGS_MAX_CONCURRENT_STREAMS), 3)
          const fields = Object.entries(connectHeaders(h.port)).map(([name, value]): [string, string] => [
            name,
            String(value),
          ])
          const done = new Promise<void>((resolve) => {
            allClosed = resolve
          })
          const ids = [0, 1, 2].map(() => client.request(fields, false))
          await client.until(
            () => ids.every((id) => client.stream(id).headerBlockFirstByte === 0x88),
            'three 200s',
          )
          // RFC 9113 5.1.2 allows a stream error; nghttp2 treats a fourth stream after the
          // client acknowledged the setting as a connection error, and Node ends the connection.
          client.request(fields, false)
          await withTimeout(
            new Promise<void>((resolve) => client.socket.once('close', () => resolve())),
            20_000,
            'the connection to close',
          )
          await withTimeout(done, 20_000, 'the three sockets to close')
          assert.deepEqual(closes, [1006, 1006, 1006])
        } finally {
          client.close()
        }
      },
    )
  })

  test('frame-level violations close only their own stream, with the codes of HTTP/1.1 (1002, 1009, 1007)', async () => {
    await withH2Server(
      certificate,
      { maxPayload: 1024, message: (ws, data) => void ws.send(data) },
      async (h) => {
        const session = await h.session()
        const { client: bystander } = await StreamClient.open(session, h.port)
        const tooLong = Buffer.alloc(14)
        tooLong[0] = 0x82
        tooLong[1] = 0x80 | 127
        tooLong.writeBigUInt64BE(2000n, 2) // 64-bit length past maxPayload; mask key zero, no payload
        const cases: [string, Buffer, number][] = [
          ['an unmasked frame (RFC 6455 5.1)', Buffer.from([0x81, 0x02, 0x68, 0x69]), 1002],
          ['a length past maxPayload, before any payload', tooLong, 1009],
          ['invalid UTF-8 in a text message', maskedFrame(0x1, Buffer.from([0xff, 0xfe])), 1007],
        ]
        for (const [what, bytes, code] of cases) {
          const stream = session.request(connectHeaders(h.port), { endStream: false })
          const response = await responseOf(stream)
          assert.ok('status' in response && response.status === 200, what)
          stream.write(bytes)
          assert.equal(await closeCodeOf(stream), code, what)
        }
        bystander.send('untouched')
        assert.equal(await bystander.message(), 'untouched')
        assert.equal(session.closed, false)
      },
    )
  })

  test('maxConnections counts WebSockets of both transports', async () => {
    await withH2Server(certificate, { maxConnections: 1 }, async (h) => {
      const ws = new WebSocket(`wss://localhost:${h.port}/`, [], { tls: { ca: certificate.cert } })
      await new Promise<void>((resolve) => {
        ws.onopen = () => resolve()
      })
      const session = await h.session()
      const over = session.request(connectHeaders(h.port), { endStream: false })
      const response = await responseOf(over)
      assert.ok('status' in response)
      assert.equal(response.status, 503)
      const closed = new Promise<void>((resolve) => {
        ws.onclose = () => resolve()
      })
      ws.close()
      await closed
    })
  })

  test('terminate on a socket whose reading is paused, with input unread: its close handler still runs', async () => {
    const opened: ServerWebSocket<unknown>[] = []
    let closedCode: number | undefined
    let onClosed: (() => void) | undefined
    await withH2Server(
      certificate,
      {
        open: (ws) => {
          ws.pauseReading()
          opened.push(ws)
        },
        close: (_ws, code) => {
          closedCode = code
          onClosed?.()
        },
      },
      async (h) => {
        const session = await h.session()
        const { client } = await StreamClient.open(session, h.port)
        for (let i = 0; i < 50; i++) client.send('x'.repeat(1000))
        // A PING round trip: the client's frames have reached the server, unread.
        await new Promise<void>((resolve, reject) => {
          session.ping((error) => (error === null ? resolve() : reject(error)))
        })
        const done = new Promise<void>((resolve) => {
          onClosed = resolve
        })
        opened[0]!.terminate()
        await done
        assert.equal(closedCode, 1006)
        await client.closed()
      },
    )
  })
})

/** The code of the first close frame the server sends on a raw stream. */
function closeCodeOf(stream: ClientHttp2Stream): Promise<number> {
  return withTimeout(
    new Promise<number>((resolve, reject) => {
      let bytes = Buffer.alloc(0)
      stream.on('data', (chunk: Buffer) => {
        bytes = Buffer.concat([bytes, chunk])
        for (let parsed = parseFrame(bytes); parsed !== undefined; parsed = parseFrame(bytes)) {
          bytes = bytes.subarray(parsed.size)
          if (parsed.frame.opcode === 0x8) return resolve(parsed.frame.payload.readUInt16BE(0))
        }
      })
      stream.once('close', () => reject(new Error('the stream closed without a close frame')))
    }),
    20_000,
    'a close frame',
  )
}
