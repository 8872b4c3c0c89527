/**
 * Topics at scale, with real connections: 1,000 Rally clients on one server. Fan-out of a
 * numbered burst with per-socket order checked; subscribe and unsubscribe in the middle of a
 * burst; half the clients vanishing mid-burst, after which the topic index is exactly the
 * survivors, then empty. And the smaller contracts: ws.publish excludes the sender,
 * ws.isSubscribed and ws.topics.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { createServer, type RallyServer, type ServerWebSocket } from '../../src/index.js'
import { openPeers, type Peer, prng, RawClient, turn, until, within } from './helpers.js'

const CLIENTS = 1000

/** The sequence numbers a peer received, from messages "seq:N". */
function sequence(peer: Peer): number[] {
  return peer.messages.filter((m) => m.startsWith('seq:')).map((m) => Number(m.slice(4)))
}

function range(from: number, to: number): number[] {
  return Array.from({ length: Math.max(0, to - from) }, (_, i) => from + i)
}

describe(`fan-out to ${CLIENTS} connections`, () => {
  let server: RallyServer<{ id: number }>
  let url: string
  let peers: Peer[] = []
  const sockets: ServerWebSocket<{ id: number }>[] = []
  const errors: unknown[] = []
  let serverCloses = 0

  before(async () => {
    server = createServer<{ id: number }>({
      port: 0,
      host: '127.0.0.1',
      heartbeat: false,
      upgrade: (request) => ({ id: Number(new URL(request.url ?? '/', 'http://x').searchParams.get('id')) }),
      open(ws) {
        sockets[ws.data.id] = ws
      },
      close() {
        serverCloses++
      },
      error(error) {
        errors.push(error)
      },
    })
    await within(server.ready(), 3000, 'the server to listen')
    url = `ws://127.0.0.1:${server.port}/`
    peers = await within(
      openPeers((i) => `${url}?id=${i}`, CLIENTS),
      30_000,
      `${CLIENTS} connections`,
    )
    await until(() => sockets.filter(Boolean).length === CLIENTS, 5000, 'every server socket')
  })

  after(async () => {
    for (const peer of peers) peer.ws.terminate()
    await within(server.close(), 10_000, 'server close')
  })

  function clearMessages(): void {
    for (const peer of peers) peer.messages.length = 0
  }

  /** A direct send to every live socket after the burst: once it arrives, so has the burst. */
  async function fence(live: Peer[], ms = 15_000): Promise<void> {
    for (const peer of live) {
      const id = peers.indexOf(peer)
      sockets[id]!.send('end')
    }
    await until(
      () => live.every((peer) => peer.messages.at(-1) === 'end'),
      ms,
      () => `the fence on ${live.filter((p) => p.messages.at(-1) !== 'end').length} sockets`,
    )
  }

  it('delivers 100 numbered messages to every subscriber, all of them, in order', async () => {
    clearMessages()
    for (const ws of sockets) ws.subscribe('all')
    assert.equal(server.subscriberCount('all'), CLIENTS)
    const counts: number[] = []
    for (let seq = 0; seq < 100; seq++) counts.push(server.publish('all', `seq:${seq}`))
    assert.ok(
      counts.every((n) => n === CLIENTS),
      'publish reports every subscriber',
    )
    await until(
      () => peers.every((peer) => peer.messages.length >= 100),
      20_000,
      () => `all 100 messages on every socket (${peers.filter((p) => p.messages.length < 100).length} short)`,
    )
    const expected = range(0, 100)
    for (const [i, peer] of peers.entries()) assert.deepEqual(sequence(peer), expected, `client ${i}`)
    for (const ws of sockets) ws.unsubscribe('all')
    assert.equal(server.subscriberCount('all'), 0)
  })

  it('subscribe and unsubscribe during a burst: a contiguous suffix, a prefix, or everything', async () => {
    clearMessages()
    const TOTAL = 200
    const random = prng(6)
    // A third joins mid-burst, a third leaves mid-burst, a third stays throughout.
    const joinAt = new Map<number, number>()
    const leaveAt = new Map<number, number>()
    for (let id = 0; id < CLIENTS; id++) {
      const at = 1 + Math.floor(random() * (TOTAL - 2))
      if (id % 3 === 0) joinAt.set(id, at)
      else if (id % 3 === 1) {
        leaveAt.set(id, at)
        sockets[id]!.subscribe('burst')
      } else sockets[id]!.subscribe('burst')
    }
    const byIndex = new Map<number, (() => void)[]>()
    for (const [id, at] of joinAt)
      byIndex.set(at, [...(byIndex.get(at) ?? []), () => sockets[id]!.subscribe('burst')])
    for (const [id, at] of leaveAt)
      byIndex.set(at, [...(byIndex.get(at) ?? []), () => sockets[id]!.unsubscribe('burst')])

    // The burst is spread over event-loop turns (10 messages a turn), with the changes between
    // two publishes in the same turn as well as across turns.
    for (let seq = 0; seq < TOTAL; seq++) {
      for (const change of byIndex.get(seq) ?? []) change()
      server.publish('burst', `seq:${seq}`)
      if (seq % 10 === 9) await turn()
    }
    await fence(peers)
    for (const [id, peer] of peers.entries()) {
      const got = sequence(peer)
      if (joinAt.has(id)) assert.deepEqual(got, range(joinAt.get(id)!, TOTAL), `client ${id} joined`)
      else if (leaveAt.has(id)) assert.deepEqual(got, range(0, leaveAt.get(id)!), `client ${id} left`)
      else assert.deepEqual(got, range(0, TOTAL), `client ${id} stayed`)
    }
    assert.equal(server.subscriberCount('burst'), CLIENTS - leaveAt.size)
  })

  it('half the clients vanish mid-burst: survivors get everything, the index keeps only them', async () => {
    clearMessages()
    for (const ws of sockets) if (!ws.isSubscribed('burst')) ws.subscribe('burst')
    assert.equal(server.subscriberCount('burst'), CLIENTS)
    const closesBefore = serverCloses
    const leaving = peers.filter((_, id) => id % 2 === 1)
    const staying = peers.filter((_, id) => id % 2 === 0)
    const TOTAL = 100
    for (let seq = 0; seq < TOTAL; seq++) {
      server.publish('burst', `seq:${seq}`)
      // The leavers reset their connections a few at a time, from seq 20 to seq 69.
      if (seq >= 20 && seq < 70) {
        for (const peer of leaving.slice((seq - 20) * 10, (seq - 19) * 10)) peer.ws.terminate()
      }
      if (seq % 5 === 4) await turn()
    }
    await until(
      () => serverCloses - closesBefore === leaving.length,
      10_000,
      () => `the server to see ${leaving.length} closes (saw ${serverCloses - closesBefore})`,
    )
    await fence(staying)
    for (const peer of staying) assert.deepEqual(sequence(peer), range(0, TOTAL))
    for (const peer of leaving) {
      // What a leaver got before it left is a prefix, in order.
      const got = sequence(peer)
      assert.deepEqual(got, range(0, got.length))
    }
    assert.equal(server.subscriberCount('burst'), staying.length)
    assert.equal(server.stats().connections, staying.length)

    // Everyone leaves: the topic index is empty, nothing left behind.
    for (const peer of staying) peer.ws.close()
    await until(() => server.stats().connections === 0, 10_000, 'every connection to close')
    assert.equal(server.subscriberCount('burst'), 0)
    assert.equal(server.subscriberCount('all'), 0)
    assert.equal(server.topicRegistry.size, 0)
    for (const ws of sockets) assert.deepEqual(ws.topics, [])
    // Resets by peers are routine: nothing was reported as an error.
    assert.deepEqual(errors, [])
  })
})

