/**
 * Rally's Node WebSocket over HTTP/2 (`http2: true` or a session): several sockets sharing one
 * connection to Rally's server, subprotocol and permessage-deflate negotiated on the stream, a
 * refusal reported as a failed connection, and the fall back to HTTP/1.1 when the server does not
 * advertise SETTINGS_ENABLE_CONNECT_PROTOCOL.
 */
import assert from 'node:assert/strict'
import { createSecureServer, connect as http2Connect } from 'node:http2'
import { createServer as createHttpsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import { after, before, describe, test } from 'node:test'
import { createServer, WebSocket } from '../../src/index.js'
import { type Certificate, makeCertificate, withH2Server } from './helpers.js'

let certificate: Certificate
let tls: { ca: Buffer }
before(() => {
  certificate = makeCertificate()
  tls = { ca: certificate.cert }
})
after(() => certificate?.dispose())

const echo = {
  message(ws: { send(data: string | Buffer): unknown }, data: string | Buffer) {
    ws.send(data)
  },
}

function opened(ws: WebSocket): Promise<void> {
  return new Promise((resolve, reject) => {
    ws.onopen = () => resolve()
    ws.onerror = () => reject(new Error('the WebSocket failed to open'))
  })
}

function nextMessage(ws: WebSocket): Promise<string> {
  return new Promise((resolve) => {
    ws.onmessage = (event) => resolve(String(event.data))
  })
}

function closed(ws: WebSocket): Promise<{ code: number; wasClean: boolean }> {
  return new Promise((resolve) => {
    ws.onclose = (event) => resolve({ code: event.code, wasClean: event.wasClean })
  })
}

describe('WebSocket client over HTTP/2', () => {
  test('http2: true — three sockets share one connection; echo; clean closes', async () => {
    await withH2Server(certificate, echo, async (h) => {
      const sockets = [0, 1, 2].map(
        () => new WebSocket(`wss://localhost:${h.port}/`, [], { http2: true, tls }),
      )
      await Promise.all(sockets.map(opened))
      assert.deepEqual(h.rally.stats().transports, { http1: 0, http2: 3, http2Sessions: 1 })
      for (const [i, ws] of sockets.entries()) {
        const reply = nextMessage(ws)
        ws.send(`hello ${i}`)
        assert.equal(await reply, `hello ${i}`)
      }
      const closes = sockets.map(closed)
      for (const ws of sockets) ws.close(1000)
      for (const info of await Promise.all(closes)) assert.deepEqual(info, { code: 1000, wasClean: true })
    })
  })

  test('a session of the application is used as it is; subprotocol and permessage-deflate on the stream', async () => {
    await withH2Server(certificate, { ...echo, protocols: ['chat'], perMessageDeflate: true }, async (h) => {
      const session = http2Connect(`https://localhost:${h.port}`, tls)
      try {
        const ws = new WebSocket(`wss://localhost:${h.port}/`, ['chat'], { http2: session, tls })
        await opened(ws)
        assert.equal(ws.protocol, 'chat')
        assert.match(ws.extensions, /^permessage-deflate/)
        const text = 'compressible '.repeat(500)
        const reply = nextMessage(ws)
        ws.send(text)
        assert.equal(await reply, text)
        assert.deepEqual(h.rally.stats().transports, { http1: 0, http2: 1, http2Sessions: 1 })
        const done = closed(ws)
        ws.close()
        await done
        assert.equal(session.closed, false)
      } finally {
        session.close()
      }
    })
  })

  test('a refusal (the upgrade hook answers 403) fails the connection: error, then close 1006', async () => {
    await withH2Server(
      certificate,
      { ...echo, upgrade: () => new Response('no', { status: 403 }) },
      async (h) => {
        const ws = new WebSocket(`wss://localhost:${h.port}/`, [], { http2: true, tls })
        const errored = new Promise<void>((resolve) => {
          ws.onerror = () => resolve()
        })
        const info = await closed(ws)
        await errored
        assert.equal(info.code, 1006)
        assert.equal(h.rally.stats().handshakeRejections['403'], 1)
      },
    )
  })

  test('without SETTINGS_ENABLE_CONNECT_PROTOCOL the client falls back to HTTP/1.1', async () => {
    const h2 = createSecureServer({ key: certificate.key, cert: certificate.cert, allowHTTP1: true })
    const rally = createServer({ ...echo, heartbeat: false })
    h2.on('upgrade', (request, socket, head) => rally.handleUpgrade(request, socket, head))
    await new Promise<void>((resolve) => h2.listen(0, '127.0.0.1', resolve))
    try {
      const port = (h2.address() as AddressInfo).port
      const ws = new WebSocket(`wss://localhost:${port}/`, [], { http2: true, tls })
      await opened(ws)
      const reply = nextMessage(ws)
      ws.send('over 1.1')
      assert.equal(await reply, 'over 1.1')
      assert.deepEqual(rally.stats().transports, { http1: 1, http2: 0, http2Sessions: 0 })
      const done = closed(ws)
      ws.close()
      await done
    } finally {
      await rally.close()
      await new Promise<void>((resolve) => h2.close(() => resolve()))
    }
  })

  test('a server without HTTP/2 at all (https only, no h2 in ALPN): the client falls back to HTTP/1.1', async () => {
    const https = createHttpsServer({ key: certificate.key, cert: certificate.cert })
    const rally = createServer({ ...echo, heartbeat: false })
    https.on('upgrade', (request, socket, head) => rally.handleUpgrade(request, socket, head))
    await new Promise<void>((resolve) => https.listen(0, '127.0.0.1', resolve))
    try {
      const port = (https.address() as AddressInfo).port
      const ws = new WebSocket(`wss://localhost:${port}/`, [], { http2: true, tls })
      await opened(ws)
      const reply = nextMessage(ws)
      ws.send('no h2 here')
      assert.equal(await reply, 'no h2 here')
      assert.deepEqual(rally.stats().transports, { http1: 1, http2: 0, http2Sessions: 0 })
      const done = closed(ws)
      ws.close()
      await done
    } finally {
      await rally.close()
      https.closeAllConnections()
      await new Promise<void>((resolve) => https.close(() => resolve()))
    }
  })
})
