/**
 * The opening handshake over real sockets: refusals (status lines and headers read raw), the
 * `upgrade` handler (Response refusals, async user data, throws), and subprotocol choice.
 */
import assert from 'node:assert/strict'
import { Buffer } from 'node:buffer'
import { after, before, describe, it } from 'node:test'
import type { CloseEvent, ServerWebSocket } from '../../src/index.js'
import {
  ACCEPT,
  disposeAll,
  EventQueue,
  type HttpResponse,
  handshakeRequest,
  newClient,
  once,
  openClient,
  RawClient,
  type StartedServer,
  sleep,
  startServer,
} from './helpers.js'

/** Sends `request` on a fresh TCP connection and reads the response; the server then closes. */
async function exchange(port: number, request: string): Promise<{ response: HttpResponse; raw: RawClient }> {
  const raw = await RawClient.connect(port)
  raw.write(Buffer.from(request, 'latin1'))
  const response = await raw.readHead(3000)
  return { response, raw }
}

describe('handshake refusals (raw requests)', () => {
  let started: StartedServer<undefined>
  const opens = new EventQueue<ServerWebSocket<undefined>>()

  before(async () => {
    started = await startServer({
      path: '/ws',
      open(ws) {
        opens.push(ws)
      },
    })
  })
  after(disposeAll)

  it('a valid request gets 101 with the right accept key', async () => {
    const { response } = await exchange(started.port, handshakeRequest({ path: '/ws' }))
    assert.equal(response.statusLine, 'HTTP/1.1 101 Switching Protocols')
    assert.equal(response.headers.upgrade, 'websocket')
    assert.equal(response.headers.connection, 'Upgrade')
    assert.equal(response.headers['sec-websocket-accept'], ACCEPT)
    assert.equal(response.headers['sec-websocket-accept'], 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=')
    assert.equal(response.headers['sec-websocket-protocol'], undefined)
    assert.equal(response.headers['sec-websocket-extensions'], undefined)
    assert.equal((await opens.next()).url, '/ws')
  })

  it('the path option ignores the query string', async () => {
    const { response } = await exchange(started.port, handshakeRequest({ path: '/ws?token=abc' }))
    assert.equal(response.status, 101)
    assert.equal((await opens.next()).url, '/ws?token=abc')
  })

  it('missing Sec-WebSocket-Key → 400', async () => {
    const { response, raw } = await exchange(
      started.port,
      handshakeRequest({ path: '/ws', headers: { 'Sec-WebSocket-Key': undefined } }),
    )
    assert.equal(response.statusLine, 'HTTP/1.1 400 Bad Request')
    assert.equal(response.headers.connection, 'close')
    assert.equal(response.body, 'Missing, repeated or invalid Sec-WebSocket-Key\n')
    await raw.waitForClose(2000)
  })

  it('a key that does not decode to 16 bytes → 400', async () => {
    const { response } = await exchange(
      started.port,
      handshakeRequest({ path: '/ws', headers: { 'Sec-WebSocket-Key': 'c2hvcnQ=' } }),
    )
    assert.equal(response.status, 400)
  })

  it('wrong Sec-WebSocket-Version → 426 with Sec-WebSocket-Version: 13', async () => {
    const { response, raw } = await exchange(
      started.port,
      handshakeRequest({ path: '/ws', headers: { 'Sec-WebSocket-Version': '8' } }),
    )
    assert.equal(response.statusLine, 'HTTP/1.1 426 Upgrade Required')
    assert.equal(response.headers['sec-websocket-version'], '13')
    await raw.waitForClose(2000)
  })

  it('POST → 405 with Allow: GET', async () => {
    const { response, raw } = await exchange(started.port, handshakeRequest({ path: '/ws', method: 'POST' }))
    assert.equal(response.statusLine, 'HTTP/1.1 405 Method Not Allowed')
    assert.equal(response.headers.allow, 'GET')
    await raw.waitForClose(2000)
  })

  it('plain GET without Upgrade → 426', async () => {
    const { response } = await exchange(started.port, `GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`)
    assert.equal(response.statusLine, 'HTTP/1.1 426 Upgrade Required')
    assert.equal(response.headers.upgrade, 'websocket')
    assert.equal(response.body, 'This endpoint requires a WebSocket upgrade\n')
  })

  it('Connection: keep-alive, Upgrade (a token list) is accepted', async () => {
    const { response } = await exchange(
      started.port,
      handshakeRequest({ path: '/ws', headers: { Connection: 'keep-alive, Upgrade' } }),
    )
    assert.equal(response.status, 101)
    await opens.next()
  })

  it('Connection without the Upgrade token → 426 (the Upgrade header does not apply: a plain request)', async () => {
    const { response } = await exchange(
      started.port,
      handshakeRequest({ path: '/ws', headers: { Connection: 'keep-alive' } }),
    )
    assert.equal(response.status, 426)
  })

  it('path mismatch → 404', async () => {
    const { response, raw } = await exchange(started.port, handshakeRequest({ path: '/other' }))
    assert.equal(response.statusLine, 'HTTP/1.1 404 Not Found')
    assert.equal(response.body, 'No WebSocket endpoint at this path\n')
    await raw.waitForClose(2000)
  })

  it('HTTP/1.0 → 400', async () => {
    const raw = await RawClient.connect(started.port)
    raw.write(handshakeRequest({ path: '/ws' }).replace('HTTP/1.1', 'HTTP/1.0'))
    const response = await raw.readHead(3000)
    assert.equal(response.status, 400)
  })
})

describe('the upgrade handler', () => {
  after(disposeAll)

  it("returning new Response('nope', 401, WWW-Authenticate) → 401 with that header and body", async () => {
    const opens = new EventQueue<unknown>()
    const { port, url, server } = await startServer({
      upgrade() {
        return new Response('nope', { status: 401, headers: { 'WWW-Authenticate': 'Bearer' } })
      },
      open(ws) {
        opens.push(ws)
      },
    })
    const { response, raw } = await exchange(port, handshakeRequest())
    assert.equal(response.statusLine, 'HTTP/1.1 401 Unauthorized')
    assert.equal(response.headers['www-authenticate'], 'Bearer')
    assert.equal(response.headers['content-length'], '4')
    assert.equal(response.body, 'nope')
    await raw.waitForClose(2000)
    // And a WHATWG client: error, then close 1006.
    const ws = newClient(url)
    const order: string[] = []
    ws.addEventListener('error', () => order.push('error'))
    const closed = once<CloseEvent>(ws, 'close', 3000)
    const event = await closed
    order.push('close')
    assert.deepEqual(order, ['error', 'close'])
    assert.equal(event.code, 1006)
    assert.equal(opens.size, 0)
    assert.deepEqual(server.stats().handshakeRejections, { '401': 2 })
  })

  it('an async upgrade (awaiting a timer) returning user data → ws.data in open', async () => {
    const opened = new EventQueue<{ user: string; roles: string[] }>()
    const { url } = await startServer<{ user: string; roles: string[] }>({
      async upgrade(req) {
        await sleep(50)
        return { user: String(req.headers['x-user']), roles: ['admin'] }
      },
      open(ws) {
        opened.push(ws.data)
      },
    })
    await openClient(url, undefined, { headers: { 'X-User': 'alice' } })
    assert.deepEqual(await opened.next(), { user: 'alice', roles: ['admin'] })
  })

  it('an async upgrade resolving to a Response refuses', async () => {
    const { port } = await startServer({
      async upgrade() {
        await sleep(20)
        return new Response('later', { status: 503, headers: { 'Retry-After': '5' } })
      },
    })
    const { response } = await exchange(port, handshakeRequest())
    assert.equal(response.status, 503)
    assert.equal(response.headers['retry-after'], '5')
    assert.equal(response.body, 'later')
  })

  it('an upgrade that throws → 500 without details; the error handler gets the error', async () => {
    const errors = new EventQueue<unknown>()
    const boom = new Error('secret internals')
    const { port } = await startServer({
      upgrade() {
        throw boom
      },
      error(error) {
        errors.push(error)
      },
    })
    const { response } = await exchange(port, handshakeRequest())
    assert.equal(response.statusLine, 'HTTP/1.1 500 Internal Server Error')
    assert.equal(response.body, 'Internal server error\n')
    assert.equal(await errors.next(), boom)
  })

  it('an async upgrade that rejects → 500; the error handler gets the error', async () => {
    const errors = new EventQueue<unknown>()
    const boom = new Error('async secret')
    const { port } = await startServer({
      async upgrade() {
        await sleep(10)
        throw boom
      },
      error(error) {
        errors.push(error)
      },
    })
    const { response } = await exchange(port, handshakeRequest())
    assert.equal(response.status, 500)
    assert.equal(await errors.next(), boom)
  })

  it('an upgrade that never settles → 503 after handshakeTimeout', async () => {
    const { port } = await startServer({
      handshakeTimeout: 200,
      upgrade() {
        return new Promise<undefined>(() => {})
      },
    })
    const start = Date.now()
    const { response } = await exchange(port, handshakeRequest())
    assert.equal(response.status, 503)
    assert.ok(Date.now() - start >= 180)
  })

  it('context.headers are added to the 101 response', async () => {
    const { port } = await startServer({
      upgrade(_req, context) {
        context.headers.set('Set-Cookie', 'session=1')
        return undefined
      },
    })
    const raw = await RawClient.open(port)
    raw.destroy()
    const { response } = await exchange(port, handshakeRequest())
    assert.equal(response.status, 101)
    assert.equal(response.headers['set-cookie'], 'session=1')
  })
})

describe('subprotocols', () => {
  after(disposeAll)

  // The server picks the first entry of ITS OWN `protocols` list that the client offered (server
  // preference), not the client's first choice: server ['b', 'a'] + client ['a', 'b'] → 'b'.
  it("server protocols ['b', 'a'], client offers ['a', 'b'] → 'b' (server's preference order)", async () => {
    const opens = new EventQueue<ServerWebSocket<undefined>>()
    const contexts: (string | undefined)[] = []
    const { url } = await startServer({
      protocols: ['b', 'a'],
      upgrade(_req, context) {
        contexts.push(context.protocol)
        assert.deepEqual(context.protocols, ['a', 'b'])
        return undefined
      },
      open(ws) {
        opens.push(ws)
      },
    })
    const ws = await openClient(url, ['a', 'b'])
    assert.equal(ws.protocol, 'b')
    assert.equal((await opens.next()).protocol, 'b')
    assert.deepEqual(contexts, ['b'], 'context.protocol is preset from the protocols option')
  })

  it('no protocol in common → the connection opens without a subprotocol', async () => {
    const opens = new EventQueue<ServerWebSocket<undefined>>()
    const { url, port } = await startServer({
      protocols: ['x'],
      open(ws) {
        opens.push(ws)
      },
    })
    const ws = await openClient(url, ['a'])
    assert.equal(ws.protocol, '')
    assert.equal((await opens.next()).protocol, '')
    const { response } = await exchange(
      port,
      handshakeRequest({ headers: { 'Sec-WebSocket-Protocol': 'a, b' } }),
    )
    assert.equal(response.status, 101)
    assert.equal(response.headers['sec-websocket-protocol'], undefined)
  })

  it('context.protocol set in upgrade → chosen; the client sees ws.protocol', async () => {
    const opens = new EventQueue<ServerWebSocket<undefined>>()
    const { url } = await startServer({
      upgrade(_req, context) {
        context.protocol = context.protocols.includes('chat.v2') ? 'chat.v2' : undefined
        return undefined
      },
      open(ws) {
        opens.push(ws)
      },
    })
    const ws = await openClient(url, ['chat.v1', 'chat.v2'])
    assert.equal(ws.protocol, 'chat.v2')
    assert.equal((await opens.next()).protocol, 'chat.v2')
    const plain = await openClient(url)
    assert.equal(plain.protocol, '')
  })

  it('context.protocol set to one the client did not offer → 500 (server bug), error reported', async () => {
    const errors = new EventQueue<unknown>()
    const { port } = await startServer({
      upgrade(_req, context) {
        context.protocol = 'never-offered'
        return undefined
      },
      error(error) {
        errors.push(error)
      },
    })
    const { response } = await exchange(
      port,
      handshakeRequest({ headers: { 'Sec-WebSocket-Protocol': 'a' } }),
    )
    assert.equal(response.status, 500)
    const error = (await errors.next()) as Error
    assert.equal(error.name, 'TypeError')
  })

  it('the raw 101 carries Sec-WebSocket-Protocol with the chosen value', async () => {
    const { port } = await startServer({ protocols: ['mqtt', 'wamp'] })
    const { response } = await exchange(
      port,
      handshakeRequest({ headers: { 'Sec-WebSocket-Protocol': 'wamp, mqtt' } }),
    )
    assert.equal(response.status, 101)
    assert.equal(response.headers['sec-websocket-protocol'], 'mqtt')
  })
})
