/**
 * Output batching in the socket driver: frames written in one event-loop turn leave together
 * (small ones copied into one buffer, large ones corked behind them), in call order, byte-exact,
 * and the bytes held for the end of the turn count in `bufferedAmount`.
 */
import assert from 'node:assert/strict'
import { Buffer } from 'node:buffer'
import { randomFillSync } from 'node:crypto'
import { after, describe, it } from 'node:test'
import type { ServerWebSocket } from '../../src/index.js'
import { Opcode } from '../../src/protocol/index.js'
import { disposeAll, EventQueue, RawClient, startServer } from './helpers.js'

function bytes(size: number): Buffer {
  const out = Buffer.allocUnsafe(size)
  randomFillSync(out)
  return out
}

async function openRaw(): Promise<{ raw: RawClient; ws: ServerWebSocket<undefined> }> {
  const opens = new EventQueue<ServerWebSocket<undefined>>()
  const { port } = await startServer({
    open(ws) {
      opens.push(ws)
    },
  })
  const raw = await RawClient.open(port)
  return { raw, ws: await opens.next() }
}

/** Counts the socket reads of `raw` from now on. */
function countReads(raw: RawClient): () => number {
  let reads = 0
  raw.socket.on('data', () => reads++)
  return () => reads
}

describe('output batching', () => {
  after(disposeAll)

  it('small and large frames mixed in one turn arrive in call order, byte-exact', async () => {
    const { raw, ws } = await openRaw()
    // Small frames (gathered), large ones (corked, never copied), and enough small ones to pass
    // the gathering buffer's capacity several times within the turn.
    const sent: Buffer[] = []
    const sizes = [
      ...Array.from({ length: 50 }, (_, i) => i * 7),
      100 * 1024,
      ...Array.from({ length: 10 }, () => 120),
      5000,
      4094,
      ...Array.from({ length: 3000 }, (_, i) => 60 + (i % 90)),
      70000,
      3,
    ]
    for (const size of sizes) {
      const payload = bytes(size)
      sent.push(payload)
      assert.notEqual(ws.send(payload), 'dropped')
    }
    for (let i = 0; i < sent.length; i++) {
      const frame = await raw.readFrame()
      assert.equal(frame.opcode, Opcode.Binary)
      assert.ok(frame.fin)
      assert.ok(frame.payload.equals(sent[i]!), `frame ${i} (${sizes[i]} bytes) differs`)
    }
  })

  it('many small frames in one turn leave as one write; one per turn leaves at once', async () => {
    const { raw, ws } = await openRaw()
    const reads = countReads(raw)
    for (let i = 0; i < 200; i++) ws.send(`m${i}`)
    for (let i = 0; i < 200; i++) assert.equal((await raw.readFrame()).payload.toString(), `m${i}`)
    // About 1 KB in one write: one read, two if the kernel split it.
    assert.ok(reads() <= 2, `200 small frames arrived in ${reads()} reads`)

    // A single frame per turn is not held back beyond the turn.
    for (let i = 0; i < 5; i++) {
      ws.send(`alone ${i}`)
      assert.equal((await raw.readFrame()).payload.toString(), `alone ${i}`)
    }
  })

  it('bytes held for the end of the turn count in bufferedAmount, and leave by the next tick', async () => {
    const { raw, ws } = await openRaw()
    assert.equal(ws.bufferedAmount, 0)
    ws.send('abc')
    assert.equal(ws.bufferedAmount, 2 + 3, 'one small frame: header + payload')
    ws.send(Buffer.alloc(100))
    assert.equal(ws.bufferedAmount, 5 + 2 + 100)
    ws.send(Buffer.alloc(300))
    assert.equal(ws.bufferedAmount, 107 + 4 + 300, 'a 300-byte payload has a 16-bit length field')
    await new Promise((resolve) => process.nextTick(resolve))
    // Handed to the socket: on loopback the kernel takes 411 bytes at once.
    assert.equal(ws.bufferedAmount, 0)
    assert.equal((await raw.readFrame()).payload.toString(), 'abc')
    assert.equal((await raw.readFrame()).payload.length, 100)
    assert.equal((await raw.readFrame()).payload.length, 300)
  })

  it('a close in the same turn as sends goes after them', async () => {
    const { raw, ws } = await openRaw()
    ws.send('first')
    ws.send(Buffer.alloc(10_000, 1))
    ws.send('last')
    ws.close(1000, 'bye')
    assert.equal((await raw.readFrame()).payload.toString(), 'first')
    assert.equal((await raw.readFrame()).payload.length, 10_000)
    assert.equal((await raw.readFrame()).payload.toString(), 'last')
    const close = await raw.readFrame()
    assert.equal(close.opcode, Opcode.Close)
    assert.equal(close.payload.readUInt16BE(0), 1000)
    assert.equal(close.payload.subarray(2).toString(), 'bye')
  })
})
