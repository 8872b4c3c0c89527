/**
 * The public API of issue 10: the `error` handler's kinds (and what is printed without one),
 * `ping()`'s return value on both sides, and `ws.data` inferred from `upgrade`.
 */
import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import type { ServerErrorKind, ServerWebSocket } from '../../src/index.js'
import {
  disposeAll,
  EventQueue,
  handshakeRequest,
  once,
  openClient,
  RawClient,
  startServer,
} from './helpers.js'

after(disposeAll)

describe('the error handler says what kind of error it got', () => {
  it("'handler' for a handler that threw, 'handshake' for an upgrade that threw", async () => {
    const kinds = new EventQueue<ServerErrorKind>()
    const { url, port } = await startServer({
      upgrade(request) {
        if (request.url === '/boom') throw new Error('upgrade failed')
        return undefined
      },
      message() {
        throw new Error('message failed')
      },
      error: (_error, _ws, kind) => kinds.push(kind),
    })
    const client = await openClient(url)
    client.send('hi')
    assert.equal(await kinds.next(2000, 'the handler error'), 'handler')
    const raw = await RawClient.connect(port)
    raw.write(handshakeRequest({ path: '/boom' }))
    assert.equal((await raw.readHead()).status, 500)
    assert.equal(await kinds.next(2000, 'the handshake error'), 'handshake')
  })

  it("'timeout' for an unanswered heartbeat, and without an error handler it is not printed", async (t) => {
    const printed: unknown[] = []
    t.mock.method(console, 'error', (value: unknown) => void printed.push(value))
    const closes = new EventQueue<number>()
    const { port } = await startServer({
      heartbeat: { interval: 50, timeout: 50 },
      close: (_ws, code) => closes.push(code),
    })
    // A raw client reads nothing and answers no ping.
    const raw = await RawClient.connect(port)
    raw.write(handshakeRequest())
    await raw.readHead()
    assert.equal(await closes.next(3000, 'the heartbeat to terminate the silent peer'), 1006)
    assert.deepEqual(printed, [], 'a heartbeat timeout is routine: nothing printed')
  })

  it("'timeout' reaches an error handler", async () => {
    const kinds = new EventQueue<{ kind: ServerErrorKind; name: string }>()
    const { port } = await startServer({
      heartbeat: { interval: 50, timeout: 50 },
      error: (error, _ws, kind) => kinds.push({ kind, name: (error as Error).name }),
    })
    const raw = await RawClient.connect(port)
    raw.write(handshakeRequest())
    await raw.readHead()
    assert.deepEqual(await kinds.next(3000, 'the timeout error'), { kind: 'timeout', name: 'TimeoutError' })
  })
})

describe('ping() returns a send status on both sides', () => {
  it("the client's and the server's: 'sent' while open, 'dropped' once closing has begun", async () => {
    const sockets = new EventQueue<ServerWebSocket>()
    const { url } = await startServer({ open: (ws) => sockets.push(ws) })
    const client = await openClient(url)
    const ws = await sockets.next(2000, 'the open handler')
    assert.equal(client.ping('c'), 'sent')
    assert.equal(ws.ping('s'), 'sent')
    const closed = once(client, 'close', 2000)
    client.close()
    assert.equal(client.ping('late'), 'dropped')
    await closed
    assert.equal(ws.ping('late'), 'dropped')
  })
})

describe('ws.data', () => {
  it('is inferred from upgrade when upgrade comes first (a type error here otherwise)', async () => {
    const users = new EventQueue<string>()
    const { url } = await startServer({
      upgrade: (request) => ({ user: request.url ?? '' }),
      open(ws) {
        // Compiles only if ws.data is { user: string }.
        const user: string = ws.data.user
        users.push(user)
      },
    })
    await openClient(`${url}/ada`)
    assert.equal(await users.next(2000, 'the open handler'), '/ada')
  })
})
