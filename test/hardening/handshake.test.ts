/**
 * Hostile opening handshakes: each gets the exact HTTP status (and headers the RFC asks for),
 * the server closes the connection, and two well-behaved clients on the same server keep
 * exchanging messages without losing one.
 */
import assert from 'node:assert/strict'
import { after, afterEach, before, describe, test } from 'node:test'
import { createServer, type RallyServer } from '../../src/index.js'
import {
  echoHandlers,
  type HttpReply,
  installGuards,
  newLog,
  RawPeer,
  rawHttp,
  type ServerLog,
  upgradeRequest,
  Witnesses,
  waitFor,
} from './helpers.js'

installGuards()

const HANDSHAKE_TIMEOUT = 500

let server: RallyServer
let log: ServerLog
let witnesses: Witnesses
let port: number

before(async () => {
  log = newLog()
  const handlers = echoHandlers(log)
  server = createServer({
    port: 0,
    host: '127.0.0.1',
    handshakeTimeout: HANDSHAKE_TIMEOUT,
    ...handlers,
    upgrade(req) {
      // An application whose auth backend never answers.
      if (req.url === '/hang') return new Promise<undefined>(() => {})
      return undefined
    },
  })
  await server.ready()
  port = server.port!
  witnesses = await Witnesses.start(`ws://127.0.0.1:${port}/`)
})

after(async () => {
  try {
    await witnesses?.stop()
  } finally {
    await server?.close()
  }
})

afterEach(async () => {
  // The hostile peer is gone; the witnesses are the only connections, and lost nothing.
  await witnesses.checkpoint()
  assert.equal(server.clients.size, 2, 'only the witnesses are connected')
})

/** Sends `request`, checks the exact status line and that the server closed the connection. */
async function expectStatus(request: string | Buffer, statusLine: string): Promise<HttpReply> {
  const status = statusLine.split(' ')[1]!
  const before = server.stats().handshakeRejections[status] ?? 0
  const reply = await rawHttp(port, request)
  assert.equal(reply.statusLine, statusLine, `reply was ${JSON.stringify(reply.raw.slice(0, 200))}`)
  assert.ok(reply.serverClosed)
  // The connection closes after a refusal; a 426 also lists "upgrade", since it carries an
  // Upgrade header, which is hop-by-hop (RFC 9110 7.8).
  const connection = reply.headers.get('connection')?.[0]?.toLowerCase()
  assert.equal(connection, status === '426' ? 'upgrade, close' : 'close')
  // The body length is declared, so a client knows where the response ends.
  assert.equal(Number(reply.headers.get('content-length')?.[0]), Buffer.byteLength(reply.body, 'latin1'))
  assert.equal(server.stats().handshakeRejections[status], before + 1, 'the rejection is counted')
  return reply
}

describe('malformed request lines', { timeout: 60_000 }, () => {
  test('garbage → 400', async () => {
    await expectStatus('GARBAGE\r\n\r\n', 'HTTP/1.1 400 Bad Request')
  })

  test('binary garbage → 400', async () => {
    await expectStatus(
      Buffer.from([0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03, 13, 10, 13, 10]),
      'HTTP/1.1 400 Bad Request',
    )
  })

  test('missing HTTP version → 400', async () => {
    await expectStatus(upgradeRequest({ httpVersion: '' }), 'HTTP/1.1 400 Bad Request')
  })

  test('method only → 400', async () => {
    await expectStatus('GET\r\nHost: 127.0.0.1\r\n\r\n', 'HTTP/1.1 400 Bad Request')
  })

  test('unknown HTTP version (HTTP/7.3) → 400', async () => {
    await expectStatus(upgradeRequest({ httpVersion: 'HTTP/7.3' }), 'HTTP/1.1 400 Bad Request')
  })

  test('HTTP/1.0 upgrade → 400', async () => {
    await expectStatus(upgradeRequest({ httpVersion: 'HTTP/1.0' }), 'HTTP/1.1 400 Bad Request')
  })

  test('POST upgrade → 405 with Allow: GET', async () => {
    const reply = await expectStatus(upgradeRequest({ method: 'POST' }), 'HTTP/1.1 405 Method Not Allowed')
    assert.deepEqual(reply.headers.get('allow'), ['GET'])
  })

  test('NUL byte in a header value → 400', async () => {
    await expectStatus(upgradeRequest({ extra: ['X-Evil: a\0b'] }), 'HTTP/1.1 400 Bad Request')
  })

  test('obsolete line folding → 400', async () => {
    await expectStatus(upgradeRequest({ extra: ['X-Folded: a', ' b'] }), 'HTTP/1.1 400 Bad Request')
  })
})

