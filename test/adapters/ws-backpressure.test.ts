/**
 * rallyjs/ws under backpressure, as ws behaves (issue 10, bug 7):
 * - a slow peer's messages queue without limit by default (ws never drops), visible in
 *   bufferedAmount; Rally's drop/close policy applies only when `maxBackpressure` is set, and a
 *   dropped send's callback says why (not "not open" on an open socket);
 * - send callbacks wait for a backed-up socket to drain, so createWebSocketStream's writable side
 *   holds writes (Duplex backpressure) instead of piling them into the socket;
 * - createWebSocketStream's readable side pauses the socket with the user's pause when its buffer
 *   is full, whatever other reason (a message being inflated) holds reading at that moment.
 */
import assert from 'node:assert/strict'
import { Buffer } from 'node:buffer'
import { randomBytes } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import type { Duplex } from 'node:stream'
import { after, describe, it } from 'node:test'
import {
  createWebSocketStream,
  type ServerOptions,
  WebSocketServer,
  WebSocket as WsWebSocket,
} from '../../src/adapters/ws/index.js'
import { nextEvent, within } from './helpers.js'

const servers: WebSocketServer[] = []
const clients: WsWebSocket[] = []

after(async () => {
  for (const client of clients) client.terminate()
  for (const wss of servers) {
    await within(wss.closeAll(), 5000, 'closeAll')
    await within(new Promise<void>((resolve) => wss.close(() => resolve())), 3000, 'wss.close')
  }
})

