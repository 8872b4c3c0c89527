/**
 * Upgrade-time policy: allowed origins, connection caps, application refusals with any status,
 * headers and body — with no socket left half-open — and errors that go to the `error` handler,
 * never to an unhandled rejection. Witnesses on the same server lose nothing meanwhile.
 */
import assert from 'node:assert/strict'
import { Buffer } from 'node:buffer'
import { connect } from 'node:net'
import { describe, test } from 'node:test'
import {
  createServer,
  type RallyServer,
  type ServerOptions,
  type ServerWebSocket,
  WebSocket,
} from '../../src/index.js'
import {
  activeCounts,
  closeEventOf,
  echoHandlers,
  HOST,
  installGuards,
  newLog,
  Opcode,
  RawPeer,
  rawHttp,
  type ServerLog,
  sleep,
  upgradeRequest,
  Witnesses,
  waitFor,
  withTimeout,
} from './helpers.js'

installGuards()

interface Harness {
  server: RallyServer<unknown>
  port: number
  log: ServerLog
  witnesses: Witnesses
}

async function withServer(
  options: Partial<ServerOptions<unknown>>,
  body: (h: Harness) => Promise<void>,
): Promise<void> {
  const log = newLog()
  const h = { log } as Harness
  h.server = createServer<unknown>({ port: 0, host: HOST, ...echoHandlers<unknown>(log), ...options })
  try {
    await h.server.ready()
    h.port = h.server.port!
    h.witnesses = await Witnesses.start(`ws://${HOST}:${h.port}/`)
    await body(h)
    await h.witnesses.stop()
  } finally {
    await h.witnesses?.close().catch(() => {})
    await withTimeout(h.server.close(), 10_000, 'server close')
  }
}

async function expectRefused(
  port: number,
  request: string,
  statusLine: string,
  localAddress?: string,
): Promise<void> {
  const reply = await rawHttp(port, request, { localAddress })
  assert.equal(reply.statusLine, statusLine, reply.raw.slice(0, 200))
  assert.ok(reply.serverClosed)
}

async function expectAccepted(port: number, request: string, localAddress?: string): Promise<RawPeer> {
  const peer = await RawPeer.connect(port, { request, localAddress })
  peer.send(Opcode.Text, 'ping?')
  await peer.until(() => peer.frames.length > 0, 2000, 'echo')
  assert.equal(peer.frames[0]!.payload.toString(), 'ping?')
  return peer
}

/**
 * A refused handshake must not leave the server holding a half-open socket: the peer here
 * reads the refusal, then keeps its own half open (allowHalfOpen) and sends nothing more. The
 * server's side must be gone (destroyed) within `ms` all the same.
 */
async function expectNoHalfOpen(port: number, request: string, statusLine: string, ms = 2000): Promise<void> {
  const baseline = activeCounts().TCPSocketWrap
  const socket = connect({ port, host: HOST, allowHalfOpen: true })
  socket.on('error', () => {})
  try {
    let raw = ''
    socket.on('data', (chunk: Buffer) => {
      raw += chunk.toString('latin1')
    })
    const ended = new Promise<void>((resolve) => socket.once('end', () => resolve()))
    socket.write(request)
    await withTimeout(ended, 3000, 'the server ends the refused connection')
    assert.equal(raw.split('\r\n')[0], statusLine)
    // Ours is still open; the server's must not be.
    await waitFor(
      () => activeCounts().TCPSocketWrap === baseline + 1,
      ms,
      'the server destroys its side of a refused connection',
      () => ({ baseline, now: activeCounts().TCPSocketWrap }),
    )
  } finally {
    socket.destroy()
  }
}

