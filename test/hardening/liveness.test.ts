/**
 * Heartbeats and timeouts, on the server and in the Node client: dead peers are found and
 * dropped within their bounds; live ones are left alone; witnesses lose nothing meanwhile.
 */
import assert from 'node:assert/strict'
import { Buffer } from 'node:buffer'
import { describe, test } from 'node:test'
import {
  createServer,
  type RallyServer,
  type ServerOptions,
  type ServerWebSocket,
  TimeoutError,
  WebSocket,
} from '../../src/index.js'
import {
  acceptHandshake,
  clientFrame,
  closeEventOf,
  closePayload,
  echoHandlers,
  installGuards,
  newLog,
  Opcode,
  openEventOf,
  RawPeer,
  rawServer,
  type ServerLog,
  sleep,
  Witnesses,
  waitFor,
  withTimeout,
} from './helpers.js'

installGuards()

interface Harness {
  server: RallyServer
  port: number
  url: string
  log: ServerLog
  witnesses: Witnesses
  sockets: ServerWebSocket[]
}

async function withServer(
  options: Partial<ServerOptions<undefined>>,
  body: (h: Harness) => Promise<void>,
): Promise<void> {
  const log = newLog()
  const echo = echoHandlers<undefined>(log)
  const h = { log, sockets: [] as ServerWebSocket[] } as Harness
  h.server = createServer<undefined>({
    port: 0,
    host: '127.0.0.1',
    ...echo,
    open(ws) {
      echo.open!(ws)
      if (ws.url !== '/') h.sockets.push(ws)
    },
    ...options,
  })
  const clients: WebSocket[] = []
  try {
    await h.server.ready()
    h.port = h.server.port!
    h.url = `ws://127.0.0.1:${h.port}`
    h.witnesses = await Witnesses.start(`${h.url}/`)
    await body(h)
    await h.witnesses.stop()
  } finally {
    for (const ws of clients) ws.terminate()
    await h.witnesses?.close().catch(() => {})
    await withTimeout(h.server.close(), 10_000, 'server close')
  }
}

