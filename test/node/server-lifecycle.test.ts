/**
 * The server's view of a connection's life, from accept to close, whatever the application's
 * handlers do: an `open` handler that never settles (issue 10, bug 3), an async `upgrade` whose
 * socket goes away (bug 7), socket errors reaching the close information and the `error` handler
 * (bug 7), and the `close` handler's CloseInfo.
 */
import assert from 'node:assert/strict'
import { Buffer } from 'node:buffer'
import type { Socket } from 'node:net'
import { after, describe, it } from 'node:test'
import type { CloseInfo, ServerErrorKind } from '../../src/index.js'
import {
  disposeAll,
  EventQueue,
  handshakeRequest,
  once,
  openClient,
  RawClient,
  startServer,
  waitUntil,
  withTimeout,
} from './helpers.js'

after(disposeAll)

describe('an open handler that never settles', () => {
  it('the peer leaving is seen: the close handler runs and clients.size drops to 0', async () => {
    const closes = new EventQueue<number>()
    const { server, url } = await startServer({
      open: () => new Promise(() => {}),
      close: (_ws, code) => closes.push(code),
    })
    const client = await openClient(url)
    await waitUntil(() => server.clients.size === 1, 2000, 'the server to count the connection')
    client.terminate()
    assert.equal(await closes.next(2000, 'the close handler'), 1006)
    assert.equal(server.clients.size, 0)
  })

  it('server.close() completes within closeTimeout', async () => {
    const closes = new EventQueue<number>()
    const { server, url } = await startServer({
      open: () => new Promise(() => {}),
      close: (_ws, code) => closes.push(code),
      closeTimeout: 200,
    })
    await openClient(url)
    await waitUntil(() => server.clients.size === 1, 2000, 'the server to count the connection')
    // Nothing is read from the socket while open is pending, so the client's close echo is never
    // seen: the close timer must destroy the socket, and that close must be observed.
    await withTimeout(server.close(), 2000, 'server.close()')
    assert.equal(await closes.next(100, 'the close handler'), 1006)
  })
})

describe('an async upgrade whose socket closes while the application decides', () => {
  it('releases its maxConnections slot at once and counts no 503', async () => {
    const sockets = new EventQueue<Socket>()
    let calls = 0
    const { server, port, url } = await startServer<string>({
      maxConnections: 1,
      handshakeTimeout: 60_000,
      upgrade(request) {
        calls++
        if (calls === 1) {
          sockets.push(request.socket)
          return new Promise<string>(() => {})
        }
        return 'second'
      },
    })
    const raw = await RawClient.connect(port)
    raw.write(handshakeRequest())
    const serverSide = await sockets.next(2000, 'the first upgrade call')
    const serverClosed = once(serverSide, 'close', 2000)
    raw.destroy()
    await serverClosed
    // The second handshake would get 503 "Too many connections" if the first still held its slot.
    const second = await openClient(url)
    assert.equal(second.readyState, 1)
    assert.deepEqual(server.stats().handshakeRejections, {})
  })

  it('counts no 503 for it when handshakeTimeout passes', async () => {
    const sockets = new EventQueue<Socket>()
    const { server, port } = await startServer({
      handshakeTimeout: 100,
      upgrade(request) {
        sockets.push(request.socket)
        return new Promise<undefined>(() => {})
      },
    })
    const gone = await RawClient.connect(port)
    gone.write(handshakeRequest())
    const goneSide = await sockets.next(2000, 'the first upgrade call')
    const goneClosed = once(goneSide, 'close', 2000)
    gone.destroy()
    await goneClosed
    // A second handshake that stays, started later with the same timeout: its 503 proves that
    // the first one's timer, had it been left running, would have fired by now (timers of equal
    // duration fire in the order they were set).
    const stays = await RawClient.connect(port)
    stays.write(handshakeRequest())
    assert.equal((await stays.readHead(2000)).status, 503)
    assert.deepEqual(server.stats().handshakeRejections, { '503': 1 })
  })
})

describe('socket errors', () => {
  it('reach the close handler (CloseInfo.error) and the error handler as a transport error', async () => {
    const closes = new EventQueue<CloseInfo>()
    const errors = new EventQueue<{ error: unknown; kind: ServerErrorKind }>()
    const opened = new EventQueue<Socket>()
    const { url } = await startServer({
      open(ws) {
        opened.push((ws as unknown as { driver: { socket: Socket } }).driver.socket)
      },
      close: (_ws, _code, _reason, info) => closes.push(info),
      error: (error, _ws, kind) => errors.push({ error, kind }),
    })
    await openClient(url)
    const socket = await opened.next(2000, 'the open handler')
    // An error as Node reports a reset: emitted on the socket, which is then destroyed.
    const reset = Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' })
    socket.destroy(reset)
    const info = await closes.next(2000, 'the close handler')
    assert.equal(info.code, 1006)
    assert.equal(info.wasClean, false)
    assert.equal(info.error, reset)
    const reported = await errors.next(2000, 'the error handler')
    assert.equal(reported.error, reset)
    assert.equal(reported.kind, 'transport')
  })
})

describe('the close handler', () => {
  it('gets CloseInfo as its fourth argument: wasClean after a closing handshake', async () => {
    const closes = new EventQueue<{ code: number; reason: string; info: CloseInfo }>()
    const { url } = await startServer({
      close: (_ws, code, reason, info) => closes.push({ code, reason, info }),
    })
    const client = await openClient(url)
    client.close(4000, 'bye')
    const { code, reason, info } = await closes.next(2000, 'the close handler')
    assert.equal(code, 4000)
    assert.equal(reason, 'bye')
    assert.deepEqual(info, { code: 4000, reason: 'bye', wasClean: true, error: undefined })
  })

  it('says wasClean: false and carries the protocol error after a peer fault', async () => {
    const closes = new EventQueue<CloseInfo>()
    const errors = new EventQueue<ServerErrorKind>()
    const { port } = await startServer({
      close: (_ws, _code, _reason, info) => closes.push(info),
      error: (_error, _ws, kind) => errors.push(kind),
    })
    const raw = await RawClient.connect(port)
    raw.write(handshakeRequest())
    await raw.readHead()
    // An unmasked frame from a client: RFC 6455 5.1 says the server MUST close the connection.
    raw.write(Buffer.from([0x81, 0x02, 0x68, 0x69]))
    const info = await closes.next(2000, 'the close handler')
    assert.equal(info.error?.name, 'ProtocolError')
    assert.equal(await errors.next(2000, 'the error handler'), 'protocol')
  })
})
