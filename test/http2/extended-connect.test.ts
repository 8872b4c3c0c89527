/**
 * RFC 8441 on Rally's server: the extended CONNECT exchange on a node:http2 secure server, byte
 * level where it matters — the setting advertised, the 200 without Sec-WebSocket-Accept, frames
 * both ways on the stream, the refusals' statuses, several WebSockets and a page request on one
 * connection, the per-connection stream limit, and HTTP/1.1 upgrades on the same port.
 */
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { WebSocket } from '../../src/index.js'
import {
  bodyOf,
  type Certificate,
  connectHeaders,
  makeCertificate,
  maskedFrame,
  readBytes,
  responseOf,
  StreamClient,
  withH2Server,
} from './helpers.js'

let certificate: Certificate
before(() => {
  certificate = makeCertificate()
})
after(() => certificate?.dispose())

const echo = {
  message(ws: { send(data: string | Buffer): unknown }, data: string | Buffer) {
    ws.send(data)
  },
}

describe('extended CONNECT handshake', () => {
  test('the server advertises SETTINGS_ENABLE_CONNECT_PROTOCOL; 200 without an Accept; frames both ways', async () => {
    await withH2Server(certificate, { ...echo, protocols: ['chat'] }, async (h) => {
      const session = await h.session()
      assert.equal(session.remoteSettings.enableConnectProtocol, true)
      const stream = session.request(
        connectHeaders(h.port, {
          'sec-websocket-protocol': 'other, chat',
          // RFC 8441 5: not used over HTTP/2; ignored, never answered.
          'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
        }),
        { endStream: false },
      )
      const response = await responseOf(stream)
      assert.ok('status' in response)
      assert.equal(response.status, 200)
      assert.equal(response.headers['sec-websocket-protocol'], 'chat')
      assert.equal(response.headers['sec-websocket-accept'], undefined)
      assert.equal(response.headers.upgrade, undefined)
      // A masked text frame "hello" in, an unmasked one out: 0x81 0x05 "hello".
      const reply = readBytes(stream, 7)
      stream.write(maskedFrame(0x1, Buffer.from('hello')))
      assert.deepEqual(await reply, Buffer.from([0x81, 0x05, ...Buffer.from('hello')]))
      assert.deepEqual(h.rally.stats().transports, { http1: 0, http2: 1, http2Sessions: 1 })
    })
  })

  test('the upgrade hook sees the CONNECT request and may refuse it with its Response', async () => {
    const seen: { method?: string; url?: string; version?: string; origin?: string }[] = []
    await withH2Server(
      certificate,
      {
        ...echo,
        upgrade(request) {
          seen.push({
            method: request.method,
            url: request.url,
            version: request.httpVersion,
            origin: request.headersDistinct.origin?.[0],
          })
          if (request.url === '/forbidden') return new Response('no entry', { status: 403 })
          return undefined
        },
      },
      async (h) => {
        const session = await h.session()
        const { client } = await StreamClient.open(
          session,
          h.port,
          { origin: 'https://app.example' },
          '/room?x=1',
        )
        client.send('one')
        assert.equal(await client.message(), 'one')
        const refused = session.request(connectHeaders(h.port, {}, '/forbidden'), { endStream: false })
        const response = await responseOf(refused)
        assert.ok('status' in response)
        assert.equal(response.status, 403)
        assert.equal(await bodyOf(refused), 'no entry')
        assert.deepEqual(seen[0], {
          method: 'CONNECT',
          url: '/room?x=1',
          version: '2.0',
          origin: 'https://app.example',
        })
        assert.equal(h.rally.stats().handshakeRejections['403'], 1)
      },
    )
  })

  test('refusals: unknown :protocol 501, version mismatch 400 naming 13, wrong path 404, bad subprotocol list 400', async () => {
    await withH2Server(certificate, { ...echo, path: '/ws' }, async (h) => {
      const session = await h.session()
      const cases: { headers: Record<string, string>; path?: string; status: number; version?: string }[] = [
        { headers: { ':protocol': 'webtransport' }, status: 501 },
        { headers: { 'sec-websocket-version': '8' }, status: 400, version: '13' },
        { headers: { 'sec-websocket-version': '' }, status: 400, version: '13' },
        { headers: {}, path: '/elsewhere', status: 404 },
        { headers: { 'sec-websocket-protocol': 'a b' }, status: 400 },
      ]
      for (const { headers, path, status, version } of cases) {
        const stream = session.request(connectHeaders(h.port, headers, path ?? '/ws'), { endStream: false })
        const response = await responseOf(stream)
        assert.ok('status' in response, `${JSON.stringify(headers)}: reset instead of ${status}`)
        assert.equal(response.status, status, JSON.stringify(headers))
        if (version !== undefined) assert.equal(response.headers['sec-websocket-version'], version)
        assert.match(await bodyOf(stream), /\S/)
      }
      // The connection survived every refusal: a WebSocket still opens on it.
      const { client } = await StreamClient.open(session, h.port, {}, '/ws')
      client.send('still here')
      assert.equal(await client.message(), 'still here')
    })
  })

  test('a missing version header (sec-websocket-version absent) is refused 400', async () => {
    await withH2Server(certificate, echo, async (h) => {
      const session = await h.session()
      const headers = connectHeaders(h.port)
      delete headers['sec-websocket-version']
      const stream = session.request(headers, { endStream: false })
      const response = await responseOf(stream)
      assert.ok('status' in response)
      assert.equal(response.status, 400)
    })
  })

  test('several WebSocket streams and a page request share one connection; stats show one session', async () => {
    await withH2Server(certificate, echo, async (h) => {
      const session = await h.session()
      const clients = await Promise.all([1, 2, 3].map(() => StreamClient.open(session, h.port)))
      const page = session.request({ ':path': '/index.html' })
      page.end()
      assert.equal(await bodyOf(page), 'page /index.html')
      for (const [i, { client }] of clients.entries()) client.send(`m${i}`)
      for (const [i, { client }] of clients.entries()) assert.equal(await client.message(), `m${i}`)
      assert.deepEqual(h.rally.stats().transports, { http1: 0, http2: 3, http2Sessions: 1 })
      const second = await h.session()
      await StreamClient.open(second, h.port)
      assert.deepEqual(h.rally.stats().transports, { http1: 0, http2: 4, http2Sessions: 2 })
    })
  })

  test('maxWebSocketStreamsPerSession: the stream over the limit gets 503, the others go on', async () => {
    await withH2Server(
      certificate,
      echo,
      async (h) => {
        const session = await h.session()
        const a = await StreamClient.open(session, h.port)
        const b = await StreamClient.open(session, h.port)
        const third = session.request(connectHeaders(h.port), { endStream: false })
        const response = await responseOf(third)
        assert.ok('status' in response)
        assert.equal(response.status, 503)
        a.client.send('a')
        b.client.send('b')
        assert.equal(await a.client.message(), 'a')
        assert.equal(await b.client.message(), 'b')
        // Another connection has its own budget.
        const other = await h.session()
        await StreamClient.open(other, h.port)
        // A closed stream frees its place.
        a.client.driver.close(1000)
        await a.client.closed()
        await StreamClient.open(session, h.port)
      },
      { maxWebSocketStreamsPerSession: 2 },
    )
  })

  test('HTTP/1.1 upgrades keep working on the same server (allowHTTP1)', async () => {
    await withH2Server(certificate, echo, async (h) => {
      const ws = new WebSocket(`wss://localhost:${h.port}/`, [], { tls: { ca: certificate.cert } })
      const message = new Promise<string>((resolve) => {
        ws.onmessage = (event) => resolve(String(event.data))
      })
      await new Promise<void>((resolve, reject) => {
        ws.onopen = () => resolve()
        ws.onerror = () => reject(new Error('HTTP/1.1 upgrade failed'))
      })
      ws.send('over 1.1')
      assert.equal(await message, 'over 1.1')
      assert.deepEqual(h.rally.stats().transports, { http1: 1, http2: 0, http2Sessions: 0 })
      const closed = new Promise<void>((resolve) => {
        ws.onclose = () => resolve()
      })
      ws.close()
      await closed
    })
  })
})