describe('server heartbeat', { timeout: 60_000 }, () => {
  test('a client that never answers pings is terminated (1006); a normal one stays open', async () => {
    // Only /normal answers pings (the witnesses are on '/').
    let normalPongs = 0
    const pong = (ws: ServerWebSocket): void => {
      if (ws.url === '/normal') normalPongs++
    }
    await withServer({ heartbeat: { interval: 200, timeout: 100 }, pong }, async (h) => {
      const silent = new WebSocket(`${h.url}/silent`, [], { autoPong: false })
      const normal = new WebSocket(`${h.url}/normal`)
      try {
        await Promise.all([openEventOf(silent, 2000), openEventOf(normal, 2000)])
        const opened = Date.now()
        const silentClosed = closeEventOf(silent, 2000)
        let normalClosed = false
        normal.addEventListener('close', () => {
          normalClosed = true
        })
        const close = await silentClosed
        // Pinged at the first interval (≤ 200 ms), dead 100 ms later.
        assert.ok(close.at - opened < 1000, `terminated after ${close.at - opened} ms`)
        assert.equal(close.code, 1006, 'the client sees an abnormal closure: no close frame')
        await waitFor(() => h.log.closes.some((c) => c.url === '/silent'), 2000, 'server close handler')
        assert.deepEqual(
          h.log.closes.find((c) => c.url === '/silent'),
          { code: 1006, reason: '', url: '/silent' },
        )
        assert.equal(h.server.stats().heartbeatTimeouts, 1)
        assert.ok(
          h.log.errors.some((e) => e instanceof TimeoutError),
          'the error handler hears of it',
        )
        // Four more answered rounds, each judged by the server: the client that answers pings (and
        // sends nothing else) stays.
        const pongsBefore = normalPongs
        await waitFor(
          () => normalPongs >= pongsBefore + 4 || normalClosed,
          3000,
          'four more pongs from /normal',
        )
        assert.equal(normalClosed, false)
        assert.equal(normal.readyState, WebSocket.OPEN)
        assert.equal(h.server.stats().heartbeatTimeouts, 1, 'no other socket timed out')
        normal.send('still here')
        await withTimeout(
          new Promise((resolve) => normal.addEventListener('message', resolve, { once: true })),
          2000,
          'echo on the normal client',
        )
      } finally {
        silent.terminate()
        normal.terminate()
      }
    })
  })

  test('pings are empty ping frames; a raw peer that answers them stays, one that does not is cut without a close frame', async () => {
    await withServer({ heartbeat: { interval: 150, timeout: 100 } }, async (h) => {
      const answering = await RawPeer.connect(h.port, { path: '/answering' })
      const mute = await RawPeer.connect(h.port, { path: '/mute' })
      const answered = { count: 0 }
      answering.socket.on('data', () => {
        for (const frame of answering.frames.splice(0)) {
          if (frame.opcode === Opcode.Ping) {
            answered.count++
            answering.send(Opcode.Pong, frame.payload)
          }
        }
      })
      try {
        await mute.expectTcpClosed(2000)
        assert.ok(mute.frames.length >= 1)
        for (const frame of mute.frames) {
          assert.equal(frame.opcode, Opcode.Ping, 'only pings, and no close frame')
          assert.equal(frame.payload.length, 0)
        }
        await waitFor(() => answered.count >= 4, 3000, 'several pings answered')
        assert.equal(answering.socket.closed, false)
        assert.equal(h.server.stats().heartbeatTimeouts, 1)
      } finally {
        answering.destroy()
        mute.destroy()
      }
    })
  })

  test('heartbeat: false sends no pings', async () => {
    await withServer({ heartbeat: false }, async (h) => {
      const peer = await RawPeer.connect(h.port, { path: '/quiet' })
      try {
        // No event marks a timer that was never armed: a bounded wait for the ping that must not
        // come, 400 ms (two of the 150-200 ms intervals the other tests here ping at).
        const pinged = await peer
          .until(() => peer.frames.length > 0, 400, 'a ping')
          .then(
            () => true,
            () => false,
          )
        assert.equal(pinged, false, 'no ping')
        assert.deepEqual(peer.frames, [])
        assert.equal(peer.socket.closed, false)
      } finally {
        peer.destroy()
      }
    })
  })

  test('invalid heartbeat options are refused at creation', () => {
    assert.throws(() => createServer({ heartbeat: { interval: 0, timeout: 100 } }), RangeError)
    assert.throws(() => createServer({ heartbeat: { interval: 100, timeout: Number.NaN } }), RangeError)
    assert.throws(() => createServer({ idleTimeout: -1 }), RangeError)
  })
})

describe('client heartbeat', { timeout: 60_000 }, () => {
  test('against a server that stops answering: the client closes with 1006', async () => {
    const pings: number[] = []
    const raw = await rawServer((socket) => {
      // Completes the handshake, then reads and ignores everything (never a pong).
      acceptHandshake(socket, (bytes) => {
        if ((bytes[0]! & 0x0f) === Opcode.Ping) pings.push(Date.now())
      })
    })
    const ws = new WebSocket(`ws://127.0.0.1:${raw.port}/`, [], {
      heartbeat: { interval: 200, timeout: 100 },
      perMessageDeflate: false,
    })
    try {
      await openEventOf(ws, 2000)
      const opened = Date.now()
      const close = await closeEventOf(ws, 2000)
      assert.equal(close.code, 1006)
      assert.equal(close.wasClean, false)
      assert.ok(close.at - opened >= 250 && close.at - opened < 1500, `closed after ${close.at - opened} ms`)
      assert.equal(pings.length, 1, 'one ping, then the timeout')
    } finally {
      ws.terminate()
      await raw.close()
    }
  })

  test('against a live Rally server the client heartbeat keeps the connection open', async () => {
    await withServer({ heartbeat: false }, async (h) => {
      const ws = new WebSocket(`${h.url}/client-heartbeat`, [], { heartbeat: { interval: 100, timeout: 80 } })
      try {
        await openEventOf(ws, 2000)
        let closed = false
        ws.addEventListener('close', () => {
          closed = true
        })
        let pongs = 0
        ws.addEventListener('pong', () => pongs++)
        // Five answered rounds (the server answers pings by itself), each judged by the client.
        await waitFor(() => pongs >= 5 || closed, 3000, 'five pongs')
        assert.equal(closed, false)
        assert.equal(ws.readyState, WebSocket.OPEN)
      } finally {
        ws.terminate()
      }
    })
  })
})