describe('ws.publish, ws.isSubscribed, ws.topics', () => {
  let server: RallyServer<{ id: number }>
  let peers: Peer[] = []
  const sockets: ServerWebSocket<{ id: number }>[] = []

  before(async () => {
    server = createServer<{ id: number }>({
      port: 0,
      host: '127.0.0.1',
      heartbeat: false,
      upgrade: (request) => ({ id: Number(new URL(request.url ?? '/', 'http://x').searchParams.get('id')) }),
      open(ws) {
        sockets[ws.data.id] = ws
        ws.subscribe('chat')
      },
      message(ws, data) {
        // Publish to the room, then confirm to the sender with a direct send.
        const count = ws.publish('chat', `from ${ws.data.id}: ${String(data)}`)
        ws.send(`published to ${count}`)
      },
    })
    await within(server.ready(), 3000, 'the server to listen')
    peers = await openPeers((i) => `ws://127.0.0.1:${server.port}/?id=${i}`, 3)
  })

  after(async () => {
    for (const peer of peers) peer.ws.terminate()
    await within(server.close(), 10_000, 'server close')
  })

  it('ws.publish reaches every subscriber but the sender', async () => {
    peers[0]!.ws.send('hello')
    await until(
      () =>
        peers[0]!.messages.length === 1 && peers[1]!.messages.length === 1 && peers[2]!.messages.length === 1,
      3000,
      'the publish and the confirmation',
    )
    assert.deepEqual(peers[0]!.messages, ['published to 2'])
    assert.deepEqual(peers[1]!.messages, ['from 0: hello'])
    assert.deepEqual(peers[2]!.messages, ['from 0: hello'])
  })

  it('messages to one socket within one turn leave in one batch (corked), not one write each', async () => {
    const raw = await RawClient.connect(server.port!, '/?id=9')
    try {
      await until(() => sockets[9] !== undefined, 3000, 'the raw socket on the server')
      const ws = sockets[9]!
      for (let i = 0; i < 100; i++) {
        server.publish('chat', `p${i}`)
        ws.send(`s${i}`)
      }
      await until(() => raw.frames.length >= 200, 3000, '200 frames')
      assert.deepEqual(
        raw.frames.map((f) => f.payload.toString()),
        Array.from({ length: 200 }, (_, i) => (i % 2 === 0 ? `p${i / 2}` : `s${(i - 1) / 2}`)),
      )
      // 200 frames, about 1.4 KB: one writev, read in one or two chunks.
      assert.ok(raw.readsWhileCollecting <= 5, `200 frames arrived in ${raw.readsWhileCollecting} reads`)
    } finally {
      raw.destroy()
    }
    await until(() => server.subscriberCount('chat') === 3, 3000, 'the raw socket to leave')
  })

  it('ws.isSubscribed and ws.topics follow subscribe and unsubscribe; closing releases them', async () => {
    const ws = sockets[2]!
    assert.deepEqual(ws.topics, ['chat'])
    assert.equal(ws.subscribe('news'), true)
    assert.equal(ws.subscribe('news'), false, 'already subscribed')
    assert.equal(ws.subscribe('sport'), true)
    assert.deepEqual([...ws.topics].sort(), ['chat', 'news', 'sport'])
    assert.equal(ws.isSubscribed('news'), true)
    assert.equal(ws.isSubscribed('weather'), false)
    assert.equal(ws.isSubscribed('NEWS'), false, 'topics are exact strings')
    assert.equal(ws.unsubscribe('news'), true)
    assert.equal(ws.unsubscribe('news'), false, 'not subscribed any more')
    assert.equal(ws.isSubscribed('news'), false)
    assert.deepEqual([...ws.topics].sort(), ['chat', 'sport'])
    // topics is a copy: changing it changes nothing.
    ws.topics.push('forged')
    assert.equal(ws.isSubscribed('forged'), false)
    assert.equal(server.subscriberCount('sport'), 1)
    assert.equal(server.subscriberCount('chat'), 3)

    peers[2]!.ws.close()
    await until(() => server.subscriberCount('chat') === 2, 3000, 'the close to release the topics')
    assert.equal(server.subscriberCount('sport'), 0)
    assert.deepEqual(ws.topics, [])
    assert.equal(ws.subscribe('late'), false, 'a closed socket cannot subscribe')
    assert.equal(server.subscriberCount('late'), 0)
  })
})
