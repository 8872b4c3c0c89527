/**
 * Peers that attack memory and handles rather than the protocol: one that never reads, one that
 * floods without reading the replies, one that sends a never-ending message in tiny fragments,
 * and 10,000 connections dropped abruptly. Memory must stay bounded, nothing may leak, and two
 * well-behaved clients on the same server keep exchanging messages without losing one.
 */
import assert from 'node:assert/strict'
import { Buffer } from 'node:buffer'
import { connect, type Socket } from 'node:net'
import { describe, test } from 'node:test'
import {
  createServer,
  ProtocolError,
  ProtocolErrorCode,
  type RallyServer,
  type SendStatus,
  type ServerOptions,
  type ServerWebSocket,
} from '../../src/index.js'
import {
  activeCounts,
  clientFrame,
  echoHandlers,
  installGuards,
  MiB,
  memoryNow,
  memorySample,
  newLog,
  Opcode,
  RawPeer,
  type ServerLog,
  trackTimers,
  upgradeRequest,
  Witnesses,
  waitFor,
  withTimeout,
} from './helpers.js'

installGuards(64)

interface Harness {
  server: RallyServer
  port: number
  log: ServerLog
  witnesses: Witnesses
  /** Server sockets of connections to /hostile, in order of arrival. */
  hostile: ServerWebSocket[]
  drains: number
  /** Extra work for the open handler. */
  onOpen?: (ws: ServerWebSocket) => void
}

/** Runs `body` against a fresh echo server with two witnesses; checks them and closes all after. */
async function withServer(
  options: Partial<ServerOptions<undefined>>,
  body: (h: Harness) => Promise<void>,
): Promise<void> {
  const log = newLog()
  const echo = echoHandlers<undefined>(log)
  const h = { hostile: [] as ServerWebSocket[], drains: 0, log } as Harness
  h.server = createServer<undefined>({
    port: 0,
    host: '127.0.0.1',
    ...echo,
    open(ws) {
      echo.open!(ws)
      if (ws.url === '/hostile') h.hostile.push(ws)
      h.onOpen?.(ws)
    },
    drain() {
      h.drains++
    },
    ...options,
  })
  try {
    await h.server.ready()
    h.port = h.server.port!
    h.witnesses = await Witnesses.start(`ws://127.0.0.1:${h.port}/`)
    await body(h)
    await h.witnesses.stop()
  } finally {
    await h.witnesses?.close().catch(() => {})
    await withTimeout(h.server.close(), 10_000, 'server close')
  }
}

async function hostilePeer(h: Harness): Promise<{ peer: RawPeer; ws: ServerWebSocket }> {
  const count = h.hostile.length
  const peer = await RawPeer.connect(h.port, { path: '/hostile' })
  await waitFor(() => h.hostile.length > count, 2000, 'server sees the hostile peer')
  return { peer, ws: h.hostile[count]! }
}

function drainOrTimeout(socket: Socket, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      socket.removeListener('drain', onDrain)
      resolve(false)
    }, ms)
    const onDrain = (): void => {
      clearTimeout(timer)
      resolve(true)
    }
    socket.once('drain', onDrain)
  })
}