describe('idle timeout', { timeout: 60_000 }, () => {
  test('a peer that sends nothing gets 1001 "Idle timeout"; busy ones stay', async () => {
    await withServer({ idleTimeout: 300, heartbeat: false }, async (h) => {
      const peer = await RawPeer.connect(h.port, { path: '/idle' })
      const started = Date.now()
      try {
        const close = await peer.expectCloseFrame(2000)
        const elapsed = Date.now() - started
        assert.equal(close.code, 1001)
        assert.equal(close.reason, 'Idle timeout')
        assert.ok(elapsed < 1200, `closed after ${elapsed} ms (idleTimeout 300)`)
        assert.equal(h.server.stats().idleTimeouts, 1)
        // The peer answers the close: a clean closing handshake.
        peer.send(Opcode.Close, closePayload(1001))
        await peer.expectTcpClosed()
        peer.socket.end()
        await waitFor(() => h.log.closes.some((c) => c.url === '/idle'), 2000, 'server close handler')
        assert.equal(h.log.closes.find((c) => c.url === '/idle')!.code, 1001)
      } finally {
        peer.destroy()
      }
    })
  })

  test('a silent new connection is not closed before idleTimeout (whenever it opens)', async () => {
    // The idle check runs every idleTimeout / 2; connections opened at different points of
    // that period must all get at least idleTimeout of silence.
    await withServer({ idleTimeout: 300, heartbeat: false }, async (h) => {
      const peers = await Promise.all(
        Array.from({ length: 6 }, async (_, i) => {
          await sleep(i * 25)
          const peer = await RawPeer.connect(h.port, { path: `/silent-${i}` })
          return { peer, opened: Date.now() }
        }),
      )
      try {
        const lifetimes = await Promise.all(
          peers.map(async ({ peer, opened }) => {
            await peer.expectCloseFrame(2000)
            return Date.now() - opened
          }),
        )
        for (const ms of lifetimes)
          assert.ok(ms >= 290, `closed after ${ms} ms of silence: ${lifetimes.join(', ')}`)
      } finally {
        for (const { peer } of peers) peer.destroy()
      }
    })
  })

  test('the Rally client sees the idle close as 1001 "Idle timeout"', async () => {
    await withServer({ idleTimeout: 300, heartbeat: false }, async (h) => {
      const ws = new WebSocket(`${h.url}/idle-client`)
      try {
        await openEventOf(ws, 2000)
        const close = await closeEventOf(ws, 3000)
        assert.deepEqual([close.code, close.reason, close.wasClean], [1001, 'Idle timeout', true])
      } finally {
        ws.terminate()
      }
    })
  })
})

