/**
 * What send() reports under backpressure ('buffered', 'dropped', the 'close' policy, drain), the
 * default message size limit over a real socket, and the server's heartbeat.
 */
import assert from 'node:assert/strict'
import { Buffer } from 'node:buffer'
import { after, describe, it } from 'node:test'
import type { CloseEvent, SendStatus, ServerWebSocket } from '../../src/index.js'
import { Opcode } from '../../src/protocol/index.js'
import {
  closeCodeOf,
  disposeAll,
  EventQueue,
  frame,
  once,
  openClient,
  RawClient,
  startServer,
  waitUntil,
} from './helpers.js'

const MiB = 1024 * 1024

describe('backpressure', () => {
  after(disposeAll)

  it("'buffered' over the high-water mark, 'dropped' past maxBackpressure, then drain", async () => {
    const opens = new EventQueue<ServerWebSocket<undefined>>()
    const drains = new EventQueue<number>()
    const { port, server } = await startServer({
      maxBackpressure: MiB,
      open(ws) {
        opens.push(ws)
      },
      drain(ws) {
        drains.push(ws.bufferedAmount)
      },
    })
    const raw = await RawClient.open(port)
    const ws = await opens.next()
    const chunk = Buffer.alloc(512 * 1024, 7)
    // Writes made in one turn are corked until the next tick, so they all count as buffered.
    const statuses: SendStatus[] = []
    for (let i = 0; i < 4; i++) statuses.push(ws.send(chunk))
    assert.deepEqual(statuses, ['buffered', 'buffered', 'dropped', 'dropped'])
    assert.ok(ws.bufferedAmount > MiB)
    assert.equal(server.stats().backpressureDrops, 2)
    assert.equal(server.stats().messagesOut, 2)
    assert.equal(await drains.next(5000, 'the drain handler'), 0)
    for (let i = 0; i < 2; i++) {
      const received = await raw.readFrame()
      assert.equal(received.opcode, Opcode.Binary)
      assert.ok(received.payload.equals(chunk))
    }
    assert.equal(ws.send('small'), 'sent', 'sending works again once drained')
    // Frames go out in call order: had a dropped message been written, it would come before this.
    assert.equal((await raw.readFrame()).payload.toString(), 'small', 'the dropped messages were never sent')
  })

  it("backpressurePolicy 'close': the socket over the limit is closed with 1008", async () => {
    const opens = new EventQueue<ServerWebSocket<undefined>>()
    const closes = new EventQueue<number>()
    const { port, server } = await startServer({
      maxBackpressure: MiB,
      backpressurePolicy: 'close',
      open(ws) {
        opens.push(ws)
      },
      close(_ws, code) {
        closes.push(code)
      },
    })
    const raw = await RawClient.open(port)
    const ws = await opens.next()
    const chunk = Buffer.alloc(512 * 1024, 7)
    const statuses = [ws.send(chunk), ws.send(chunk), ws.send(chunk)]
    assert.deepEqual(statuses, ['buffered', 'buffered', 'dropped'])
    assert.equal(server.stats().backpressureCloses, 1)
    assert.equal((await raw.readFrame()).payload.length, chunk.length)
    assert.equal((await raw.readFrame()).payload.length, chunk.length)
    const close = await raw.readFrame()
    assert.equal(close.opcode, Opcode.Close)
    assert.equal(closeCodeOf(close), 1008)
    await raw.waitForClose(2000)
    assert.equal(await closes.next(), 1006)
  })
})

describe('default message size limit (16 MiB) over a real socket', () => {
  after(disposeAll)

  it('16 MiB + 1 byte from the client → close 1009 from the server', async () => {
    const errors = new EventQueue<unknown>()
    const { url } = await startServer({
      error(error) {
        errors.push(error)
      },
    })
    const ws = await openClient(url)
    const closed = once<CloseEvent>(ws, 'close', 10_000)
    ws.send(new Uint8Array(16 * MiB + 1))
    const event = await closed
    assert.equal(event.code, 1009)
    assert.equal(((await errors.next()) as { code: string }).code, 'RALLY_ERR_FRAME_TOO_LARGE')
  })
})

describe('heartbeat', () => {
  after(disposeAll)

  it('a peer that never answers pings is terminated (1006); a normal client stays connected', async () => {
    const closes = new EventQueue<number>()
    const errors = new EventQueue<unknown>()
    // Only the WHATWG client answers pings: every pong here is its own.
    const goodPongs = new EventQueue<number>()
    const { port, url, server } = await startServer({
      heartbeat: { interval: 250, timeout: 250 },
      close(_ws, code) {
        closes.push(code)
      },
      pong() {
        goodPongs.push(Date.now())
      },
      error(error) {
        errors.push(error)
      },
    })
    const good = await openClient(url)
    const silent = await RawClient.open(port)
    const start = Date.now()
    const ping = await silent.readFrame(2000)
    assert.equal(ping.opcode, Opcode.Ping)
    assert.equal(ping.payload.length, 0)
    assert.equal(await closes.next(2000, 'the silent peer to be dropped'), 1006)
    const elapsed = Date.now() - start
    assert.ok(elapsed < 2000, `dropped after ${elapsed} ms`)
    assert.equal(((await errors.next()) as Error).name, 'TimeoutError')
    await silent.waitForClose(2000)
    assert.equal(server.stats().heartbeatTimeouts, 1)
    // The WHATWG client answers pings by itself: two more heartbeat rounds after the silent peer
    // was dropped, each judging it alive, and it is still connected.
    const pongsBefore = goodPongs.all.length
    await waitUntil(
      () => goodPongs.all.length >= pongsBefore + 2,
      3000,
      'two more pongs from the good client',
    )
    assert.equal(good.readyState, 1)
    assert.equal(server.clients.size, 1)
    assert.equal(closes.size, 0)
  })

  // Regression: the pong check ran in the timers phase, so after an event-loop stall longer than
  // `timeout` (GC pause, slow sync handler) the expired check ran before the poll phase read the
  // pongs already waiting in the kernel, and peers that had answered at once were terminated. The
  // check is now deferred past the poll phase (src/server/liveness.ts).
  it('a peer that answered the ping at once is not dropped because the event loop stalled', async () => {
    const closes = new EventQueue<number>()
    const { port, server } = await startServer({
      heartbeat: { interval: 200, timeout: 100 },
      close(_ws, code) {
        closes.push(code)
      },
    })
    const raw = await RawClient.open(port)
    let stalled = false
    let pings = 0
    raw.socket.on('data', (chunk: Buffer) => {
      if (chunk[0] !== 0x89) return
      pings++
      // Answer every ping at once (the pong reaches the server's kernel buffer immediately)...
      raw.write(frame(Opcode.Pong, chunk.subarray(2, 2 + (chunk[1]! & 0x7f))))
      if (stalled) return
      stalled = true
      // ...then stall this process's event loop for 3 × timeout, once.
      const end = Date.now() + 300
      while (Date.now() < end) {}
    })
    await waitUntil(() => stalled, 2000, 'the first ping')
    // Two more pings after the stall: the server checked the pongs and kept the peer each time
    // (a terminated peer gets no more pings, and the wait ends early on its close).
    const pingsAfterStall = pings
    await waitUntil(
      () => pings >= pingsAfterStall + 2 || closes.size > 0,
      3000,
      'two more pings or the peer dropped',
    )
    assert.equal(server.stats().heartbeatTimeouts, 0, 'no peer timed out')
    assert.equal(server.clients.size, 1)
    assert.equal(closes.size, 0)
  })
})
