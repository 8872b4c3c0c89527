/**
 * Hostile cases of the HTTP/1.1 hardening suite that apply to WebSocket streams: an `upgrade` that
 * never settles (503 at handshakeTimeout), a peer resetting its stream while `upgrade` decides
 * (its slots freed), a foreign Origin (403), maxConnections counted across HTTP/1.1 and HTTP/2, and
 * terminate on a socket whose reading is paused with input unread (its close still comes).
 */
import assert from 'node:assert/strict'
import { constants as http2Constants } from 'node:http2'
import { after, before, describe, test } from 'node:test'
import type { ServerWebSocket } from '../../src/index.js'
import { WebSocket } from '../../src/index.js'
import {
  type Certificate,
  connectHeaders,
  makeCertificate,
  responseOf,
  StreamClient,
  withH2Server,
} from './helpers.js'

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