describe('a peer that never reads', { timeout: 60_000 }, () => {
  test("policy 'drop': send returns 'dropped' past maxBackpressure, memory bounded, no gap before the drop", async () => {
    const maxBackpressure = 4 * MiB
    await withServer({ maxBackpressure }, async (h) => {
      const { peer, ws } = await hostilePeer(h)
      try {
        peer.socket.pause()
        const before = await memoryNow()
        const statuses: SendStatus[] = []
        const size = 256 * 1024
        // 800 fresh 256 KiB messages = 200 MiB attempted.
        for (let i = 0; i < 800; i++) {
          statuses.push(ws.send(Buffer.alloc(size, i & 0xff)))
          assert.ok(
            ws.bufferedAmount <= maxBackpressure + size + 64 * 1024,
            `bufferedAmount ${ws.bufferedAmount}`,
          )
          if (i % 16 === 15) await new Promise((r) => setImmediate(r))
        }
        const grown = (await memoryNow()) - before
        const accepted = statuses.indexOf('dropped')
        assert.ok(accepted > 0, 'some messages were accepted')
        assert.ok(
          statuses.slice(0, accepted).every((s) => s !== 'dropped'),
          'no message dropped before the first drop',
        )
        assert.ok(statuses.slice(0, accepted).includes('buffered'), "'buffered' came before 'dropped'")
        const dropped = statuses.filter((s) => s === 'dropped').length
        assert.ok(dropped >= 700, `only ${dropped} of 800 dropped`)
        assert.equal(h.server.stats().backpressureDrops, dropped)
        assert.equal(ws.readyState, 1, "policy 'drop' keeps the socket open")
        assert.ok(grown < 40 * MiB, `memory grew by ${(grown / MiB).toFixed(1)} MiB for 200 MiB attempted`)

        // The peer reads again: everything accepted arrives, in order; drain fires; sending works.
        const acceptedIndexes = statuses.flatMap((s, i) => (s === 'dropped' ? [] : [i]))
        peer.socket.resume()
        await peer.until(() => peer.frames.length >= acceptedIndexes.length, 10_000, 'the buffered messages')
        assert.deepEqual(
          peer.frames.map((f) => f.payload[0]),
          acceptedIndexes.map((i) => i & 0xff),
        )
        assert.ok(peer.frames.every((f) => f.payload.length === size && f.opcode === Opcode.Binary))
        await waitFor(() => h.drains > 0, 2000, 'the drain handler')
        assert.equal(ws.send('again'), 'sent')
      } finally {
        peer.destroy()
      }
    })
  })

  test("policy 'close': the socket is closed with 1008 once over maxBackpressure", async () => {
    await withServer({ maxBackpressure: 2 * MiB, backpressurePolicy: 'close' }, async (h) => {
      const { peer, ws } = await hostilePeer(h)
      try {
        peer.socket.pause()
        const statuses: SendStatus[] = []
        for (let i = 0; i < 100 && !statuses.includes('dropped'); i++) {
          statuses.push(ws.send(Buffer.alloc(256 * 1024, i)))
          if (i % 8 === 7) await new Promise((r) => setImmediate(r))
        }
        assert.equal(statuses.at(-1), 'dropped')
        assert.equal(h.server.stats().backpressureCloses, 1)
        assert.equal(h.server.stats().backpressureDrops, 0)
        assert.equal(ws.send('more'), 'dropped', 'nothing is sent once closing')
        peer.socket.resume()
        const close = await peer.expectCloseFrame(10_000)
        assert.equal(close.code, 1008)
        assert.equal(close.before.length, statuses.length - 1, 'every accepted message came before the close')
        await peer.expectTcpClosed()
      } finally {
        peer.destroy()
      }
    })
  })
})

describe('a peer that floods without reading the echoes', { timeout: 60_000 }, () => {
  test('reading from it pauses (readPauseThreshold), then ~500 MiB flow with memory bounded', async (t) => {
    await withServer({}, async (h) => {
      const { peer, ws } = await hostilePeer(h)
      try {
        peer.socket.pause()
        const size = 256 * 1024
        const frame = clientFrame(Opcode.Binary, Buffer.alloc(size, 0x5a))
        const before = await memoryNow()
        let peak = 0
        const sampler = setInterval(() => {
          peak = Math.max(peak, memorySample() - before)
        }, 20)
        try {
          // Phase 1: the peer reads nothing. The server must stop reading from it.
          let written = 0
          let stalled = false
          while (written < 500 * MiB) {
            written += frame.length
            if (!peer.socket.write(frame) && !(await drainOrTimeout(peer.socket, 1000))) {
              stalled = true
              break
            }
          }
          assert.ok(stalled, 'the flood must stall: the server stops reading')
          assert.ok(ws.isPaused, 'the server paused reading from the flooding peer')
          const bytesIn = h.server.stats().bytesIn
          assert.ok(bytesIn < 32 * MiB, `server took in ${(bytesIn / MiB).toFixed(1)} MiB while paused`)
          assert.ok(written < 100 * MiB, `flooder wrote ${(written / MiB).toFixed(1)} MiB before stalling`)
          t.diagnostic(
            `stalled after ${(written / MiB).toFixed(1)} MiB written, ${(bytesIn / MiB).toFixed(1)} MiB taken in by the server`,
          )
          await h.witnesses.checkpoint('while the flood is stalled')

          // Phase 2: the peer reads (and discards) the echoes; the flood goes on to 500 MiB.
          peer.keepFrames = false
          peer.socket.resume()
          while (written < 500 * MiB) {
            written += frame.length
            if (!peer.socket.write(frame))
              assert.ok(await drainOrTimeout(peer.socket, 5000), 'the flood moves once the peer reads')
          }
          const expected = (written / frame.length) * (size + 10)
          await peer.until(() => peer.bytesCollected >= expected, 30_000, 'every echo')
          assert.equal(peer.bytesCollected, expected, 'every message echoed exactly once')
        } finally {
          clearInterval(sampler)
        }
        t.diagnostic(
          `flooded ${Math.round(h.server.stats().bytesIn / MiB)} MiB; memory peak +${(peak / MiB).toFixed(1)} MiB`,
        )
        assert.ok(peak < 150 * MiB, `memory peaked ${(peak / MiB).toFixed(1)} MiB above the start`)
        const grown = (await memoryNow()) - before
        assert.ok(grown < 32 * MiB, `memory grew by ${(grown / MiB).toFixed(1)} MiB after the flood`)
      } finally {
        peer.destroy()
      }
    })
  })
})