describe('allowedOrigins', { timeout: 60_000 }, () => {
  const options = {
    allowedOrigins: ['https://app.example', 'https://*.example.org', /^https:\/\/trusted-\d+\.test$/],
  }

  const allowed = [
    'https://app.example',
    'HTTPS://APP.EXAMPLE',
    'https://www.example.org',
    'https://a.b.example.org',
    'https://trusted-42.test',
  ]
  const refused = [
    'https://evil.example',
    'http://app.example',
    'https://app.example:8443',
    'https://app.example.evil',
    'https://example.org',
    'https://.example.org',
    'https://evil.com#.example.org',
    'https://evil.com/.example.org',
    'https://user@evil.com.example.org',
    'https://www.example.org:444',
    'https://trusted-42.test.evil',
    'https://trusted-x.test',
    'null',
    '',
  ]

  test('allowed: exact, "*" pattern, RegExp, any case; no Origin at all', async () => {
    await withServer(options, async (h) => {
      const peers: RawPeer[] = []
      try {
        for (const origin of allowed) peers.push(await expectAccepted(h.port, upgradeRequest({ origin })))
        peers.push(await expectAccepted(h.port, upgradeRequest()))
      } finally {
        for (const peer of peers) peer.destroy()
      }
    })
  })

  test('everything else → 403', async () => {
    await withServer(options, async (h) => {
      for (const origin of refused)
        await expectRefused(h.port, upgradeRequest({ origin }), 'HTTP/1.1 403 Forbidden')
      assert.equal(h.server.stats().handshakeRejections['403'], refused.length)
    })
  })

  test('two Origin headers (one allowed) → 403', async () => {
    await withServer(options, async (h) => {
      await expectRefused(
        h.port,
        upgradeRequest({ origin: 'https://app.example', extra: ['Origin: https://evil.example'] }),
        'HTTP/1.1 403 Forbidden',
      )
    })
  })

  test('the Rally client with a refused Origin: error, then close 1006', async () => {
    await withServer(options, async (h) => {
      const ws = new WebSocket(`ws://${HOST}:${h.port}/`, [], { headers: { Origin: 'https://evil.example' } })
      let errored = false
      ws.addEventListener('error', () => {
        errored = true
      })
      const close = await closeEventOf(ws, 3000)
      assert.equal(close.code, 1006)
      assert.ok(errored)
    })
  })

  test('a RegExp with the g flag gives the same answer every time', async () => {
    // RegExp.prototype.test with /g is stateful (lastIndex): the same origin must not be
    // allowed once and refused the next time.
    await withServer({ allowedOrigins: [/^https:\/\/g\.test$/g] }, async (h) => {
      const peers: RawPeer[] = []
      try {
        for (let i = 0; i < 3; i++)
          peers.push(await expectAccepted(h.port, upgradeRequest({ origin: 'https://g.test' })))
      } finally {
        for (const peer of peers) peer.destroy()
      }
    })
  })
})

describe('connection caps', { timeout: 60_000 }, () => {
  test('maxConnections → 503 when full; a freed slot is reusable', async () => {
    await withServer({ maxConnections: 3 }, async (h) => {
      const third = await expectAccepted(h.port, upgradeRequest())
      try {
        await expectRefused(h.port, upgradeRequest(), 'HTTP/1.1 503 Service Unavailable')
        third.destroy()
        await waitFor(() => h.server.clients.size === 2, 2000, 'slot freed')
        const again = await expectAccepted(h.port, upgradeRequest())
        again.destroy()
      } finally {
        third.destroy()
      }
    })
  })

  test('maxConnections counts handshakes still waiting on an async upgrade', async () => {
    let release: (() => void) | undefined
    const gate = new Promise<void>((resolve) => {
      release = resolve
    })
    let slowStarted = (): void => {}
    const slowUpgrade = new Promise<void>((resolve) => {
      slowStarted = resolve
    })
    await withServer(
      {
        maxConnections: 3,
        upgrade: async (req) => {
          if (req.url === '/slow') {
            slowStarted()
            await gate
          }
          return undefined
        },
      },
      async (h) => {
        const pending = RawPeer.connect(h.port, { path: '/slow' })
        // The slow handshake holds its slot from here on.
        await withTimeout(slowUpgrade, 2000, 'the slow upgrade to start')
        await expectRefused(h.port, upgradeRequest(), 'HTTP/1.1 503 Service Unavailable')
        release!()
        const peer = await pending
        peer.destroy()
      },
    )
  })

  test('maxConnectionsPerIp → 429 per address; other addresses unaffected', async () => {
    // The witnesses (127.0.0.1) fill their address's quota of 2.
    await withServer({ maxConnectionsPerIp: 2 }, async (h) => {
      const peers: RawPeer[] = []
      try {
        await expectRefused(h.port, upgradeRequest(), 'HTTP/1.1 429 Too Many Requests', '127.0.0.1')
        peers.push(await expectAccepted(h.port, upgradeRequest(), '127.0.0.2'))
        peers.push(await expectAccepted(h.port, upgradeRequest(), '127.0.0.2'))
        await expectRefused(h.port, upgradeRequest(), 'HTTP/1.1 429 Too Many Requests', '127.0.0.2')
        peers[0]!.destroy()
        await waitFor(() => h.server.clients.size === 3, 2000, 'one 127.0.0.2 connection gone')
        peers.push(await expectAccepted(h.port, upgradeRequest(), '127.0.0.2'))
        assert.equal(h.server.stats().handshakeRejections['429'], 2)
      } finally {
        for (const peer of peers) peer.destroy()
      }
    })
  })

  test('maxConnectionsPerIp holds for concurrent handshakes behind an async upgrade', async () => {
    await withServer(
      {
        maxConnectionsPerIp: 2,
        upgrade: async () => {
          await sleep(100)
          return undefined
        },
      },
      async (h) => {
        const attempts = await Promise.allSettled(
          Array.from({ length: 5 }, () => RawPeer.connect(h.port, { localAddress: '127.0.0.3' })),
        )
        const accepted = attempts.filter((a) => a.status === 'fulfilled') as PromiseFulfilledResult<RawPeer>[]
        for (const a of accepted) a.value.destroy()
        assert.equal(accepted.length, 2, `${accepted.length} connections from one address with a cap of 2`)
      },
    )
  })
})

