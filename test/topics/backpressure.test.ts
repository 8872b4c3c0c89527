/**
 * One deliberately stalled subscriber among fast ones: a raw TCP client that completes the
 * handshake and then never reads. With `maxBackpressure` at 256 KiB, publishing thousands of
 * 16 KiB messages must not delay the fast subscribers, and the stalled one is handled by the
 * policy — 'drop' (its queue stays bounded, drops are counted) or 'close' (it is closed).
 */
import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import { createServer, type RallyServer, type ServerWebSocket } from '../../src/index.js'
import { openPeers, type Peer, RawClient, turn, until, within } from './helpers.js'

const MAX_BACKPRESSURE = 256 * 1024
const MESSAGE = 16 * 1024
/** 32 MiB in all: far more than the kernel buffers of a stalled loopback connection hold. */
const COUNT = 2048
/** Messages per turn: 8 × 16 KiB stays under the limit for a subscriber that keeps up. */
const BATCH = 8

interface Setup {
  server: RallyServer<{ stalled: boolean }>
  fast: Peer[]
  stalled: RawClient
  stalledSocket: ServerWebSocket<{ stalled: boolean }>
  closes: { stalled: boolean; code: number }[]
}

const cleanups: (() => Promise<void>)[] = []
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup()
})

async function setUp(policy: 'drop' | 'close'): Promise<Setup> {
  const closes: { stalled: boolean; code: number }[] = []
  let stalledSocket: ServerWebSocket<{ stalled: boolean }> | undefined
  const server = createServer<{ stalled: boolean }>({
    port: 0,
    host: '127.0.0.1',
    heartbeat: false,
    maxBackpressure: MAX_BACKPRESSURE,
    backpressurePolicy: policy,
    // The stalled peer cannot finish a closing handshake; do not wait long for it.
    closeTimeout: 300,
    upgrade: (request) => ({ stalled: request.url === '/stalled' }),
    open(ws) {
      ws.subscribe('feed')
      if (ws.data.stalled) stalledSocket = ws
    },
    close(ws, code) {
      closes.push({ stalled: ws.data.stalled, code })
    },
  })
  await within(server.ready(), 3000, 'the server to listen')
  const port = server.port!
  const stalled = await RawClient.connect(port, '/stalled')
  // Never read again: the kernel's buffers fill, then the server's queue for this socket grows.
  stalled.socket.pause()
  const fast = await openPeers(() => `ws://127.0.0.1:${port}/fast`, 3)
  await until(
    () => stalledSocket !== undefined && server.subscriberCount('feed') === 4,
    3000,
    'subscriptions',
  )
  cleanups.push(async () => {
    stalled.destroy()
    for (const peer of fast) peer.ws.terminate()
    await within(server.close(), 10_000, 'server close')
  })
  return { server, fast, stalled, stalledSocket: stalledSocket!, closes }
}

/**
 * Publishes COUNT numbered 16 KiB messages, BATCH per turn, waiting after each batch until the
 * fast subscribers have it all — the pace of the fastest consumers, never of the stalled one.
 * Returns the largest queue seen on the stalled socket and the longest wait for the fast ones.
 */
async function publishAll(setup: Setup): Promise<{ maxQueued: number; slowestBatchMs: number }> {
  const { server, fast, stalledSocket } = setup
  const filler = 'x'.repeat(MESSAGE - 16)
  let maxQueued = 0
  let slowestBatchMs = 0
  for (let seq = 0; seq < COUNT; seq += BATCH) {
    for (let i = seq; i < seq + BATCH; i++) {
      const started = performance.now()
      server.publish('feed', `${String(i).padStart(8, '0')}:${filler}`)
      // publish never blocks on a slow subscriber.
      assert.ok(performance.now() - started < 250, 'publish returned at once')
      maxQueued = Math.max(maxQueued, stalledSocket.bufferedAmount)
    }
    const started = performance.now()
    await until(
      () => fast.every((peer) => peer.messages.length >= seq + BATCH),
      5000,
      () => `the fast subscribers to get message ${seq + BATCH - 1}`,
    )
    slowestBatchMs = Math.max(slowestBatchMs, performance.now() - started)
    await turn()
  }
  return { maxQueued, slowestBatchMs }
}

function assertFastGotEverything(fast: Peer[]): void {
  for (const peer of fast) {
    assert.equal(peer.messages.length, COUNT)
    for (let i = 0; i < COUNT; i++) {
      if (!peer.messages[i]!.startsWith(`${String(i).padStart(8, '0')}:`))
        assert.fail(`fast subscriber: message ${i} out of order`)
    }
  }
}

describe('a stalled subscriber among fast ones', () => {
  it("'drop': the fast ones get everything promptly; the stalled one's queue stays bounded", async () => {
    const setup = await setUp('drop')
    const { server, fast, stalledSocket } = setup
    const { maxQueued, slowestBatchMs } = await within(publishAll(setup), 40_000, 'the publishing')
    assertFastGotEverything(fast)
    assert.ok(slowestBatchMs < 3000, `the fast subscribers waited at most ${slowestBatchMs.toFixed(0)} ms`)
    const stats = server.stats()
    assert.ok(stats.backpressureDrops > 0, 'messages to the stalled subscriber were dropped')
    // Only the stalled socket dropped anything: 3 fast × COUNT delivered in full.
    assert.ok(stats.backpressureDrops < COUNT, `drops: ${stats.backpressureDrops}`)
    // The memory the server holds for it is bounded by the limit plus one message (the check
    // is made before a message is queued).
    assert.ok(
      maxQueued <= MAX_BACKPRESSURE + MESSAGE + 16,
      `largest queue for the stalled socket: ${maxQueued} bytes`,
    )
    assert.equal(stalledSocket.readyState, 1, "'drop' keeps the connection open")
    assert.equal(stats.backpressureCloses, 0)
  })

  it("'close': the stalled subscriber is closed, the fast ones get everything", async () => {
    const setup = await setUp('close')
    const { server, fast, closes } = setup
    await within(publishAll(setup), 40_000, 'the publishing')
    assertFastGotEverything(fast)
    assert.ok(server.stats().backpressureCloses > 0, 'the policy closed a socket')
    assert.equal(server.stats().backpressureCloses, 1, 'only the stalled one')
    await until(() => closes.some((c) => c.stalled), 5000, 'the close handler for the stalled socket')
    assert.deepEqual(
      closes.filter((c) => !c.stalled),
      [],
      'no fast subscriber was closed',
    )
    assert.equal(server.subscriberCount('feed'), 3)
  })
})