describe('a peer that floods tiny fragments of a never-ending message', { timeout: 60_000 }, () => {
  const fragments = (count: number, payload: Buffer): Buffer =>
    Buffer.concat(
      Array.from({ length: count }, (_, i) =>
        clientFrame(i === 0 ? Opcode.Binary : Opcode.Continuation, payload, { fin: false }),
      ),
    )

  test('closed with 1009 once maxFragments (4096) is passed — not before', async () => {
    await withServer({}, async (h) => {
      const { peer } = await hostilePeer(h)
      try {
        peer.write(fragments(4096, Buffer.from('x')))
        // The pong shows the server read all 4096 fragments (a ping may come between fragments).
        await peer.roundTrip()
        assert.deepEqual(peer.frames, [], 'nothing yet at 4096 fragments')
        peer.send(Opcode.Continuation, 'x', { fin: false })
        await peer.expectFailure(1009)
        const error = h.log.errors.find((e) => e instanceof ProtocolError)
        assert.ok(error instanceof ProtocolError)
        assert.equal(error.code, ProtocolErrorCode.TooManyFragments)
      } finally {
        peer.destroy()
      }
    })
  })

  test('a message of exactly 4096 fragments is delivered', async () => {
    await withServer({}, async (h) => {
      const { peer } = await hostilePeer(h)
      try {
        peer.write(fragments(4095, Buffer.from('y')))
        peer.send(Opcode.Continuation, 'y')
        await peer.until(() => peer.frames.length > 0, 3000, 'the echo')
        assert.equal(peer.frames[0]!.payload.length, 4096)
      } finally {
        peer.destroy()
      }
    })
  })

  test('a flood of 100,000 empty fragments → 1009, memory bounded', async () => {
    await withServer({}, async (h) => {
      const { peer } = await hostilePeer(h)
      try {
        const before = await memoryNow()
        const batch = fragments(10_000, Buffer.alloc(0))
        for (let i = 0; i < 10 && !peer.socket.closed; i++) peer.write(batch)
        await peer.expectFailure(1009)
        const grown = (await memoryNow()) - before
        assert.ok(grown < 16 * MiB, `memory grew by ${(grown / MiB).toFixed(1)} MiB`)
      } finally {
        peer.destroy()
      }
    })
  })

  test('50 peers each holding 4096 one-byte fragments open: memory bounded, then all 1009', async () => {
    await withServer({}, async (h) => {
      const peers = await Promise.all(Array.from({ length: 50 }, () => hostilePeer(h)))
      try {
        const before = await memoryNow()
        const burst = fragments(4096, Buffer.from('z'))
        for (const { peer } of peers) peer.write(burst)
        await waitFor(
          () => peers.every(({ peer }) => peer.socket.writableLength === 0),
          5000,
          'bursts written',
        )
        // Every peer's pong: the server has read every fragment before memory is measured.
        await Promise.all(peers.map(({ peer }) => peer.roundTrip(5000)))
        const held = (await memoryNow()) - before
        // 50 × 4096 fragments of 1 byte: a few MiB of bookkeeping at most.
        assert.ok(held < 32 * MiB, `50 half-messages hold ${(held / MiB).toFixed(1)} MiB`)
        for (const { peer } of peers) assert.deepEqual(peer.frames, [])
        for (const { peer } of peers) peer.send(Opcode.Continuation, 'z', { fin: false })
        for (const { peer } of peers) await peer.expectFailure(1009)
      } finally {
        for (const { peer } of peers) peer.destroy()
      }
    })
  })
})

