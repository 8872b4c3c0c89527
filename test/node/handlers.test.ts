/**
 * Application handler failures (sync throws, async rejections) and what the server reports:
 * send() status and server.stats().
 */
import assert from 'node:assert/strict'
import { Buffer } from 'node:buffer'
import { after, before, describe, it } from 'node:test'
import type { CloseEvent, SendStatus, ServerWebSocket } from '../../src/index.js'
import {
  collectMessages,
  disposeAll,
  EventQueue,
  handshakeRequest,
  newClient,
  once,
  openClient,
  RawClient,
  sleep,
  startServer,
  turn,
} from './helpers.js'

// Anything unhandled in this process fails the test that checks for it.
const unhandled: unknown[] = []
process.on('unhandledRejection', (reason) => unhandled.push(reason))
process.on('uncaughtException', (error) => unhandled.push(error))

describe('handler errors', () => {
  after(disposeAll)

  it('a message handler that throws → error handler gets the error; client gets close 1011', async () => {
    const errors = new EventQueue<{ error: unknown; ws: ServerWebSocket<undefined> | undefined }>()
    const closes = new EventQueue<number>()
    const boom = new Error('sync boom')
    const { url } = await startServer({
      message(_ws, data) {
        if (data === 'throw') throw boom
      },
      close(_ws, code) {
        closes.push(code)
      },
      error(error, ws) {
        errors.push({ error, ws })
      },
    })
    const ws = await openClient(url)
    const closed = once<CloseEvent>(ws, 'close', 3000)
    ws.send('fine')
    ws.send('throw')
    ws.send('never delivered')
    const reported = await errors.next()
    assert.equal(reported.error, boom)
    assert.ok(reported.ws !== undefined)
    const event = await closed
    assert.equal(event.code, 1011)
    assert.equal(event.reason, '', 'no internals in the close reason')
    assert.equal(event.wasClean, true)
    // The server failed the connection and stopped reading: it reports 1006 (no close frame read).
    assert.equal(await closes.next(), 1006)
    // The close handler runs last; one more turn lets Node judge every rejection made before it.
    await turn()
    assert.equal(errors.size, 0, 'one error reported')
    assert.deepEqual(unhandled, [])
  })

  it('an async message handler that rejects → same: error handler, close 1011, no unhandled rejection', async () => {
    const errors = new EventQueue<unknown>()
    const boom = new Error('async boom')
    const { url } = await startServer({
      async message(_ws, data) {
        await sleep(10)
        if (data === 'reject') throw boom
      },
      error(error) {
        errors.push(error)
      },
    })
    const ws = await openClient(url)
    const closed = once<CloseEvent>(ws, 'close', 3000)
    ws.send('reject')
    assert.equal(await errors.next(), boom)
    const event = await closed
    assert.equal(event.code, 1011)
    assert.equal(event.reason, '')
    // Node reports an unhandled rejection once the microtask queue drains after a macrotask: one
    // turn after the close event covers the handler's rejection, which came before it.
    await turn()
    assert.deepEqual(unhandled, [])
  })

  it('without an error handler, a throwing handler still closes with 1011 and does not crash', async () => {
    const original = console.error
    const logged: unknown[] = []
    console.error = (...args: unknown[]) => logged.push(args[0])
    try {
      const boom = new Error('logged boom')
      const { url } = await startServer({
        message() {
          throw boom
        },
      })
      const ws = await openClient(url)
      const closed = once<CloseEvent>(ws, 'close', 3000)
      ws.send('x')
      assert.equal((await closed).code, 1011)
      assert.deepEqual(logged, [boom], 'printed to stderr instead')
    } finally {
      console.error = original
    }
    assert.deepEqual(unhandled, [])
  })

  it('open, close and async open handlers that fail are reported; open failure closes with 1011', async () => {
    const errors = new EventQueue<unknown>()
    const openBoom = new Error('open boom')
    const closeBoom = new Error('close boom')
    const { url } = await startServer({
      async open() {
        await sleep(5)
        throw openBoom
      },
      close() {
        throw closeBoom
      },
      error(error) {
        errors.push(error)
      },
    })
    const ws = newClient(url)
    const closed = once<CloseEvent>(ws, 'close', 3000)
    assert.equal(await errors.next(), openBoom)
    assert.equal((await closed).code, 1011)
    assert.equal(await errors.next(), closeBoom)
    // The close handler's error was the last thing to happen; one turn lets Node report any
    // rejection left unhandled before it.
    await turn()
    assert.deepEqual(unhandled, [])
  })

  it('an error handler that throws does not crash the process', async () => {
    const original = console.error
    const logged: unknown[] = []
    console.error = (...args: unknown[]) => logged.push(args[0])
    try {
      const { url } = await startServer({
        message() {
          throw new Error('first')
        },
        error() {
          throw new Error('second')
        },
      })
      const ws = await openClient(url)
      const closed = once<CloseEvent>(ws, 'close', 3000)
      ws.send('x')
      assert.equal((await closed).code, 1011)
      assert.equal((logged[0] as Error).message, 'second')
    } finally {
      console.error = original
    }
    assert.deepEqual(unhandled, [])
  })
})

