/**
 * wss:// with a self-signed certificate generated here: the server's `tls` option and an
 * https.Server with handleUpgrade; the client's CA, rejectUnauthorized and SNI; and hostile
 * input on a TLS port (plain text, garbage after the TLS handshake).
 */
import assert from 'node:assert/strict'
import { createServer as createHttpsServer } from 'node:https'
import { connect as netConnect } from 'node:net'
import { after, before, describe, test } from 'node:test'
import { createSecureContext, type TLSSocket, connect as tlsConnect } from 'node:tls'
import { createServer, type RallyServer, type ServerOptions, WebSocket } from '../../src/index.js'
import { type Certificate, makeCertificate } from '../support/tls.js'
import {
  closeEventOf,
  echoHandlers,
  HOST,
  installGuards,
  newLog,
  openEventOf,
  parseReply,
  type ServerLog,
  upgradeRequest,
  Witnesses,
  withTimeout,
} from './helpers.js'

installGuards()

let certificate: Certificate | undefined
let key: Buffer
let cert: Buffer

before(() => {
  certificate = makeCertificate()
  key = certificate.key
  cert = certificate.cert
})

after(() => {
  certificate?.dispose()
})

interface Harness {
  server: RallyServer
  port: number
  log: ServerLog
  servernames: (string | false | null | undefined)[]
}

async function withTlsServer(
  options: Partial<ServerOptions<undefined>>,
  body: (h: Harness) => Promise<void>,
): Promise<void> {
  const log = newLog()
  const h = { log, servernames: [] } as unknown as Harness
  h.server = createServer<undefined>({
    port: 0,
    host: HOST,
    tls: { key, cert },
    ...echoHandlers<undefined>(log),
    upgrade(req) {
      h.servernames.push((req.socket as TLSSocket).servername)
      return undefined
    },
    ...options,
  })
  try {
    await h.server.ready()
    h.port = h.server.port!
    await body(h)
  } finally {
    await withTimeout(h.server.close(), 10_000, 'server close')
  }
}

async function echoOnce(ws: WebSocket, text: string): Promise<string> {
  const reply = new Promise<string>((resolve) =>
    ws.addEventListener('message', (e) => resolve(String((e as MessageEvent).data)), { once: true }),
  )
  ws.send(text)
  return withTimeout(reply, 2000, 'echo')
}