describe('10,000 connections opened and dropped abruptly', { timeout: 60_000 }, () => {
  /** Opens a raw connection and completes the handshake; resolves with the socket. */
  function handshake(port: number, request: string): Promise<Socket> {
    return new Promise((resolve, reject) => {
      const socket = connect({ port, host: '127.0.0.1' })
      let head = ''
      socket.on('error', (error) => reject(error))
      socket.on('data', (chunk: Buffer) => {
        head += chunk.toString('latin1')
        if (head.includes('\r\n\r\n')) {
          // From now on this peer reads nothing (what the server publishes piles up unread).
          socket.removeAllListeners('data')
          socket.pause()
          if (head.startsWith('HTTP/1.1 101 ')) resolve(socket)
          else reject(new Error(`refused: ${head.split('\r\n')[0]}`))
        }
      })
      socket.write(request)
    })
  }

  test('afterwards: no connection, topic, socket, timer or listener is left', async (t) => {
    const baselineNoServer = activeCounts()
    const TOTAL = 10_000
    const BATCH = 1000
    let published = 0
    await withServer({}, async (h) => {
      // Each churned connection subscribes to a shared topic and one of its own.
      let n = 0
      const publisher = setInterval(() => {
        published += h.server.publish('churn', 'tick')
      }, 100)
      h.onOpen = (ws) => {
        if (ws.url === '/churn') {
          ws.subscribe('churn')
          ws.subscribe(`own:${n++}`)
        }
      }
      const baseline = activeCounts()
      const totalBefore = h.server.stats().connectionsTotal
      const timers = trackTimers()
      const request = upgradeRequest({ path: '/churn' })
      let opened = 0
      const churnStarted = Date.now()
      try {
        for (let batch = 0; batch < TOTAL / BATCH; batch++) {
          const sockets: Socket[] = []
          try {
            // At most 250 handshakes in flight: the listen backlog is finite.
            for (let i = 0; i < BATCH; i += 250) {
              const group = await withTimeout(
                Promise.all(Array.from({ length: 250 }, () => handshake(h.port, request))),
                10_000,
                `batch ${batch} handshakes`,
              )
              sockets.push(...group)
            }
            opened += sockets.length
            await waitFor(
              () => h.server.topicRegistry.size === 1 + BATCH,
              5000,
              'every churned connection subscribed',
              () => h.server.topicRegistry.size,
            )
            // Abruptly: half with a FIN and no close frame, half with a TCP reset.
            sockets.forEach((socket, i) => {
              if (i % 2 === 0) socket.destroy()
              else socket.resetAndDestroy()
            })
          } finally {
            for (const socket of sockets) socket.destroy()
          }
          await waitFor(
            () => h.server.clients.size === 2,
            10_000,
            `batch ${batch} connections gone`,
            () => h.server.clients.size,
          )
        }
        // Handshakes dropped half way, and right after the request (before the 101 is read).
        const partial = Array.from({ length: 200 }, (_, i) => {
          const socket = connect({ port: h.port, host: '127.0.0.1' })
          socket.on('error', () => {})
          socket.write(i % 2 === 0 ? request.slice(0, 40) : request, () => socket.resetAndDestroy())
          return socket
        })
        // Each socket is reset once its bytes are written; all closed means all were sent.
        await waitFor(
          () => partial.every((socket) => socket.closed),
          5000,
          'partial handshakes sent and reset',
        )
        await waitFor(
          () => h.server.clients.size === 2,
          5000,
          'partial handshakes gone',
          () => h.server.clients.size,
        )
      } finally {
        clearInterval(publisher)
      }
      t.diagnostic(`${opened} connections churned in ${Date.now() - churnStarted} ms`)
      assert.equal(opened, TOTAL)
      assert.ok(h.server.stats().connectionsTotal - totalBefore >= TOTAL)
      assert.ok(published > 0, 'publishes reached churning subscribers')
      assert.equal(h.server.stats().connections, 2)
      assert.equal(h.server.topicRegistry.size, 0, 'no topic left')
      assert.equal(h.server.subscriberCount('churn'), 0)
      await h.witnesses.checkpoint('after the churn')
      // Handles and timers back to where they were before the churn.
      await waitFor(
        () => {
          const now = activeCounts()
          return now.TCPSocketWrap === baseline.TCPSocketWrap && now.Timeout <= baseline.Timeout
        },
        5000,
        'sockets and timers back to their baseline',
        () => ({ baseline, now: activeCounts() }),
      )
      await waitFor(
        () => timers.live().length === 0,
        3000,
        'no timer created by the churn is still armed',
        () => timers.live(),
      )
      timers.stop()
      // Listeners: the server's own socket listeners did not pile up.
      const listener = h.server.listener!
      for (const event of ['connection', 'error', 'close']) {
        assert.ok(listener.listenerCount(event) <= 2, `${event} listeners: ${listener.listenerCount(event)}`)
      }
    })
    // Then everything is closed: back to the state before the server existed.
    await waitFor(
      () => {
        const now = activeCounts()
        return (
          now.TCPSocketWrap === baselineNoServer.TCPSocketWrap &&
          now.TCPServerWrap === baselineNoServer.TCPServerWrap &&
          now.Timeout <= baselineNoServer.Timeout
        )
      },
      5000,
      'handles back to the baseline once the server is closed',
      () => ({ baselineNoServer, now: activeCounts() }),
    )
  })
})
