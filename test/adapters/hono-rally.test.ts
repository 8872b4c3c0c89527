/**
 * Hono through rallyjs/hono (`createNodeWebSocket({ app })` → `{ upgradeWebSocket, injectWebSocket }`)
 * on @hono/node-server's `serve`. The primer's example as written (examples/primer-realtime.ts):
 * a real 101, the echo, 426 for a plain GET. Middleware before the upgrade (auth refusing with
 * its status and body, a cookie on the 101, CORS and logging), subprotocol negotiation, and
 * WSContext: one object per connection, live readyState, protocol, url, and `raw` being Rally's
 * ServerWebSocket with topics.
 */
import assert from 'node:assert/strict'
import { Buffer } from 'node:buffer'
import type { Server } from 'node:http'
import { type AddressInfo, connect as connectNet, type Socket } from 'node:net'
import { after, before, describe, it, mock } from 'node:test'
import { serve } from '@hono/node-server'
import { Hono } from 'hono'
import { cors } from 'hono/cors'
import { logger } from 'hono/logger'
import type { WSContext } from 'hono/ws'
import { createPrimerApp } from '../../examples/primer-realtime.js'
import { createNodeWebSocket } from '../../src/adapters/hono/index.js'
import { WebSocket as WsWebSocket } from '../../src/adapters/ws/index.js'
import { type CloseEvent, ServerWebSocket, WebSocket } from '../../src/index.js'
import { httpGet, nextDomEvent, nextEvent, until, upgradeRequest, within } from './helpers.js'

const clients: WebSocket[] = []
const wsClients: WsWebSocket[] = []

function connect(url: string, protocols?: string[]): WebSocket {
  const ws = new WebSocket(url, protocols)
  clients.push(ws)
  return ws
}

/** A raw TCP client that keeps its side open after the server's FIN (half-open allowed). */
function connectTcp(port: number): Socket {
  const socket = connectNet({ host: '127.0.0.1', port, allowHalfOpen: true })
  socket.on('error', () => {})
  return socket
}

/** Messages of a client, as strings, collected from the start. */
function collect(ws: WebSocket): string[] {
  const messages: string[] = []
  ws.addEventListener('message', (event) => messages.push(String((event as MessageEvent).data)))
  return messages
}

async function serveApp(
  app: Hono,
  inject: (server: Server) => void,
): Promise<{ server: Server; port: number }> {
  const server = await within(
    new Promise<Server>((resolve) => {
      const s = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, () =>
        resolve(s as Server),
      ) as Server
    }),
    3000,
    'serve() to listen',
  )
  inject(server)
  return { server, port: (server.address() as AddressInfo).port }
}

async function shut(server: Server | undefined): Promise<void> {
  if (server === undefined) return
  server.closeAllConnections()
  await within(new Promise<void>((resolve) => server.close(() => resolve())), 5000, 'server close')
}

after(() => {
  for (const ws of clients) ws.terminate()
  for (const ws of wsClients) ws.terminate()
})

describe("the primer's example (examples/primer-realtime.ts)", () => {
  let server: Server
  let port: number
  let rally: ReturnType<typeof createPrimerApp>['rally']

  before(async () => {
    // The example logs each open and close; keep the test output quiet.
    mock.method(console, 'log', () => {})
    const primer = createPrimerApp()
    rally = primer.rally
    ;({ server, port } = await serveApp(primer.app, (s) => primer.injectWebSocket(s)))
  })

  after(async () => {
    await within(rally.close(), 5000, 'rally close')
    await shut(server)
    mock.restoreAll()
  })

  it('upgrades for real (101, protocol) and echoes', async () => {
    const ws = connect(`ws://127.0.0.1:${port}/realtime`, ['chat'])
    const messages = collect(ws)
    await nextDomEvent(ws, 'open')
    assert.equal(ws.readyState, WebSocket.OPEN)
    assert.equal(ws.protocol, 'chat', 'the first offered subprotocol is accepted')
    await until(() => messages.length === 1, 3000, 'the greeting')
    ws.send('hello')
    ws.send('world')
    await until(() => messages.length === 3, 3000, 'two echoes')
    assert.deepEqual(messages, ['connected', 'echo: hello', 'echo: world'])
    const closed = nextDomEvent<CloseEvent>(ws, 'close')
    ws.close(1000)
    assert.equal((await closed).code, 1000)
  })

  it('answers a plain GET with 426, a short body and Upgrade: websocket', async () => {
    const response = await httpGet(port, '/realtime')
    assert.equal(response.status, 426)
    assert.equal(response.headers.upgrade, 'websocket')
    assert.ok(response.body.length > 0 && response.body.length < 200, `short body: ${response.body}`)
    assert.match(response.body, /WebSocket/)
  })

  it('keeps "close" in the 426 when the request asked for it (keep-alive clients must not reuse it)', async () => {
    // RFC 9112 9.6: a server that receives "close" sends "close" in its final response. The
    // 426 carries "Connection: Upgrade" (RFC 9110 7.8); without "close" next to it, a keep-alive
    // client (Node 20's default agent) reuses a socket the server is closing, and its next
    // request fails ("Data after `Connection: close`" → 400).
    const response = await httpGet(port, '/realtime', { Connection: 'close' })
    assert.equal(response.status, 426)
    const options = String(response.headers.connection ?? '')
      .toLowerCase()
      .split(/\s*,\s*/)
    assert.ok(options.includes('upgrade'), `Connection: ${response.headers.connection}`)
    assert.ok(options.includes('close'), `Connection: ${response.headers.connection}`)
  })

  it('answers an upgrade to a route that does not exist with 404', async () => {
    const answer = await upgradeRequest(port, '/nowhere')
    assert.equal(answer.kind, 'response')
    assert.equal(answer.status, 404)
  })
})

