/**
 * Synchronous inflate is bounded by its output, not by the compressed size (issue 10, bug 5): a
 * peer sending 16 KiB of DEFLATE that inflates to 16 MiB must not hold the event loop for the
 * whole inflate (every other connection waits meanwhile). Such messages are inflated in the
 * thread pool, straight into the buffer that is delivered.
 *
 * Two measures, while a raw peer sends such messages one at a time:
 * - Every synchronous zlib inflate on the event loop is observed (SyncZlib.process, wrapped):
 *   none may be allowed more than SYNC_INFLATE_OUTPUT_LIMIT bytes of output, nor produce more
 *   than that plus one zlib chunk (SYNC_CHUNK). Exact, whatever the machine.
 * - How late a 1 ms interval timer runs while each message is processed: the longest time the
 *   event loop was held. Wall-clock time also counts the moments the OS gives the CPU to other
 *   processes, which on a loaded 2-core machine reach tens of milliseconds (measured here: about
 *   5 ms per message on a quiet machine, up to 90 ms under a load of 12). So each message's
 *   window is measured again right after, for as long, with nothing to process: the difference
 *   is what the message cost the event loop. The MEDIAN message's extra hold must stay under a
 *   generous 20 ms. (Per-thread CPU time would be immune to load, but /proc's per-thread
 *   accounting is stale on tickless kernels, VMs included: it missed 40 of a 50 ms busy loop
 *   here.) How long a whole 16 MiB inflate takes depends on the machine — 5 ms into warm memory
 *   here, 50-100 ms into fresh pages, 42 ms in the report — which is why the first
 *   measure, exact everywhere, is the one sure to fail without the fix.
 */
import assert from 'node:assert/strict'
import { Buffer } from 'node:buffer'
import { performance } from 'node:perf_hooks'
import { afterEach, test } from 'node:test'
import zlib from 'node:zlib'
import { DeflateCodec, SYNC_INFLATE_OUTPUT_LIMIT } from '../../src/node/deflate.js'
import { SYNC_CHUNK, SyncZlib } from '../../src/node/zlib-sync.js'
import {
  clientFrame,
  deflate,
  disposeAll,
  KiB,
  MiB,
  Op,
  Queue,
  RawClient,
  RSV1,
  startServer,
} from './helpers.js'

afterEach(disposeAll)

/** The longest gap between two ticks of a 1 ms timer since the last reset, in ms. */
class HoldMeter {
  longest = 0
  private last = performance.now()
  private readonly timer = setInterval(() => {
    const now = performance.now()
    this.longest = Math.max(this.longest, now - this.last)
    this.last = now
  }, 1)

  reset(): void {
    this.longest = 0
    this.last = performance.now()
  }

  stop(): void {
    clearInterval(this.timer)
  }
}

const MESSAGES = 9
const INFLATED = 16 * MiB
/** The most the median message may add to the longest hold of its window (see above). */
const BOUND_MS = 20

/**
 * Records each synchronous zlib call's output bound and duration while `body` runs: every one
 * goes through SyncZlib.process (src/node/zlib-sync.ts), which is wrapped here.
 */
async function observeSyncInflates<T>(
  body: () => Promise<T>,
): Promise<{ result: T; calls: { maxOutput: number; produced: number; ms: number }[] }> {
  const original = SyncZlib.prototype.process
  const calls: { maxOutput: number; produced: number; ms: number }[] = []
  SyncZlib.prototype.process = function (this: SyncZlib, pieces, outputLimit) {
    const started = performance.now()
    const outcome = original.call(this, pieces, outputLimit)
    if (this.stream instanceof zlib.InflateRaw) {
      const produced = outcome.complete ? outcome.output.length : outcome.produced.length
      calls.push({ maxOutput: outputLimit, produced, ms: performance.now() - started })
    }
    return outcome
  }
  try {
    return { result: await body(), calls }
  } finally {
    SyncZlib.prototype.process = original
  }
}

