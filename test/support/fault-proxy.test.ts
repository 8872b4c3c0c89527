/**
 * The fault proxy itself, over real sockets: a plain TCP target that records what it receives,
 * and raw clients through the proxy. Each fault is checked for what it must do and for what it
 * must leave alone.
 */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import net from 'node:net'
import { after, afterEach, describe, test } from 'node:test'
import { FaultProxy } from './fault-proxy.js'

/** A TCP target that keeps the sockets it accepted, for the test to read from and write to. */
class Target {
  readonly sockets: net.Socket[] = []
  private readonly server = net.createServer({ allowHalfOpen: true }, (socket) => {
    socket.on('error', () => {})
    this.sockets.push(socket)
    this.server.emit('accepted', socket)
  })

  async listen(): Promise<number> {
    this.server.listen(0, '127.0.0.1')
    await once(this.server, 'listening')
    return (this.server.address() as net.AddressInfo).port
  }

  /** The next socket accepted (or one already accepted and not yet taken). */
  async nextSocket(taken: number): Promise<net.Socket> {
    if (this.sockets.length > taken) return this.sockets[taken]!
    const [socket] = (await once(this.server, 'accepted')) as [net.Socket]
    return socket
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy()
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }
}

/** Reads from a socket until `length` bytes arrived, recording the chunk sizes. */
function readBytes(socket: net.Socket, length: number): Promise<{ data: Buffer; chunks: number[] }> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = []
    const chunks: number[] = []
    let total = 0
    const onData = (chunk: Buffer): void => {
      parts.push(chunk)
      chunks.push(chunk.length)
      total += chunk.length
      if (total >= length) {
        socket.off('data', onData)
        socket.off('close', onClose)
        resolve({ data: Buffer.concat(parts), chunks })
      }
    }
    const onClose = (): void => reject(new Error(`socket closed after ${total} of ${length} bytes`))
    socket.on('data', onData)
    socket.on('close', onClose)
  })
}

/** Resolves when the socket closed (events.once would reject on a reset's 'error' first). */
function closed(socket: net.Socket): Promise<void> {
  return new Promise((resolve) => socket.once('close', () => resolve()))
}

const cleanups: (() => Promise<void> | void)[] = []

async function setup(): Promise<{ proxy: FaultProxy; target: Target }> {
  const target = new Target()
  const targetPort = await target.listen()
  const proxy = await FaultProxy.start({ targetPort })
  cleanups.push(
    () => proxy.close(),
    () => target.close(),
  )
  return { proxy, target }
}

