/**
 * Every way a connection ends: client-initiated and server-initiated closing handshakes, the
 * server's close timeout, abrupt TCP loss either way, and `server.close()`.
 */
import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import { type CloseEvent, type ServerWebSocket, WebSocket } from '../../src/index.js'
import { Opcode } from '../../src/protocol/index.js'
import {
  closeCodeOf,
  closePayload,
  closeReasonOf,
  disposeAll,
  EventQueue,
  frame,
  handshakeRequest,
  newClient,
  once,
  openClient,
  RawClient,
  sleep,
  startServer,
  waitUntil,
  withTimeout,
} from './helpers.js'

interface ServerClose {
  ws: ServerWebSocket<undefined>
  code: number
  reason: string
  readyState: number
  at: number
}

/** closeTimeout is 200 only where a test is about it; elsewhere generous, so load cannot matter. */
async function closeServer(closeTimeout = 3000) {
  const opens = new EventQueue<ServerWebSocket<undefined>>()
  const closes = new EventQueue<ServerClose>()
  const started = await startServer({
    closeTimeout,
    open(ws) {
      opens.push(ws)
    },
    close(ws, code, reason) {
      closes.push({ ws, code, reason, readyState: ws.readyState, at: Date.now() })
    },
  })
  return { ...started, opens, closes }
}