describe('rallyjs/hono: middleware, subprotocols and WSContext', () => {
  let server: Server
  let port: number
  let rally: ReturnType<typeof createNodeWebSocket>['rally']
  const trail: string[] = []
  const logs: string[] = []
  const errorEvents: { event: Event; readyState: number }[] = []
  const errorCloses: number[] = []
  const contexts: { event: string; ctx: WSContext<ServerWebSocket<unknown>>; readyState: number }[] = []

  before(async () => {
    const app = new Hono()
    const nodeWs = createNodeWebSocket({ app })
    rally = nodeWs.rally
    const { upgradeWebSocket } = nodeWs
    app.use(logger((line: string) => void logs.push(line)))
    app.use(async (c, next) => {
      trail.push(`middleware ${c.req.path}`)
      await next()
    })
    app.use('/cors/*', cors({ origin: 'https://app.example' }))
    app.use('/secure/*', async (c, next) => {
      if (c.req.header('authorization') !== 'Bearer good') {
        return c.text('Unauthorized: bad token', 401, { 'WWW-Authenticate': 'Bearer' })
      }
      c.header('Set-Cookie', 'session=abc123; HttpOnly; Path=/')
      c.header('Set-Cookie', 'theme=dark; Path=/', { append: true })
      await next()
    })
    // Hono's own error handler logs to stderr; answer the same 500 quietly.
    app.onError((_error, c) => c.text('Internal Server Error', 500))
    app.use('/broken/*', async () => {
      throw new Error('middleware bug')
    })
    app.get(
      '/broken/ws',
      upgradeWebSocket(() => ({})),
    )
    app.get(
      '/err',
      upgradeWebSocket(() => ({
        onError(event, ctx) {
          errorEvents.push({ event, readyState: ctx.readyState })
        },
        onClose(event) {
          errorCloses.push(event.code)
        },
      })),
    )
    app.get(
      '/secure/ws',
      upgradeWebSocket(() => ({
        onOpen(_event, ws) {
          trail.push('open /secure/ws')
          ws.send('secret')
        },
      })),
    )
    app.get(
      '/cors/ws',
      upgradeWebSocket(() => ({
        onOpen(_event, ws) {
          trail.push('open /cors/ws')
          ws.send('hi')
        },
      })),
    )
    app.get(
      '/proto',
      upgradeWebSocket(
        () => ({
          onOpen(_event, ws) {
            ws.send(`protocol=${ws.protocol ?? ''}`)
          },
        }),
        { protocols: ['b', 'a'] },
      ),
    )
    app.get(
      '/ctx',
      upgradeWebSocket(() => ({
        onOpen(_event, ctx) {
          contexts.push({ event: 'open', ctx, readyState: ctx.readyState })
        },
        onMessage(event, ctx) {
          contexts.push({ event: 'message', ctx, readyState: ctx.readyState })
          ctx.send(`url=${ctx.url?.pathname}${ctx.url?.search} protocol=${ctx.protocol} got=${event.data}`)
        },
        onClose(_event, ctx) {
          contexts.push({ event: 'close', ctx, readyState: ctx.readyState })
        },
      })),
    )
    app.get(
      '/room/:name',
      upgradeWebSocket((c) => ({
        onOpen(_event, ctx) {
          const raw = ctx.raw!
          raw.subscribe(`room:${c.req.param('name')}`)
          ctx.send('joined')
        },
        onMessage(event, ctx) {
          // Broadcast to the room through Rally's topics, the sender included.
          rally.publish(`room:${c.req.param('name')}`, String(event.data))
          void ctx
        },
      })),
    )
    ;({ server, port } = await serveApp(app, (s) => nodeWs.injectWebSocket(s)))
  })

  after(async () => {
    await within(rally.close(), 5000, 'rally close')
    await shut(server)
  })

  it('auth middleware refuses the upgrade with its own status, headers and body', async () => {
    const answer = await upgradeRequest(port, '/secure/ws', { Authorization: 'Bearer bad' })
    assert.equal(answer.kind, 'response')
    assert.equal(answer.status, 401)
    assert.equal(answer.headers['www-authenticate'], 'Bearer')
    assert.equal((answer as { body: string }).body, 'Unauthorized: bad token')
    assert.ok(!trail.includes('open /secure/ws'))

    // Rally's client sees the refusal as a failed connection: error, then close 1006.
    const ws = connect(`ws://127.0.0.1:${port}/secure/ws`)
    const error = nextDomEvent(ws, 'error')
    const closed = nextDomEvent<CloseEvent>(ws, 'close')
    await error
    assert.equal((await closed).code, 1006)
  })

  it('when authorized, the cookie set by middleware is on the 101', async () => {
    const answer = await upgradeRequest(port, '/secure/ws', { Authorization: 'Bearer good' })
    assert.equal(answer.kind, 'upgrade')
    assert.equal(answer.status, 101)
    assert.deepEqual(answer.headers['set-cookie'], ['session=abc123; HttpOnly; Path=/', 'theme=dark; Path=/'])
    assert.equal(answer.headers['x-rally-accept-upgrade'], undefined, 'internal marker not leaked')
    assert.equal(answer.headers['content-type'], undefined)
    if (answer.kind === 'upgrade') answer.socket.destroy()
    await until(() => trail.includes('open /secure/ws'), 3000, 'onOpen')
  })

  it('a refused peer that keeps its side open is let go after a second (nothing holds server.close())', async () => {
    // The server's end of this connection, seen through an extra 'upgrade' listener.
    const serverSide = new Promise<Socket>((resolve) => {
      const observe = (request: { headers: Record<string, unknown> }, socket: Socket): void => {
        if (request.headers['x-test'] !== 'half-open') return
        server.off('upgrade', observe)
        resolve(socket)
      }
      server.on('upgrade', observe)
    })
    const socket = connectTcp(port)
    const received: Buffer[] = []
    socket.on('data', (chunk: Buffer) => received.push(chunk))
    await nextEvent(socket, 'connect')
    socket.write(
      'GET /secure/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n' +
        'Authorization: Bearer bad\r\nX-Test: half-open\r\n\r\n',
    )
    const held = await within(serverSide, 3000, 'the upgrade request')
    // The answer, then FIN; the test's side stays open (allowHalfOpen).
    await nextEvent(socket, 'end', 3000)
    assert.match(Buffer.concat(received).toString('latin1'), /^HTTP\/1\.1 401 /)
    assert.equal(held.destroyed, false, 'the server keeps the socket a moment after answering')
    // ...then destroys it: node:http's server would otherwise wait for it in close().
    await nextEvent(held, 'close', 4000)
    socket.destroy()
  })

  it('a middleware that throws: the upgrade is refused with 500', async () => {
    const answer = await upgradeRequest(port, '/broken/ws')
    assert.equal(answer.kind, 'response')
    assert.equal(answer.status, 500)
  })

  it("a peer's protocol error reaches onError, then onClose", async () => {
    // rallyjs/ws's client sends bytes as a text frame unchecked: invalid UTF-8 for the server.
    const ws = new WsWebSocket(`ws://127.0.0.1:${port}/err`)
    wsClients.push(ws)
    await nextEvent(ws, 'open')
    const closed = nextEvent<[number]>(ws, 'close')
    ws.send(Buffer.from([0x68, 0xff, 0x69]), { binary: false })
    assert.equal((await closed)[0], 1007)
    await until(() => errorCloses.length === 1, 3000, 'onClose')
    assert.equal(errorEvents.length, 1, 'onError was called once')
    assert.equal(errorEvents[0]!.event.type, 'error')
    assert.equal(errorEvents[0]!.readyState, 2, 'onError comes while the socket is closing')
  })

  it('CORS and logging middleware run before the upgrade', async () => {
    trail.length = 0
    logs.length = 0
    const answer = await upgradeRequest(port, '/cors/ws', { Origin: 'https://app.example' })
    assert.equal(answer.kind, 'upgrade')
    assert.equal(answer.headers['access-control-allow-origin'], 'https://app.example')
    if (answer.kind === 'upgrade') answer.socket.destroy()
    await until(() => trail.includes('open /cors/ws'), 3000, 'onOpen')
    assert.deepEqual(trail, ['middleware /cors/ws', 'open /cors/ws'])
    assert.ok(
      logs.some((line) => line.includes('<--') && line.includes('/cors/ws')),
      `logger saw the request: ${JSON.stringify(logs)}`,
    )
  })

  it('negotiates subprotocols: upgradeWebSocket(fn, { protocols: ["b", "a"] }), client offers ["a", "b"]', async () => {
    const ws = connect(`ws://127.0.0.1:${port}/proto`, ['a', 'b'])
    const messages = collect(ws)
    await nextDomEvent(ws, 'open')
    // The route's order of preference decides (as the native server's `protocols` option does).
    assert.equal(ws.protocol, 'b')
    await until(() => messages.length === 1, 3000, 'the protocol message')
    assert.deepEqual(messages, ['protocol=b'])
    ws.close()

    // No common subprotocol: the upgrade goes ahead without one.
    const none = connect(`ws://127.0.0.1:${port}/proto`, ['c'])
    const noneMessages = collect(none)
    await nextDomEvent(none, 'open')
    assert.equal(none.protocol, '')
    await until(() => noneMessages.length === 1, 3000, 'the protocol message')
    assert.deepEqual(noneMessages, ['protocol='])
    none.close()
  })

  it('WSContext: one object for the whole connection, live readyState, protocol, url, raw', async () => {
    contexts.length = 0
    const ws = connect(`ws://127.0.0.1:${port}/ctx?x=1`, ['p1'])
    const messages = collect(ws)
    await nextDomEvent(ws, 'open')
    ws.send('one')
    ws.send('two')
    await until(() => messages.length === 2, 3000, 'two answers')
    assert.deepEqual(messages, ['url=/ctx?x=1 protocol=p1 got=one', 'url=/ctx?x=1 protocol=p1 got=two'])
    const closed = nextDomEvent<CloseEvent>(ws, 'close')
    ws.close(1000)
    await closed
    await until(() => contexts.some((c) => c.event === 'close'), 3000, 'onClose')

    assert.deepEqual(
      contexts.map((c) => c.event),
      ['open', 'message', 'message', 'close'],
    )
    const first = contexts[0]!.ctx
    assert.ok(
      contexts.every((c) => c.ctx === first),
      'the same WSContext in onOpen, onMessage and onClose',
    )
    assert.deepEqual(
      contexts.map((c) => c.readyState),
      [1, 1, 1, 3],
    )
    assert.equal(first.readyState, 3, 'readyState is live, not a snapshot')
    assert.equal(first.protocol, 'p1')
    assert.equal(first.url?.pathname, '/ctx')
    assert.ok(first.raw instanceof ServerWebSocket)
    assert.equal(typeof first.raw.bufferedAmount, 'number')
    assert.equal(typeof first.raw.subscribe, 'function')
    assert.equal(typeof first.raw.publish, 'function')
  })

  it('WSContext.raw has topics: raw.subscribe + rally.publish broadcast between two clients', async () => {
    const alice = connect(`ws://127.0.0.1:${port}/room/lobby`)
    const bob = connect(`ws://127.0.0.1:${port}/room/lobby`)
    const elsewhere = connect(`ws://127.0.0.1:${port}/room/other`)
    const got = { alice: collect(alice), bob: collect(bob), elsewhere: collect(elsewhere) }
    await Promise.all([alice, bob, elsewhere].map((ws) => nextDomEvent(ws, 'open')))
    await until(
      () => got.alice.length === 1 && got.bob.length === 1 && got.elsewhere.length === 1,
      3000,
      'the three joins',
    )
    assert.equal(rally.subscriberCount('room:lobby'), 2)
    alice.send('hi from alice')
    await until(() => got.alice.length === 2 && got.bob.length === 2, 3000, 'the broadcast')
    bob.send('hi from bob')
    await until(() => got.alice.length === 3 && got.bob.length === 3, 3000, 'the second broadcast')
    assert.deepEqual(got.alice, ['joined', 'hi from alice', 'hi from bob'])
    assert.deepEqual(got.bob, ['joined', 'hi from alice', 'hi from bob'])
    assert.deepEqual(got.elsewhere, ['joined'])
    for (const ws of [alice, bob, elsewhere]) ws.close()
    await until(() => rally.subscriberCount('room:lobby') === 0, 3000, 'the room to empty')
  })
})