describe('application refusals', { timeout: 60_000 }, () => {
  test("upgrade → Response('slow down', 429, Retry-After: 1): exact reply, server closes", async () => {
    await withServer(
      {
        upgrade: (req) =>
          req.url === '/limited'
            ? new Response('slow down', { status: 429, headers: { 'Retry-After': '1' } })
            : undefined,
      },
      async (h) => {
        const reply = await rawHttp(h.port, upgradeRequest({ path: '/limited' }))
        assert.equal(reply.statusLine, 'HTTP/1.1 429 Too Many Requests')
        assert.deepEqual(reply.headers.get('retry-after'), ['1'])
        assert.equal(reply.body, 'slow down')
        assert.deepEqual(reply.headers.get('content-length'), ['9'])
        assert.ok(reply.serverClosed)
        assert.equal(h.server.stats().handshakeRejections['429'], 1)
        assert.equal(h.server.clients.size, 2)
      },
    )
  })

  test('a 429 refusal leaves no half-open socket on the server', async () => {
    await withServer(
      { upgrade: (req) => (req.url === '/limited' ? new Response('slow down', { status: 429 }) : undefined) },
      async (h) => {
        await expectNoHalfOpen(h.port, upgradeRequest({ path: '/limited' }), 'HTTP/1.1 429 Too Many Requests')
      },
    )
  })

  test('a 400 (bad key) refusal leaves no half-open socket on the server', async () => {
    await withServer({}, async (h) => {
      await expectNoHalfOpen(h.port, upgradeRequest({ key: 'short' }), 'HTTP/1.1 400 Bad Request')
    })
  })

  test('a malformed-request (parser) refusal leaves no half-open socket on the server', async () => {
    await withServer({}, async (h) => {
      await expectNoHalfOpen(h.port, 'GARBAGE\r\n\r\n', 'HTTP/1.1 400 Bad Request')
    })
  })

  test("401 with WWW-Authenticate and a JSON body keeps the application's headers", async () => {
    await withServer(
      {
        upgrade: (req) =>
          req.url === '/'
            ? undefined
            : new Response(JSON.stringify({ error: 'token expired' }), {
                status: 401,
                headers: { 'WWW-Authenticate': 'Bearer realm="rally"', 'Content-Type': 'application/json' },
              }),
      },
      async (h) => {
        const reply = await rawHttp(h.port, upgradeRequest({ path: '/private' }))
        assert.equal(reply.statusLine, 'HTTP/1.1 401 Unauthorized')
        assert.deepEqual(reply.headers.get('www-authenticate'), ['Bearer realm="rally"'])
        assert.equal(reply.body, '{"error":"token expired"}')
        assert.deepEqual(reply.headers.get('content-type'), ['application/json'])
      },
    )
  })

  test('an async refusal after a delay → the same exact reply', async () => {
    await withServer(
      {
        upgrade: async (req) => {
          await sleep(50)
          return req.url === '/' ? undefined : new Response('go away', { status: 403 })
        },
      },
      async (h) => {
        const reply = await rawHttp(h.port, upgradeRequest({ path: '/private' }))
        assert.equal(reply.statusLine, 'HTTP/1.1 403 Forbidden')
        assert.equal(reply.body, 'go away')
      },
    )
  })

  test('a huge refusal body is cut to a short one', async () => {
    await withServer(
      {
        upgrade: (req) =>
          req.url === '/' ? undefined : new Response('x'.repeat(1_000_000), { status: 403 }),
      },
      async (h) => {
        const reply = await rawHttp(h.port, upgradeRequest({ path: '/big' }))
        assert.equal(reply.statusLine, 'HTTP/1.1 403 Forbidden')
        assert.ok(reply.body.length <= 4096, `body of ${reply.body.length} bytes`)
        assert.equal(Number(reply.headers.get('content-length')?.[0]), reply.body.length)
      },
    )
  })

  test('a Response header with CR LF cannot inject headers', async () => {
    // The Headers class refuses CR/LF itself; a Response-like object is the remaining route.
    assert.throws(() => new Headers({ 'X-A': 'a\r\nSet-Cookie: evil=1' }))
  })
})