async function listen(options: Omit<ServerOptions, 'port' | 'server' | 'noServer'> = {}): Promise<{
  wss: WebSocketServer
  url: string
}> {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', ...options })
  servers.push(wss)
  await nextEvent(wss, 'listening')
  return { wss, url: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}` }
}

async function pair(
  wss: WebSocketServer,
  url: string,
  options: WsWebSocket.ClientOptions = {},
): Promise<{ client: WsWebSocket; server: WsWebSocket }> {
  const connection = nextEvent<[WsWebSocket]>(wss, 'connection')
  const client = new WsWebSocket(url, options)
  clients.push(client)
  await nextEvent(client, 'open')
  const [server] = await connection
  return { client, server }
}

/** Sends `count` messages of `size` bytes in one turn; resolves with each callback's result. */
function sendMany(ws: WsWebSocket, count: number, size: number): Promise<(Error | undefined)[]> {
  const results: Promise<Error | undefined>[] = []
  for (let i = 0; i < count; i++) {
    const message = Buffer.alloc(size, i % 251)
    results.push(new Promise((resolve) => ws.send(message, resolve)))
  }
  return Promise.all(results)
}

/** Resolves once `ws` has received `count` messages; returns their first bytes. */
function receive(ws: WsWebSocket, count: number): Promise<number[]> {
  return new Promise((resolve) => {
    const firstBytes: number[] = []
    const onMessage = (data: WsWebSocket.RawData): void => {
      firstBytes.push((data as Buffer)[0]!)
      if (firstBytes.length === count) {
        ws.off('message', onMessage)
        resolve(firstBytes)
      }
    }
    ws.on('message', onMessage)
  })
}

const MiB = 1024 * 1024

describe('rallyjs/ws never drops by default, as ws', () => {
  it('24 MiB queued for a peer (over Rally’s 16 MiB default) are all sent: no callback gets an error', async () => {
    const { wss, url } = await listen()
    const { client, server } = await pair(wss, url)
    const received = receive(client, 24)
    const sending = sendMany(server, 24, MiB)
    // All 24 were queued in one turn: the socket holds them, as ws's would.
    assert.ok(server.bufferedAmount > 16 * MiB, `bufferedAmount ${server.bufferedAmount}`)
    const results = await within(sending, 20_000, 'the send callbacks')
    assert.deepEqual(
      results.filter((result) => result !== undefined),
      [],
    )
    assert.deepEqual(
      await within(received, 20_000, 'the messages'),
      Array.from({ length: 24 }, (_, i) => i % 251),
    )
    assert.equal(server.bufferedAmount, 0)
  })

  it('with maxBackpressure set (opt-in), sends over it are dropped and the callback says why', async () => {
    const { wss, url } = await listen({ maxBackpressure: MiB })
    const { client, server } = await pair(wss, url)
    const results = await within(sendMany(server, 4, MiB), 20_000, 'the send callbacks')
    const errors = results.filter((result) => result !== undefined)
    assert.ok(errors.length > 0, 'some sends were dropped')
    assert.equal(server.readyState, WsWebSocket.OPEN)
    assert.match(errors[0]!.message, /dropped.*maxBackpressure/)
    assert.doesNotMatch(errors[0]!.message, /not open/)
    await within(receive(client, 4 - errors.length), 20_000, 'the messages that were sent')
  })

  it("with backpressurePolicy 'close', a peer over the limit is closed with 1008", async () => {
    const { wss, url } = await listen({ maxBackpressure: MiB, backpressurePolicy: 'close' })
    const { client, server } = await pair(wss, url)
    const closed = nextEvent<[number, Buffer]>(client, 'close')
    void sendMany(server, 4, MiB)
    const [code] = await within(closed, 20_000, 'the close')
    assert.equal(code, 1008)
  })

  it('a send after close: the callback names the state, as ws does', async () => {
    const { wss, url } = await listen()
    const { client, server } = await pair(wss, url)
    const serverClosed = nextEvent(server, 'close')
    client.close(1000)
    await within(serverClosed, 3000, 'the close')
    const error = await new Promise<Error | undefined>((resolve) => server.send('late', resolve))
    assert.equal(error?.message, 'WebSocket is not open: readyState 3 (CLOSED)')
  })
})

describe('createWebSocketStream backpressure', () => {
  it("writable side: the Duplex's 'drain' waits for the peer to read once the socket is backed up", async () => {
    const { wss, url } = await listen()
    const { client, server } = await pair(wss, url)
    client.pause()
    let received = 0
    client.on('message', () => received++)
    const duplex = createWebSocketStream(server)
    const chunk = Buffer.alloc(64 * 1024, 7)
    // Write (honouring the Duplex's own backpressure) until the socket is backed up: after a turn's
    // output has been handed to the kernel, bytes are still waiting — the peer reads nothing and
    // the kernel's buffers are full.
    let backedUp = false
    for (let written = 0; written < 256 * MiB && !backedUp; written += chunk.length) {
      if (duplex.write(chunk)) continue
      await new Promise((resolve) => setImmediate(resolve))
      if (server.bufferedAmount > 64 * 1024) backedUp = true
      else if (duplex.writableNeedDrain)
        await within(nextEvent(duplex, 'drain'), 20_000, "the Duplex's drain")
    }
    assert.ok(backedUp, 'the socket backed up')
    assert.equal(received, 0)
    // ws calls a send back once its data is written: the Duplex holds further writes meanwhile.
    assert.equal(duplex.writableNeedDrain, true, 'the Duplex holds writes while the socket is backed up')
    const drained = nextEvent(duplex, 'drain')
    client.resume()
    await within(drained, 20_000, "the Duplex's drain")
    assert.ok(received > 0, 'the Duplex drained after the peer read')
    duplex.destroy()
  })

  it('readable side: a full Duplex pauses the socket even while a message is being inflated', async () => {
    const { wss, url } = await listen({ perMessageDeflate: true })
    const connection = nextEvent<[WsWebSocket]>(wss, 'connection')
    const client = new WsWebSocket(url, { perMessageDeflate: true })
    clients.push(client)
    await nextEvent(client, 'open')
    const [server] = await connection
    assert.match(server.extensions, /permessage-deflate/)
    let delivered = 0
    server.on('message', () => delivered++)
    const duplex: Duplex = createWebSocketStream(server)
    const firstDelivered = nextEvent(server, 'message')
    // A message whose compressed size passes SYNC_LIMIT (64 KiB) is inflated off the event loop,
    // reading paused meanwhile: the moment the old stream mistook for its own pause. Each message
    // (160 KiB of hex, about 90 KiB compressed) is larger than the Duplex's buffer (16 KiB).
    const size = 160 * 1024
    const count = 20
    for (let i = 0; i < count; i++) {
      const message = Buffer.from(randomBytes(size / 2).toString('hex'))
      message[0] = i
      client.send(message)
    }
    await within(firstDelivered, 10_000, 'the first message')
    // Let time pass the only way a test may: round trips on another connection, during which a
    // socket still reading would deliver more of the 20 messages into the full Duplex.
    const other = await pair(wss, url, { perMessageDeflate: false })
    other.server.on('message', (data) => other.server.send(data))
    for (let i = 0; i < 200 && delivered <= 2; i++) {
      const echoed = nextEvent(other.client, 'message')
      other.client.send(`round trip ${i}`)
      await within(echoed, 5000, 'a round trip')
    }
    // One message fills the Duplex; one more may already be inflating when the socket pauses.
    assert.ok(delivered <= 2, `${delivered} messages were read into a Duplex nobody read`)
    assert.equal(server.isPaused, true)
    // Reading the Duplex resumes the socket: every message arrives, in order, none lost.
    let bytes = 0
    const firstBytes: number[] = []
    await within(
      new Promise<void>((resolve) => {
        duplex.on('data', (chunk: Buffer) => {
          if (bytes % size === 0) firstBytes.push(chunk[0]!)
          bytes += chunk.length
          if (bytes === count * size) resolve()
        })
      }),
      20_000,
      'all the messages through the Duplex',
    )
    assert.deepEqual(
      firstBytes,
      Array.from({ length: count }, (_, i) => i),
    )
  })
})