describe('close timeout', { timeout: 60_000 }, () => {
  test('server close() to a peer that never answers: TCP destroyed after closeTimeout, handler sees 1006', async () => {
    await withServer({ closeTimeout: 300 }, async (h) => {
      const peer = await RawPeer.connect(h.port, { path: '/deaf' })
      try {
        const ws = h.sockets.find((s) => s.url === '/deaf')!
        const started = Date.now()
        ws.close(4000, 'bye')
        const close = await peer.expectCloseFrame(1000)
        assert.deepEqual([close.code, close.reason], [4000, 'bye'])
        await peer.expectTcpClosed(2000)
        const elapsed = Date.now() - started
        assert.ok(elapsed >= 250 && elapsed < 1500, `destroyed after ${elapsed} ms (closeTimeout 300)`)
        await waitFor(() => h.log.closes.some((c) => c.url === '/deaf'), 2000, 'server close handler')
        assert.equal(h.log.closes.find((c) => c.url === '/deaf')!.code, 1006)
      } finally {
        peer.destroy()
      }
    })
  })

  test('after a protocol error, a peer that keeps its half of TCP open is destroyed after closeTimeout', async () => {
    await withServer({ closeTimeout: 300 }, async (h) => {
      const peer = await RawPeer.connect(h.port, { path: '/stubborn' })
      try {
        const started = Date.now()
        peer.write(clientFrame(Opcode.Text, 'x', { mask: false }))
        await peer.expectFailure(1002)
        // The server ended its side at once; it destroys the socket after closeTimeout.
        await waitFor(() => h.server.clients.size === 2, 2000, 'connection destroyed')
        const elapsed = Date.now() - started
        assert.ok(elapsed >= 250 && elapsed < 1500, `destroyed after ${elapsed} ms`)
      } finally {
        peer.destroy()
      }
    })
  })

  test('client closeTimeout: a server that sends close but never closes TCP', async () => {
    const raw = await rawServer((socket) => {
      acceptHandshake(socket, () => {})
      setTimeout(() => socket.write(Buffer.concat([Buffer.from([0x88, 0x02]), closePayload(1000)])), 50)
    })
    const ws = new WebSocket(`ws://127.0.0.1:${raw.port}/`, [], {
      closeTimeout: 300,
      perMessageDeflate: false,
    })
    try {
      await openEventOf(ws, 2000)
      const opened = Date.now()
      const close = await closeEventOf(ws, 2000)
      assert.equal(close.code, 1000)
      assert.equal(close.wasClean, true)
      assert.ok(close.at - opened >= 250 && close.at - opened < 1500, `closed after ${close.at - opened} ms`)
    } finally {
      ws.terminate()
      await raw.close()
    }
  })

  test('client closeTimeout: close() to a server that never answers → 1006 after the timeout', async () => {
    const raw = await rawServer((socket) => acceptHandshake(socket, () => {}))
    const ws = new WebSocket(`ws://127.0.0.1:${raw.port}/`, [], {
      closeTimeout: 300,
      perMessageDeflate: false,
    })
    try {
      await openEventOf(ws, 2000)
      const started = Date.now()
      ws.close(1000, 'done')
      const close = await closeEventOf(ws, 2000)
      assert.equal(close.code, 1006)
      assert.equal(close.wasClean, false)
      assert.ok(
        close.at - started >= 250 && close.at - started < 1500,
        `closed after ${close.at - started} ms`,
      )
    } finally {
      ws.terminate()
      await raw.close()
    }
  })
})

describe('client handshake timeout', { timeout: 60_000 }, () => {
  test('a server that accepts TCP and never answers: error, then close 1006', async () => {
    const raw = await rawServer((socket) => socket.resume())
    const ws = new WebSocket(`ws://127.0.0.1:${raw.port}/`, [], { handshakeTimeout: 300 })
    const errors: string[] = []
    ws.addEventListener('error', (event) => errors.push((event as unknown as { message: string }).message))
    try {
      const started = Date.now()
      const close = await closeEventOf(ws, 2000)
      assert.equal(close.code, 1006)
      assert.equal(close.wasClean, false)
      assert.ok(
        close.at - started >= 250 && close.at - started < 1500,
        `gave up after ${close.at - started} ms`,
      )
      assert.equal(errors.length, 1)
      assert.match(errors[0]!, /timed out/i)
      await waitFor(() => raw.sockets.size === 0, 1000, 'the client closed its socket')
    } finally {
      ws.terminate()
      await raw.close()
    }
  })

  test('a server that sends half a 101 and stalls: error, then close 1006', async () => {
    const raw = await rawServer((socket) => {
      socket.once('data', () => socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: webs'))
    })
    const ws = new WebSocket(`ws://127.0.0.1:${raw.port}/`, [], { handshakeTimeout: 300 })
    try {
      const close = await closeEventOf(ws, 2000)
      assert.equal(close.code, 1006)
    } finally {
      ws.terminate()
      await raw.close()
    }
  })
})