describe('close paths', () => {
  after(disposeAll)

  it('client-initiated close: the server sees code and reason; the client close is clean', async () => {
    const { url, opens, closes } = await closeServer()
    const ws = await openClient(url)
    const serverWs = await opens.next()
    const closed = once<CloseEvent>(ws, 'close', 2000)
    ws.close(4001, 'client done')
    assert.equal(ws.readyState, WebSocket.CLOSING)
    const atServer = await closes.next(2000, 'the server close handler')
    assert.equal(atServer.ws, serverWs)
    assert.equal(atServer.code, 4001)
    assert.equal(atServer.reason, 'client done')
    assert.equal(atServer.readyState, 3)
    const event = await closed
    assert.equal(event.wasClean, true)
    // The server echoes the code (RFC 6455 5.5.1) and the reason.
    assert.equal(event.code, 4001)
    assert.equal(event.reason, 'client done')
    assert.equal(ws.readyState, WebSocket.CLOSED)
  })

  it('client close() without a code: the server sees 1005, the client 1005', async () => {
    const { url, closes } = await closeServer()
    const ws = await openClient(url)
    const closed = once<CloseEvent>(ws, 'close', 2000)
    ws.close()
    const atServer = await closes.next(2000, 'the server close handler')
    assert.equal(atServer.code, 1005)
    assert.equal(atServer.reason, '')
    const event = await closed
    assert.equal(event.wasClean, true)
    assert.equal(event.code, 1005)
  })

  it("server-initiated ws.close(4000, 'bye'): CloseEvent 4000 'bye', clean; readyState CLOSING then CLOSED", async () => {
    const { url, opens, closes } = await closeServer()
    const ws = await openClient(url)
    const serverWs = await opens.next()
    const states: number[] = []
    const closed = new Promise<CloseEvent>((resolve) => {
      ws.addEventListener('close', (event) => {
        states.push(ws.readyState)
        resolve(event as CloseEvent)
      })
    })
    // Hold the server's reading so the client stays CLOSING (its reply unread) until we look.
    serverWs.pauseReading()
    serverWs.close(4000, 'bye')
    assert.equal(serverWs.readyState, 2)
    await waitUntil(() => ws.readyState !== WebSocket.OPEN, 2000, 'the client to leave OPEN')
    states.push(ws.readyState)
    assert.equal(ws.readyState, WebSocket.CLOSING)
    serverWs.resumeReading()
    const event = await withTimeout(closed, 2000, 'the client close event')
    assert.deepEqual(states, [WebSocket.CLOSING, WebSocket.CLOSED])
    assert.equal(event.code, 4000)
    assert.equal(event.reason, 'bye')
    assert.equal(event.wasClean, true)
    const atServer = await closes.next(2000, 'the server close handler')
    assert.equal(atServer.code, 4000, 'the client echoed 4000')
    assert.equal(atServer.reason, 'bye', 'and the reason')
  })

  it('close timeout: a peer that never answers the close frame is destroyed after closeTimeout; close gets 1006', async () => {
    const { port, opens, closes } = await closeServer(200)
    const raw = await RawClient.open(port)
    const serverWs = await opens.next()
    const start = Date.now()
    serverWs.close(1000, 'going')
    const closeFrame = await raw.readFrame()
    assert.equal(closeFrame.opcode, Opcode.Close)
    assert.equal(closeCodeOf(closeFrame), 1000)
    assert.equal(closeReasonOf(closeFrame), 'going')
    // Never answer. The server must not wait forever.
    const atServer = await closes.next(3000, 'the server close handler')
    const elapsed = atServer.at - start
    assert.equal(atServer.code, 1006)
    assert.equal(atServer.reason, '')
    assert.ok(elapsed >= 180, `closed after ${elapsed} ms, before closeTimeout (200)`)
    assert.ok(elapsed < 1500, `closed after ${elapsed} ms, long after closeTimeout (200)`)
    await raw.waitForClose(2000)
  })

  it('abrupt TCP loss from the client: the server close handler gets 1006', async () => {
    const { port, opens, closes } = await closeServer()
    const raw = await RawClient.open(port)
    await opens.next()
    raw.socket.resetAndDestroy()
    const atServer = await closes.next(2000, 'the server close handler')
    assert.equal(atServer.code, 1006)
    assert.equal(atServer.reason, '')
  })

  it('TCP FIN from the client without a close frame: the server close handler gets 1006', async () => {
    const { port, opens, closes } = await closeServer()
    const raw = await RawClient.open(port)
    await opens.next()
    raw.socket.end()
    const atServer = await closes.next(2000, 'the server close handler')
    assert.equal(atServer.code, 1006)
    await raw.waitForClose(2000)
  })

  it('server ws.terminate(): the client close event is 1006, not clean', async () => {
    const { url, opens, closes } = await closeServer()
    const ws = await openClient(url)
    const serverWs = await opens.next()
    const closed = once<CloseEvent>(ws, 'close', 2000)
    serverWs.terminate()
    const event = await closed
    assert.equal(event.code, 1006)
    assert.equal(event.wasClean, false)
    assert.equal(event.reason, '')
    assert.equal(ws.readyState, WebSocket.CLOSED)
    assert.equal((await closes.next()).code, 1006)
  })

  it('client ws.terminate(): the server close handler gets 1006; the client close event 1006', async () => {
    const { url, closes } = await closeServer()
    const ws = await openClient(url)
    const closed = once<CloseEvent>(ws, 'close', 2000)
    ws.terminate()
    const event = await closed
    assert.equal(event.code, 1006)
    assert.equal(event.wasClean, false)
    assert.equal((await closes.next()).code, 1006)
  })

  it('server.close(): 1001 to every client, resolves after the closing handshakes', async () => {
    const { server, url, opens, closes } = await closeServer()
    const a = await openClient(url)
    const b = await openClient(url)
    await opens.next()
    await opens.next()
    const closedA = once<CloseEvent>(a, 'close', 3000)
    const closedB = once<CloseEvent>(b, 'close', 3000)
    await withTimeout(server.close(), 3000, 'server.close()')
    const [ea, eb] = await Promise.all([closedA, closedB])
    for (const event of [ea, eb]) {
      assert.equal(event.code, 1001)
      assert.equal(event.reason, 'Server shutting down')
      assert.equal(event.wasClean, true)
    }
    const serverCloses = [await closes.next(), await closes.next()]
    assert.deepEqual(
      serverCloses.map((c) => c.code),
      [1001, 1001],
    )
    assert.equal(server.clients.size, 0)
    assert.equal(server.stats().connections, 0)
    // No longer listening: a new client cannot connect.
    const late = newClient(url)
    const lateClose = await once<CloseEvent>(late, 'close', 3000)
    assert.equal(lateClose.code, 1006)
    // A second close() is the same promise, already resolved.
    await withTimeout(server.close(), 500, 'second server.close()')
  })

  it('server.close() with a peer that never answers resolves after closeTimeout', async () => {
    const { server, port, opens, closes } = await closeServer(200)
    const raw = await RawClient.open(port)
    await opens.next()
    const start = Date.now()
    const closing = server.close()
    const goAway = await raw.readFrame()
    assert.equal(goAway.opcode, Opcode.Close)
    assert.equal(closeCodeOf(goAway), 1001)
    await withTimeout(closing, 2000, 'server.close()')
    const elapsed = Date.now() - start
    assert.ok(elapsed >= 180 && elapsed < 1500, `server.close() took ${elapsed} ms (closeTimeout 200)`)
    assert.equal((await closes.next()).code, 1006)
  })

  it('server.close() while a peer has already sent its close: both handshakes complete', async () => {
    const { server, port, opens, closes } = await closeServer()
    const raw = await RawClient.open(port)
    await opens.next()
    raw.write(frame(Opcode.Close, closePayload(3001, 'me first')))
    const reply = await raw.readFrame()
    assert.equal(closeCodeOf(reply), 3001)
    await withTimeout(server.close(), 2000, 'server.close()')
    const atServer = await closes.next()
    assert.equal(atServer.code, 3001)
    assert.equal(atServer.reason, 'me first')
    await raw.waitForClose(2000)
  })

  it('server.close() during a pending async upgrade: that handshake gets 503, close() resolves', async () => {
    const upgrading = new EventQueue<string>()
    const { server, port } = await startServer({
      async upgrade() {
        upgrading.push('started')
        await sleep(100)
        return undefined
      },
    })
    const raw = await RawClient.connect(port)
    raw.write(handshakeRequest())
    await upgrading.next()
    const closing = server.close()
    const response = await raw.readHead(2000)
    assert.equal(response.status, 503)
    assert.equal(response.body, 'Server is shutting down\n')
    await withTimeout(closing, 2000, 'server.close()')
    assert.deepEqual(server.stats().handshakeRejections, { '503': 1 })
  })
})