describe('missing, duplicate and oversized headers', { timeout: 60_000 }, () => {
  test('missing Host → 400', async () => {
    await expectStatus(upgradeRequest({ host: null }), 'HTTP/1.1 400 Bad Request')
  })

  test('duplicate Host → 400', async () => {
    await expectStatus(upgradeRequest({ extra: ['Host: other.example'] }), 'HTTP/1.1 400 Bad Request')
  })

  test('duplicate Sec-WebSocket-Key → 400', async () => {
    await expectStatus(
      upgradeRequest({ key: ['dGhlIHNhbXBsZSBub25jZQ==', 'AAAAAAAAAAAAAAAAAAAAAA=='] }),
      'HTTP/1.1 400 Bad Request',
    )
  })

  test('duplicate Sec-WebSocket-Key, same value twice → 400', async () => {
    await expectStatus(
      upgradeRequest({ key: ['dGhlIHNhbXBsZSBub25jZQ==', 'dGhlIHNhbXBsZSBub25jZQ=='] }),
      'HTTP/1.1 400 Bad Request',
    )
  })

  test('missing Sec-WebSocket-Key → 400', async () => {
    await expectStatus(upgradeRequest({ key: null }), 'HTTP/1.1 400 Bad Request')
  })

  test('Connection without "Upgrade" → 426 (not an upgrade request)', async () => {
    // A keep-alive request may stay open after the reply: read just the reply.
    const reply = await rawHttp(port, upgradeRequest({ connection: 'keep-alive' }), {
      until: (raw) => raw.includes('\r\n\r\n') && raw.endsWith('\n'),
    })
    assert.equal(reply.statusLine, 'HTTP/1.1 426 Upgrade Required')
    assert.deepEqual(reply.headers.get('upgrade'), ['websocket'])
  })

  test('Upgrade: h2c → 426 with Upgrade: websocket', async () => {
    const reply = await expectStatus(upgradeRequest({ upgrade: 'h2c' }), 'HTTP/1.1 426 Upgrade Required')
    assert.deepEqual(reply.headers.get('upgrade'), ['websocket'])
  })

  test('one header over 16 KiB → 431', async () => {
    await expectStatus(
      upgradeRequest({ extra: [`X-Big: ${'a'.repeat(17 * 1024)}`] }),
      'HTTP/1.1 431 Request Header Fields Too Large',
    )
  })

  test('many headers adding up to over 16 KiB → 431', async () => {
    const extra = Array.from({ length: 40 }, (_, i) => `X-Filler-${i}: ${'b'.repeat(500)}`)
    await expectStatus(upgradeRequest({ extra }), 'HTTP/1.1 431 Request Header Fields Too Large')
  })

  test('an oversized head sent in slow pieces → 431', async () => {
    const head = upgradeRequest({ extra: [`X-Big: ${'c'.repeat(20 * 1024)}`] })
    const reply = await rawHttp(port, head.slice(0, 100), {
      pieces: Array.from({ length: 20 }, (_, i) => head.slice(100 + i * 1024, 100 + (i + 1) * 1024)),
      pieceDelay: 5,
    })
    assert.equal(reply.statusLine, 'HTTP/1.1 431 Request Header Fields Too Large')
  })

  test('more than 100 header fields → 431', async () => {
    // 5 fields from upgradeRequest + 96 = 101.
    const extra = Array.from({ length: 96 }, (_, i) => `X-H${i}: v`)
    await expectStatus(upgradeRequest({ extra }), 'HTTP/1.1 431 Request Header Fields Too Large')
  })

  test('exactly 100 header fields is accepted (the limit is not off by one)', async () => {
    const extra = Array.from({ length: 95 }, (_, i) => `X-H${i}: v`)
    const peer = await RawPeer.connect(port, { request: upgradeRequest({ extra }) })
    try {
      peer.send(0x1, 'hello')
      await peer.until(() => peer.frames.length > 0, 2000, 'the echo')
      assert.equal(peer.frames[0]!.payload.toString(), 'hello')
    } finally {
      peer.destroy()
      await peer.waitForClose()
    }
    await waitClients(2)
  })

  test('10,000 tiny header fields → 431 (count limit, not memory)', async () => {
    const extra = Array.from({ length: 10_000 }, () => 'a:b')
    // 40 KiB of head: over the byte limit too; either way 431.
    await expectStatus(upgradeRequest({ extra }), 'HTTP/1.1 431 Request Header Fields Too Large')
  })
})