describe('errors never become unhandled rejections', { timeout: 60_000 }, () => {
  test('upgrade rejects → 500 without details; the error handler gets the cause', async () => {
    await withServer(
      {
        upgrade: async (req) => {
          if (req.url === '/broken') throw new Error('database password is hunter2')
          return undefined
        },
      },
      async (h) => {
        const reply = await rawHttp(h.port, upgradeRequest({ path: '/broken' }))
        assert.equal(reply.statusLine, 'HTTP/1.1 500 Internal Server Error')
        assert.ok(!reply.raw.includes('hunter2'), 'no internals in the response')
        assert.ok(h.log.errors.some((e) => e instanceof Error && e.message.includes('hunter2')))
      },
    )
  })

  test('upgrade throws synchronously → 500', async () => {
    await withServer(
      {
        upgrade: (req) => {
          if (req.url === '/broken') throw new TypeError('oops')
          return undefined
        },
      },
      async (h) => {
        await expectRefused(h.port, upgradeRequest({ path: '/broken' }), 'HTTP/1.1 500 Internal Server Error')
        assert.ok(h.log.errors.some((e) => e instanceof TypeError))
      },
    )
  })

  test('a refusal Response whose body stream fails → 500', async () => {
    await withServer(
      {
        upgrade: (req) =>
          req.url === '/'
            ? undefined
            : new Response(
                new ReadableStream({
                  start(controller) {
                    controller.error(new Error('stream broke'))
                  },
                }),
                { status: 401 },
              ),
      },
      async (h) => {
        await expectRefused(h.port, upgradeRequest({ path: '/x' }), 'HTTP/1.1 500 Internal Server Error')
        assert.ok(h.log.errors.some((e) => e instanceof Error && e.message === 'stream broke'))
      },
    )
  })

  test('upgrade picks a subprotocol the client did not offer → 500', async () => {
    await withServer(
      {
        upgrade: (req, context) => {
          if (req.url === '/proto') context.protocol = 'not-offered'
          return undefined
        },
      },
      async (h) => {
        await expectRefused(
          h.port,
          upgradeRequest({ path: '/proto', extra: ['Sec-WebSocket-Protocol: chat'] }),
          'HTTP/1.1 500 Internal Server Error',
        )
        assert.ok(h.log.errors.some((e) => e instanceof TypeError))
      },
    )
  })

  test('async message / open / close handlers that reject: 1011 for the socket, errors reported', async () => {
    const log = newLog()
    const echo = echoHandlers<unknown>(log)
    await withServer(
      {
        async open(ws: ServerWebSocket<unknown>) {
          echo.open!(ws)
          if (ws.url === '/bad-open') throw new Error('open failed')
        },
        async message(ws: ServerWebSocket<unknown>, data: string | Buffer) {
          if (ws.url === '/bad-message') throw new Error('message failed')
          ws.send(data)
        },
        async close(ws: ServerWebSocket<unknown>, code: number, reason: string) {
          log.closes.push({ code, reason, url: ws.url })
          if (ws.url === '/bad-close') throw new Error('close failed')
        },
        error(error: unknown) {
          log.errors.push(error)
        },
      },
      async (h) => {
        const badOpen = await RawPeer.connect(h.port, { path: '/bad-open' })
        const openClose = await badOpen.expectCloseFrame()
        assert.deepEqual([openClose.code, openClose.reason], [1011, ''])
        badOpen.destroy()

        const badMessage = await RawPeer.connect(h.port, { path: '/bad-message' })
        badMessage.send(Opcode.Text, 'boom')
        const messageClose = await badMessage.expectCloseFrame()
        assert.deepEqual([messageClose.code, messageClose.reason], [1011, ''])
        badMessage.destroy()

        const badClose = await RawPeer.connect(h.port, { path: '/bad-close' })
        badClose.destroy()
        await waitFor(
          () => log.errors.length >= 3,
          2000,
          'three errors reported',
          () => log.errors.map(String),
        )
        assert.deepEqual(log.errors.map((e) => (e as Error).message).sort(), [
          'close failed',
          'message failed',
          'open failed',
        ])
      },
    )
  })

  test('an error handler that throws or rejects: printed, not unhandled', async () => {
    const printed: unknown[] = []
    const original = console.error
    console.error = (...args: unknown[]) => {
      printed.push(args[0])
    }
    try {
      let calls = 0
      await withServer(
        {
          async message(ws: ServerWebSocket<unknown>, data: string | Buffer) {
            if (ws.url === '/fail') throw new Error('handler failed')
            ws.send(data)
          },
          error() {
            calls++
            if (calls === 1) throw new Error('error handler threw')
            return Promise.reject(new Error('error handler rejected'))
          },
        },
        async (h) => {
          for (let i = 0; i < 2; i++) {
            const peer = await RawPeer.connect(h.port, { path: '/fail' })
            peer.send(Opcode.Text, 'x')
            await peer.expectCloseFrame()
            peer.destroy()
          }
          await waitFor(() => printed.length >= 2, 2000, 'both failures printed')
        },
      )
    } finally {
      console.error = original
    }
    assert.ok(printed.some((e) => e instanceof Error && e.message === 'error handler threw'))
    assert.ok(printed.some((e) => e instanceof Error && e.message === 'error handler rejected'))
  })

  test('without an error handler, protocol errors are silent and handler errors are printed', async () => {
    const printed: unknown[] = []
    const original = console.error
    console.error = (...args: unknown[]) => {
      printed.push(args[0])
    }
    try {
      const server = createServer({
        port: 0,
        host: HOST,
        message(ws, data) {
          if (data === 'throw') throw new Error('thrown in message')
          ws.send(data)
        },
      })
      try {
        await server.ready()
        const hostile = await RawPeer.connect(server.port!)
        hostile.write(Buffer.from([0x81, 0x01, 0x61]))
        assert.equal((await hostile.expectCloseFrame()).code, 1002)
        hostile.destroy()
        const thrower = await RawPeer.connect(server.port!)
        thrower.send(Opcode.Text, 'throw')
        assert.equal((await thrower.expectCloseFrame()).code, 1011)
        thrower.destroy()
      } finally {
        await server.close()
      }
    } finally {
      console.error = original
    }
    assert.equal(printed.length, 1, `printed: ${printed.map(String).join(' | ')}`)
    assert.equal((printed[0] as Error).message, 'thrown in message')
  })

  test('a client connecting to a closed port: error event and close 1006, nothing unhandled', async () => {
    const probe = createServer({ port: 0, host: HOST })
    await probe.ready()
    const port = probe.port!
    await probe.close()
    const ws = new WebSocket(`ws://${HOST}:${port}/`)
    let errored = false
    ws.onerror = () => {
      errored = true
    }
    const close = await closeEventOf(ws, 3000)
    assert.equal(close.code, 1006)
    assert.ok(errored)
  })

  test('listening on a port in use rejects ready(), and close() still resolves', async () => {
    const first = createServer({ port: 0, host: HOST })
    await first.ready()
    const second = createServer({ port: first.port!, host: HOST })
    try {
      await assert.rejects(second.ready(), /EADDRINUSE/)
    } finally {
      await withTimeout(second.close(), 2000, 'second close')
      await first.close()
    }
  })
})