describe('socket errors while an async open handler is pending', () => {
  after(disposeAll)

  // Regression: while an async `open` handler was pending, the upgraded socket had no 'error'
  // listener (Node's http server drops its own on upgrade, the driver attached its own only after
  // `open` settled), so a peer's reset raised an uncaught ECONNRESET and ended the process.
  it('a peer reset during an async open handler does not crash the process; close gets 1006', async () => {
    const closes = new EventQueue<number>()
    const opened = new EventQueue<string>()
    const { port } = await startServer({
      async open() {
        opened.push('started')
        await sleep(150)
        opened.push('finished')
      },
      close(_ws, code) {
        closes.push(code)
      },
    })
    const before = unhandled.length
    const raw = await RawClient.open(port)
    assert.equal(await opened.next(), 'started')
    raw.socket.resetAndDestroy()
    assert.equal(await opened.next(), 'finished')
    assert.equal(await closes.next(), 1006)
    assert.deepEqual(
      unhandled.slice(before).map((e) => (e as Error).message),
      [],
      'no uncaught exception',
    )
  })
})

describe('send() status and server.stats()', () => {
  const statuses = new EventQueue<{ phase: string; status: SendStatus }>()
  const opens = new EventQueue<ServerWebSocket<undefined>>()
  const closes = new EventQueue<number>()
  let port: number
  let url: string
  let server: Awaited<ReturnType<typeof startServer<undefined>>>['server']

  before(async () => {
    ;({ port, url, server } = await startServer({
      path: '/s',
      upgrade(req) {
        if (req.headers.authorization === 'no') return new Response('no', { status: 401 })
        return undefined
      },
      open(ws) {
        opens.push(ws)
      },
      message(ws, data, isBinary) {
        statuses.push({ phase: 'echo', status: ws.send(data, { binary: isBinary }) })
      },
      close(ws, code) {
        statuses.push({ phase: 'in close handler', status: ws.send('too late') })
        closes.push(code)
      },
    }))
    url = `${url}/s`
  })
  after(disposeAll)

  it("returns 'sent' normally and 'dropped' once closing has begun and after close", async () => {
    const ws = await openClient(url)
    const serverWs = await opens.next()
    const messages = collectMessages(ws)
    ws.send('one')
    assert.equal((await messages.next()).data, 'one')
    assert.deepEqual(await statuses.next(), { phase: 'echo', status: 'sent' })
    assert.equal(serverWs.send(Buffer.from([1])), 'sent')
    assert.equal(serverWs.ping('p'), 'sent')
    serverWs.close(1000)
    assert.equal(serverWs.send('after close()'), 'dropped')
    assert.equal(serverWs.ping(), 'dropped')
    assert.equal(await closes.next(), 1000)
    assert.deepEqual(await statuses.next(), { phase: 'in close handler', status: 'dropped' })
    assert.equal(serverWs.send('after closed'), 'dropped')
    assert.equal(serverWs.readyState, 3)
  })

  it('stats() counts messages in/out, bytes, connections and handshake rejections by status', async () => {
    const base = server.stats()
    const ws = await openClient(url)
    await opens.next()
    const messages = collectMessages(ws)
    ws.send('abc')
    ws.send(new Uint8Array(10))
    ws.send('é')
    for (let i = 0; i < 3; i++) await messages.next()
    for (let i = 0; i < 3; i++) await statuses.next()
    let stats = server.stats()
    assert.equal(stats.messagesIn - base.messagesIn, 3)
    assert.equal(stats.messagesOut - base.messagesOut, 3)
    assert.equal(stats.bytesIn - base.bytesIn, 3 + 10 + 2)
    assert.equal(stats.bytesOut - base.bytesOut, 3 + 10 + 2)
    assert.equal(stats.connections, 1)
    assert.equal(stats.connectionsTotal - base.connectionsTotal, 1)

    // Refusals: 404 (path), 400 (no key), 426 (version), 426 (plain GET), 405 (POST), 401 (upgrade).
    const requests = [
      handshakeRequest({ path: '/elsewhere' }),
      handshakeRequest({ path: '/s', headers: { 'Sec-WebSocket-Key': undefined } }),
      handshakeRequest({ path: '/s', headers: { 'Sec-WebSocket-Version': '7' } }),
      'GET /s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n',
      handshakeRequest({ path: '/s', method: 'POST' }),
      handshakeRequest({ path: '/s', headers: { Authorization: 'no' } }),
    ]
    const seen: number[] = []
    for (const request of requests) {
      const raw = await RawClient.connect(port)
      raw.write(request)
      seen.push((await raw.readHead()).status)
      raw.destroy()
    }
    assert.deepEqual(seen, [404, 400, 426, 426, 405, 401])
    stats = server.stats()
    assert.deepEqual(stats.handshakeRejections, { '400': 1, '401': 1, '404': 1, '405': 1, '426': 2 })
    // A snapshot: changing it changes nothing in the server.
    stats.handshakeRejections['400'] = 99
    stats.messagesIn = -1
    assert.equal(server.stats().handshakeRejections['400'], 1)
    assert.notEqual(server.stats().messagesIn, -1)

    const closed = once<CloseEvent>(ws, 'close')
    ws.close()
    await closed
    await closes.next()
    await statuses.next()
    assert.equal(server.stats().connections, 0)
  })
})