describe('bad Sec-WebSocket-Key', { timeout: 60_000 }, () => {
  const bad: [string, string][] = [
    ['too short', 'dGhlIHNhbXBsZQ=='],
    ['too long', 'dGhlIHNhbXBsZSBub25jZSBub25jZQ=='],
    ['not base64', '!!!!!!!!!!!!!!!!!!!!!!=='],
    ['24 chars without padding', 'dGhlIHNhbXBsZSBub25jZQAA'],
    ['base64url alphabet', 'dGhlIHNhbXBsZSBub25jZ-_=='],
    ['empty', ''],
    ['spaces inside', 'dGhlIHNhbXBs ZSBub25jZQ=='],
  ]
  for (const [name, key] of bad) {
    test(`${name} → 400`, async () => {
      await expectStatus(upgradeRequest({ key }), 'HTTP/1.1 400 Bad Request')
    })
  }
})

describe('wrong version', { timeout: 60_000 }, () => {
  test('Sec-WebSocket-Version: 8 → 426 with Sec-WebSocket-Version: 13', async () => {
    const reply = await expectStatus(upgradeRequest({ version: '8' }), 'HTTP/1.1 426 Upgrade Required')
    assert.deepEqual(reply.headers.get('sec-websocket-version'), ['13'])
  })

  test('missing Sec-WebSocket-Version → 426 with Sec-WebSocket-Version: 13', async () => {
    const reply = await expectStatus(upgradeRequest({ version: null }), 'HTTP/1.1 426 Upgrade Required')
    assert.deepEqual(reply.headers.get('sec-websocket-version'), ['13'])
  })

  test('two Sec-WebSocket-Version headers → 426', async () => {
    const reply = await expectStatus(
      upgradeRequest({ extra: ['Sec-WebSocket-Version: 8'] }),
      'HTTP/1.1 426 Upgrade Required',
    )
    assert.deepEqual(reply.headers.get('sec-websocket-version'), ['13'])
  })
})

describe('other refused offers', { timeout: 60_000 }, () => {
  test('malformed Sec-WebSocket-Protocol → 400', async () => {
    await expectStatus(
      upgradeRequest({ extra: ['Sec-WebSocket-Protocol: a b, "c"'] }),
      'HTTP/1.1 400 Bad Request',
    )
  })

  test('a plain GET (no upgrade) → 426 with Upgrade: websocket', async () => {
    const reply = await rawHttp(port, 'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n', {
      until: (raw) => raw.includes('\r\n\r\n') && raw.endsWith('\n'),
    })
    assert.equal(reply.statusLine, 'HTTP/1.1 426 Upgrade Required')
    assert.deepEqual(reply.headers.get('upgrade'), ['websocket'])
  })

  test('a plain GET with "Connection: close" → 426, then the server closes (RFC 9112 9.6)', async () => {
    // "A server that receives a "close" connection option MUST initiate closure of the
    // connection after it sends the final response".
    const reply = await rawHttp(port, 'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n', {
      timeout: 1500,
    })
    assert.equal(reply.statusLine, 'HTTP/1.1 426 Upgrade Required')
  })
})

describe('handshake timeouts', { timeout: 60_000 }, () => {
  test('slowloris (half a request, then silence) is closed by the server within 2 s', async () => {
    const reply = await rawHttp(port, 'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: webs', { timeout: 2000 })
    assert.ok(reply.serverClosed)
    assert.ok(
      reply.elapsed >= HANDSHAKE_TIMEOUT - 100,
      `closed after ${reply.elapsed} ms, before the timeout`,
    )
  })

  test('slowloris trickling one byte every 50 ms is closed within 2 s', async () => {
    const head = upgradeRequest({
      extra: Array.from({ length: 50 }, (_, i) => `X-Slow-${i}: ${'z'.repeat(20)}`),
    })
    const reply = await rawHttp(port, head.slice(0, 1), {
      pieces: [...head.slice(1)].map((c) => c),
      pieceDelay: 50,
      timeout: 2000,
    })
    assert.ok(reply.serverClosed)
  })

  test('slowloris is answered 408 Request Timeout, as documented (handshakeTimeout)', async () => {
    // types.ts: "a client that sends half a request and stalls (slowloris) [...] is dropped (408 / 503)".
    const reply = await rawHttp(port, 'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n', { timeout: 2000 })
    assert.equal(reply.statusLine, 'HTTP/1.1 408 Request Timeout')
  })

  test('an async upgrade handler that never settles → 503 after handshakeTimeout', async () => {
    const reply = await rawHttp(port, upgradeRequest({ path: '/hang' }), { timeout: 3000 })
    assert.equal(reply.statusLine, 'HTTP/1.1 503 Service Unavailable')
    assert.ok(
      reply.elapsed >= HANDSHAKE_TIMEOUT - 50 && reply.elapsed < HANDSHAKE_TIMEOUT + 1500,
      `answered after ${reply.elapsed} ms`,
    )
  })
})

function waitClients(count: number): Promise<void> {
  return waitFor(
    () => server.clients.size === count,
    2000,
    `${count} connections`,
    () => server.clients.size,
  )
}