/** A client through the proxy, with the target's side of the same connection. */
async function connectThrough(
  proxy: FaultProxy,
  target: Target,
): Promise<{ client: net.Socket; server: net.Socket; openedAt: number }> {
  const openedAt = Date.now()
  const taken = target.sockets.length
  const relayed = proxy.counters.accepted
  const client = net.connect({ port: proxy.port, host: '127.0.0.1', allowHalfOpen: true })
  client.on('error', () => {})
  cleanups.push(() => void client.destroy())
  await once(client, 'connect')
  const server = await target.nextSocket(taken)
  // The relay exists once the proxy saw the target accept: faults then apply to it.
  if (proxy.counters.accepted === relayed) await once(proxy, 'connection')
  return { client, server, openedAt }
}

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})
after(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

describe('FaultProxy', () => {
  test('relays both directions byte for byte and counts the bytes', async () => {
    const { proxy, target } = await setup()
    const { client, server } = await connectThrough(proxy, target)
    const upstream = Buffer.alloc(100_000, 'u')
    const receivedUp = readBytes(server, upstream.length)
    client.write(upstream)
    assert.deepEqual((await receivedUp).data, upstream)
    const receivedDown = readBytes(client, 5)
    server.write('hello')
    assert.equal((await receivedDown).data.toString(), 'hello')
    assert.equal(proxy.counters.forwarded.upstream, 100_000)
    assert.equal(proxy.counters.forwarded.downstream, 5)
    assert.equal(proxy.counters.accepted, 1)
    assert.equal(proxy.counters.active, 1)
  })

  test('passes a FIN through and frees the relay when both sides end', async () => {
    const { proxy, target } = await setup()
    const { client, server } = await connectThrough(proxy, target)
    const closed = once(proxy, 'closed')
    client.end()
    await once(server, 'end')
    server.end()
    await once(client, 'end')
    await closed
    assert.equal(proxy.counters.active, 0)
  })

  test('cutAll resets every connection: both ends see it close', async () => {
    const { proxy, target } = await setup()
    const first = await connectThrough(proxy, target)
    const second = await connectThrough(proxy, target)
    const closes = [first.client, first.server, second.client, second.server].map(closed)
    assert.equal(proxy.cutAll(), 2)
    await Promise.all(closes)
    assert.equal(proxy.counters.cut, 2)
    assert.equal(proxy.counters.active, 0)
    // The proxy still accepts new connections after a cut.
    const third = await connectThrough(proxy, target)
    const received = readBytes(third.server, 2)
    third.client.write('ok')
    assert.equal((await received).data.toString(), 'ok')
  })

  test('delay holds every chunk at least the delay, and keeps order', async () => {
    const { proxy, target } = await setup()
    const { client, server } = await connectThrough(proxy, target)
    proxy.delay(60, 'upstream')
    const received = readBytes(server, 6)
    const sentAt = Date.now()
    client.write('ab')
    client.write('cd')
    client.write('ef')
    const { data } = await received
    // A lower bound, not a speed assertion: the bytes cannot arrive before the delay (timers may
    // fire up to a millisecond early from rounding, hence the slack).
    assert.ok(Date.now() - sentAt >= 58, `arrived after ${Date.now() - sentAt} ms`)
    assert.equal(data.toString(), 'abcdef')
    // The other direction is not delayed by an upstream delay: it may not be the one held.
    assert.equal(proxy.faultsFor('downstream').delayMs, 0)
  })

  test('a black hole swallows one direction silently and keeps the connection', async () => {
    const { proxy, target } = await setup()
    const { client, server } = await connectThrough(proxy, target)
    proxy.blackHole('upstream')
    let serverGot = ''
    server.on('data', (chunk: Buffer) => (serverGot += chunk.toString()))
    client.write('lost')
    // The other direction still works; once its bytes arrived, the proxy had long read 'lost'
    // (it was written first, on the same event loop): wait for the counter to prove it.
    const down = readBytes(client, 4)
    server.write('pong')
    assert.equal((await down).data.toString(), 'pong')
    while (proxy.counters.swallowed.upstream < 4) await new Promise((r) => setImmediate(r))
    assert.equal(proxy.counters.swallowed.upstream, 4)
    assert.equal(serverGot, '')
    assert.equal(proxy.counters.active, 1, 'the connection is kept')
    assert.ok(!client.destroyed && !server.destroyed)
    // Lifted: later bytes flow again; the swallowed ones are gone for good.
    proxy.blackHole('upstream', false)
    const up = readBytes(server, 5)
    client.write('after')
    assert.equal((await up).data.toString(), 'after')
  })

  test('a black hole applies to connections opened while it stands', async () => {
    const { proxy, target } = await setup()
    proxy.blackHole('downstream')
    const { client, server } = await connectThrough(proxy, target)
    server.write('nothing')
    const up = readBytes(server, 2)
    client.write('hi')
    assert.equal((await up).data.toString(), 'hi')
    while (proxy.counters.swallowed.downstream < 7) await new Promise((r) => setImmediate(r))
    assert.equal(proxy.counters.forwarded.downstream, 0)
  })

  test('blackHoleEstablished kills the connections open now and lets new ones through', async () => {
    const { proxy, target } = await setup()
    const old = await connectThrough(proxy, target)
    assert.equal(proxy.blackHoleEstablished('both'), 1)
    old.client.write('lost')
    const fresh = await connectThrough(proxy, target)
    const up = readBytes(fresh.server, 5)
    fresh.client.write('fresh')
    assert.equal((await up).data.toString(), 'fresh')
    const down = readBytes(fresh.client, 4)
    fresh.server.write('back')
    assert.equal((await down).data.toString(), 'back')
    while (proxy.counters.swallowed.upstream < 4) await new Promise((r) => setImmediate(r))
    assert.ok(!old.client.destroyed && !old.server.destroyed, 'the dead connection is kept')
    assert.equal(proxy.counters.active, 2)
  })

  test('halfOpen ends one direction (a FIN to its receiver); the other keeps flowing', async () => {
    const { proxy, target } = await setup()
    const { client, server } = await connectThrough(proxy, target)
    const clientEnded = once(client, 'end')
    assert.equal(proxy.halfOpen('downstream'), 1)
    await clientEnded
    // Client → target still flows over the same connection.
    const up = readBytes(server, 5)
    client.write('still')
    assert.equal((await up).data.toString(), 'still')
    // What the target sends now is swallowed.
    server.write('gone')
    const up2 = readBytes(server, 2)
    client.write('ok')
    await up2
    while (proxy.counters.swallowed.downstream < 4) await new Promise((r) => setImmediate(r))
    assert.equal(proxy.counters.swallowed.downstream, 4)
  })

  test('slowDrip forwards at most N bytes per tick, in order', async () => {
    const { proxy, target } = await setup()
    const { client, server } = await connectThrough(proxy, target)
    proxy.slowDrip(7, 1, 'downstream')
    const payload = Buffer.from('0123456789abcdefghijklmnopqrstuvwxyz')
    // What the proxy wrote, write by write: the client's reads may join several writes that
    // arrived between two reads, so they cannot show the drip.
    const writes: number[] = []
    const onForwarded = (direction: string, bytes: number) => {
      if (direction === 'downstream') writes.push(bytes)
    }
    proxy.on('forwarded', onForwarded)
    const received = readBytes(client, payload.length)
    server.write(payload)
    const { data } = await received
    proxy.off('forwarded', onForwarded)
    assert.deepEqual(data, payload)
    assert.ok(
      writes.every((size) => size <= 7),
      `writes ${writes.join(',')}`,
    )
    assert.ok(writes.length >= Math.ceil(payload.length / 7), `writes ${writes.join(',')}`)
    // Removed: the next write goes through whole.
    proxy.slowDrip(undefined, 1, 'downstream')
    const whole = readBytes(client, payload.length)
    server.write(payload)
    assert.deepEqual((await whole).data, payload)
  })

  test('refuse resets new connections and leaves the established ones alone', async () => {
    const { proxy, target } = await setup()
    const { client, server } = await connectThrough(proxy, target)
    proxy.refuse()
    const refusedClient = net.connect({ port: proxy.port, host: '127.0.0.1' })
    refusedClient.on('error', () => {})
    cleanups.push(() => void refusedClient.destroy())
    await closed(refusedClient)
    assert.equal(proxy.counters.refused, 1)
    assert.equal(target.sockets.length, 1, 'the target never saw the refused connection')
    const up = readBytes(server, 3)
    client.write('yes')
    assert.equal((await up).data.toString(), 'yes')
    // heal() accepts again.
    proxy.heal()
    const again = await connectThrough(proxy, target)
    const received = readBytes(again.server, 1)
    again.client.write('!')
    assert.equal((await received).data.toString(), '!')
  })

  test('cutAfter resets each connection at its age, busy or not, and heal lifts it', async () => {
    const { proxy, target } = await setup()
    const old = await connectThrough(proxy, target)
    proxy.cutAfter(300)
    const young = await connectThrough(proxy, target)
    // Traffic does not keep a connection alive: the age counts, not idleness.
    const received = readBytes(young.server, 4)
    young.client.write('busy')
    assert.equal((await received).data.toString(), 'busy')
    const oldClosed = closed(old.client)
    const youngClosed = closed(young.client)
    await oldClosed
    await youngClosed
    assert.ok(Date.now() - young.openedAt >= 300, 'the young connection lived its whole age')
    assert.equal(proxy.counters.cut, 2)
    proxy.heal()
    const healed = await connectThrough(proxy, target)
    const stillOpen = readBytes(healed.server, 2)
    healed.client.write('ok')
    assert.equal((await stillOpen).data.toString(), 'ok')
    assert.equal(proxy.counters.cut, 2)
  })

  test('rejects nonsense fault settings with a clear error', async () => {
    const { proxy } = await setup()
    assert.throws(() => proxy.delay(-1), /delay must be >= 0/)
    assert.throws(() => proxy.slowDrip(0), /positive whole number/)
    assert.throws(() => proxy.cutAfter(0), /positive age/)
  })
})