describe('wss:// with createServer({ tls })', { timeout: 60_000 }, () => {
  test('a client trusting the CA connects; messages flow; SNI carries "localhost"', async () => {
    await withTlsServer({}, async (h) => {
      const ws = new WebSocket(`wss://localhost:${h.port}/`, [], { tls: { ca: cert } })
      try {
        await openEventOf(ws, 5000)
        assert.equal(await echoOnce(ws, 'über TLS'), 'über TLS')
        assert.deepEqual(h.servernames, ['localhost'])
        ws.close(1000)
        const close = await closeEventOf(ws, 3000)
        assert.deepEqual([close.code, close.wasClean], [1000, true])
      } finally {
        ws.terminate()
      }
    })
  })

  test('without the CA: error, then close 1006', async () => {
    await withTlsServer({}, async (h) => {
      const ws = new WebSocket(`wss://localhost:${h.port}/`)
      const errors: string[] = []
      ws.addEventListener('error', (e) => errors.push((e as unknown as { message: string }).message))
      try {
        const close = await closeEventOf(ws, 5000)
        assert.equal(close.code, 1006)
        assert.equal(close.wasClean, false)
        assert.equal(errors.length, 1)
        assert.match(errors[0]!, /self[- ]signed|certificate/i)
        assert.deepEqual(h.servernames, [], 'no upgrade reached the application')
      } finally {
        ws.terminate()
      }
    })
  })

  test('rejectUnauthorized: false connects without the CA', async () => {
    await withTlsServer({}, async (h) => {
      const ws = new WebSocket(`wss://localhost:${h.port}/`, [], { tls: { rejectUnauthorized: false } })
      try {
        await openEventOf(ws, 5000)
        assert.equal(await echoOnce(ws, 'insecure but working'), 'insecure but working')
      } finally {
        ws.terminate()
      }
    })
  })

  test('the wrong name (servername other.example) is refused: error, close 1006', async () => {
    await withTlsServer({}, async (h) => {
      const ws = new WebSocket(`wss://127.0.0.1:${h.port}/`, [], {
        tls: { ca: cert, servername: 'other.example' },
      })
      try {
        const close = await closeEventOf(ws, 5000)
        assert.equal(close.code, 1006)
      } finally {
        ws.terminate()
      }
    })
  })

  test('SNI: the server picks its certificate by servername (SNICallback)', async () => {
    const asked: string[] = []
    const context = createSecureContext({ key, cert })
    await withTlsServer(
      {
        tls: {
          key,
          cert,
          SNICallback: (servername, callback) => {
            asked.push(servername)
            callback(null, context)
          },
        },
      },
      async (h) => {
        const byName = new WebSocket(`wss://localhost:${h.port}/`, [], { tls: { ca: cert } })
        const byIpWithName = new WebSocket(`wss://127.0.0.1:${h.port}/`, [], {
          tls: { ca: cert, servername: 'localhost' },
        })
        const byIp = new WebSocket(`wss://127.0.0.1:${h.port}/`, [], { tls: { ca: cert } })
        try {
          await Promise.all([
            openEventOf(byName, 5000),
            openEventOf(byIpWithName, 5000),
            openEventOf(byIp, 5000),
          ])
          // An IP address is never sent as SNI (RFC 6066 3).
          assert.deepEqual(asked.sort(), ['localhost', 'localhost'])
          assert.equal(h.servernames.filter((n) => n === 'localhost').length, 2)
          assert.equal(h.servernames.filter((n) => !n).length, 1)
        } finally {
          byName.terminate()
          byIpWithName.terminate()
          byIp.terminate()
        }
      },
    )
  })

  test('hostile input on the TLS port; wss witnesses keep working', async () => {
    await withTlsServer({}, async (h) => {
      const witnesses = await Witnesses.start(`wss://localhost:${h.port}/`, 2, 10, { tls: { ca: cert } })
      try {
        // Plain HTTP on a TLS port: the TLS handshake fails, the server closes the socket.
        const plain = netConnect({ port: h.port, host: HOST })
        plain.on('error', () => {})
        plain.resume()
        plain.write(upgradeRequest())
        await withTimeout(new Promise((resolve) => plain.once('close', resolve)), 3000, 'plain text closed')

        // A TLS client that completes TLS, then sends garbage instead of HTTP: 400.
        const tls = tlsConnect({ port: h.port, host: HOST, ca: cert, servername: 'localhost' })
        tls.on('error', () => {})
        let raw = ''
        tls.on('data', (d: Buffer) => {
          raw += d.toString('latin1')
        })
        await withTimeout(new Promise((resolve) => tls.once('secureConnect', resolve)), 3000, 'TLS handshake')
        tls.write('GARBAGE\r\n\r\n')
        await withTimeout(new Promise((resolve) => tls.once('close', resolve)), 3000, 'TLS garbage closed')
        assert.equal(parseReply(raw, true, 0).statusLine, 'HTTP/1.1 400 Bad Request')

        await witnesses.checkpoint('after hostile TLS input')
        await witnesses.stop()
      } finally {
        await witnesses.close().catch(() => {})
      }
    })
  })
})

describe('wss:// through an https.Server and handleUpgrade', { timeout: 60_000 }, () => {
  test('upgrade on an https.Server; plain HTTPS requests still served', async () => {
    const log = newLog()
    const rally = createServer<undefined>({ ...echoHandlers<undefined>(log) })
    const https = createHttpsServer({ key, cert }, (_req, res) => {
      res.end('plain https')
    })
    https.on('upgrade', (req, socket, head) => rally.handleUpgrade(req, socket, head))
    await new Promise<void>((resolve) => https.listen(0, HOST, resolve))
    const port = (https.address() as { port: number }).port
    const ws = new WebSocket(`wss://localhost:${port}/`, [], { tls: { ca: cert } })
    try {
      await openEventOf(ws, 5000)
      assert.equal(await echoOnce(ws, 'via https.Server'), 'via https.Server')
      assert.equal(rally.clients.size, 1)
      const response = await fetchText(port)
      assert.equal(response, 'plain https')
    } finally {
      ws.terminate()
      await withTimeout(rally.close(), 5000, 'rally close')
      https.closeAllConnections()
      await new Promise((resolve) => https.close(resolve))
    }
  })
})

/** GET / over TLS with the test CA (fetch cannot take a custom CA). */
function fetchText(port: number): Promise<string> {
  return withTimeout(
    new Promise((resolve, reject) => {
      const socket = tlsConnect({ port, host: HOST, ca: cert, servername: 'localhost' }, () => {
        socket.write(`GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`)
      })
      let raw = ''
      socket.on('data', (d: Buffer) => {
        raw += d.toString('latin1')
      })
      socket.on('error', reject)
      socket.on('close', () => {
        const body = raw.slice(raw.indexOf('\r\n\r\n') + 4)
        // Chunked or not, the text is in there.
        resolve(body.includes('plain https') ? 'plain https' : body)
      })
    }),
    3000,
    'https GET',
  )
}