test('16 KiB that inflate to 16 MiB do not hold the event loop (inflated off it)', async (t) => {
  const received = new Queue<number>()
  const { port } = await startServer({
    perMessageDeflate: true,
    maxPayload: 32 * MiB,
    message(_ws, data) {
      received.push((data as Buffer).length)
    },
    error() {},
  })
  const client = await RawClient.connect(port)
  assert.match(client.extensions, /permessage-deflate/)
  const compressed = deflate(Buffer.alloc(INFLATED), { level: 9 })
  assert.ok(compressed.length <= 17 * KiB, `compressed to ${compressed.length} B`)
  const frame = clientFrame(Op.Binary, compressed, { rsv: RSV1 })
  const holds: number[] = []
  const meter = new HoldMeter()
  const { calls } = await observeSyncInflates(async () => {
    try {
      for (let i = 0; i < MESSAGES; i++) {
        meter.reset()
        const started = performance.now()
        client.send(frame)
        assert.equal(await received.next(30_000, `message ${i}`), INFLATED)
        const hold = meter.longest
        const window = performance.now() - started
        // The control: a window as long, right after, with nothing to process.
        meter.reset()
        await new Promise((resolve) => setTimeout(resolve, window))
        holds.push(hold - meter.longest)
      }
    } finally {
      meter.stop()
    }
  })
  assert.ok(calls.length >= MESSAGES, `a synchronous attempt per message (${calls.length})`)
  const largest = Math.max(...calls.map((call) => call.maxOutput))
  assert.ok(
    largest <= SYNC_INFLATE_OUTPUT_LIMIT,
    `a synchronous inflate on the event loop could produce ${largest} bytes`,
  )
  const mostProduced = Math.max(...calls.map((call) => call.produced))
  assert.ok(
    mostProduced <= SYNC_INFLATE_OUTPUT_LIMIT + SYNC_CHUNK,
    `a synchronous inflate on the event loop produced ${mostProduced} bytes`,
  )
  t.diagnostic(`synchronous inflates (ms): ${calls.map((call) => call.ms.toFixed(1)).join(', ')}`)
  const sorted = [...holds].sort((a, b) => a - b)
  const median = sorted[Math.floor(sorted.length / 2)]!
  t.diagnostic(
    `longest hold per message, minus its control window's (ms): ${holds.map((ms) => ms.toFixed(1)).join(', ')}`,
  )
  assert.ok(
    median < BOUND_MS,
    `the median message held the event loop ${median.toFixed(1)} ms more than idle`,
  )
})

test('context takeover: messages below, within and past the up-front output buffer arrive intact', async () => {
  const codec = new DeflateCodec({
    compress: { noContextTakeover: false, windowBits: 15 },
    decompress: { noContextTakeover: false, windowBits: 15 },
    threshold: 0,
    level: 1,
    memLevel: 8,
  })
  const peer = new DeflateCodec({
    compress: { noContextTakeover: false, windowBits: 15 },
    decompress: { noContextTakeover: false, windowBits: 15 },
    threshold: 0,
    level: 1,
    memLevel: 8,
  })
  try {
    // 100 KiB: joined at the end; 5 MiB: copied as it comes into the up-front buffer; 70 MiB:
    // past that buffer's 64 MiB cap (the limit here is 80 MiB), joined at the end again.
    for (const size of [100 * KiB, 5 * MiB, 70 * MiB]) {
      const data = Buffer.alloc(size)
      for (let i = 0; i < size; i += 4096) data.writeUInt32BE(i, i)
      const compressed = await peer.compress(data)
      const inflated = await codec.decompress([compressed], compressed.length, 80 * MiB)
      assert.equal(inflated.length, size)
      assert.ok(Buffer.from(inflated).equals(data), `${size} bytes intact`)
    }
  } finally {
    codec.close()
    peer.close()
  }
})
