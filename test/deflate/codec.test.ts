/**
 * The zlib codec (src/node/deflate.ts) on its own, in each of its paths: synchronous on the
 * process's shared context (payload <= SYNC_LIMIT, no context takeover), one-shot in the thread
 * pool (payload > SYNC_LIMIT), synchronous on the connection's own context (context takeover),
 * and that context finishing in the thread pool (output past SYNC_INFLATE_OUTPUT_LIMIT). Limits
 * at the exact boundary, corrupt data, window sizes, ordering, the limiter, and close() while busy.
 */
import assert from 'node:assert/strict'
import { Buffer } from 'node:buffer'
import { describe, test } from 'node:test'
import zlib from 'node:zlib'
import { DeflateCodec, SYNC_INFLATE_OUTPUT_LIMIT, SYNC_LIMIT, ZlibLimiter } from '../../src/node/deflate.js'
import { ProtocolError, ProtocolErrorCode } from '../../src/protocol/index.js'
import {
  compressibleBytes,
  compressibleText,
  deflate,
  inflate,
  KiB,
  MiB,
  randomBytes,
  sleep,
  withTimeout,
} from './helpers.js'

function codec(takeover: boolean, bits = 15, limiter?: ZlibLimiter): DeflateCodec {
  const direction = { noContextTakeover: !takeover, windowBits: bits }
  return new DeflateCodec({
    compress: direction,
    decompress: direction,
    threshold: 1024,
    level: 1,
    memLevel: 8,
    ...(limiter === undefined ? {} : { limiter }),
  })
}

async function settle<T>(value: T | Promise<T>): Promise<T> {
  return await value
}

const PATHS = [
  { name: 'sync shared context', takeover: false, sync: true, data: () => compressibleBytes(200 * KiB) },
  {
    name: 'thread-pool one-shot',
    takeover: false,
    sync: false,
    data: () => randomBytes(SYNC_LIMIT + 4 * KiB),
  },
  {
    name: 'sync own context (context takeover)',
    takeover: true,
    sync: true,
    data: () => compressibleBytes(200 * KiB),
  },
  {
    name: 'own context finished in the thread pool (context takeover)',
    takeover: true,
    sync: false,
    data: () => compressibleBytes(SYNC_INFLATE_OUTPUT_LIMIT + 300 * KiB),
  },
]

describe('DeflateCodec paths', () => {
  for (const path of PATHS) {
    test(`${path.name}: output is what the peer inflates, and what it inflates is the input`, async () => {
      const data = path.data()
      const c = codec(path.takeover)
      try {
        const payload = deflate(data)
        if (path.name === 'thread-pool one-shot')
          assert.ok(payload.length > SYNC_LIMIT, 'payload.length > SYNC_LIMIT')
        else assert.ok(payload.length <= SYNC_LIMIT, 'payload.length <= SYNC_LIMIT')
        const result = c.decompress([payload.subarray(0, 10), payload.subarray(10)], payload.length, 16 * MiB)
        assert.equal(result instanceof Promise, !path.sync, 'sync or async as documented')
        assert.ok(
          Buffer.from(await settle(result)).equals(data),
          'Buffer.from(await settle(result)).equals(data)',
        )
        const compressed = Buffer.from(await settle(c.compress(data)))
        assert.ok(!compressed.subarray(-4).equals(Buffer.from([0, 0, 0xff, 0xff])), 'tail stripped')
        assert.ok(inflate(compressed).equals(data), 'inflate(compressed).equals(data)')
      } finally {
        c.close()
      }
    })

    test(`${path.name}: a message of exactly maxSize passes, one byte less fails with MessageTooLarge`, async () => {
      const data = path.data()
      const payload = deflate(data)
      const ok = codec(path.takeover)
      const tooSmall = codec(path.takeover)
      try {
        assert.equal(
          (await settle(ok.decompress([payload], payload.length, data.length))).length,
          data.length,
        )
        await assert.rejects(
          async () => settle(tooSmall.decompress([payload], payload.length, data.length - 1)),
          (error: unknown) =>
            error instanceof ProtocolError && error.code === ProtocolErrorCode.MessageTooLarge,
        )
      } finally {
        ok.close()
        tooSmall.close()
      }
    })

    test(`${path.name}: corrupt data → InvalidCompressedData (1007)`, async () => {
      const garbage = path.name === 'thread-pool one-shot' ? randomBytes(SYNC_LIMIT + 100) : randomBytes(300)
      garbage[0] = 0x07 // BTYPE=11: reserved
      const c = codec(path.takeover)
      try {
        await assert.rejects(
          async () => settle(c.decompress([garbage], garbage.length, 16 * MiB)),
          (error: unknown) =>
            error instanceof ProtocolError &&
            error.code === ProtocolErrorCode.InvalidCompressedData &&
            error.closeCode === 1007,
        )
      } finally {
        c.close()
      }
    })
  }

  for (let bits = 8; bits <= 15; bits++) {
    test(`window ${bits} bits: compress output inflates with a ${bits}-bit window (zlib, strict)`, async () => {
      const data = Buffer.from(compressibleText(100 * KiB) + randomBytes(10 * KiB).toString('hex'))
      for (const takeover of [false, true]) {
        const c = codec(takeover, bits)
        try {
          const payload = Buffer.from(await settle(c.compress(data)))
          // A strict receiver with exactly the negotiated window: zlib fails on a distance
          // beyond it ("invalid distance too far back").
          const inflated = zlib.inflateRawSync(Buffer.concat([payload, Buffer.from([0, 0, 0xff, 0xff])]), {
            windowBits: bits,
            finishFlush: zlib.constants.Z_SYNC_FLUSH,
          })
          assert.ok(inflated.equals(data), `takeover ${takeover}`)
          assert.ok(
            Buffer.from(await settle(c.decompress([payload], payload.length, MiB))).equals(data),
            'Buffer.from(await settle(c.decompress([payload], payload.length, Mi...',
          )
        } finally {
          c.close()
        }
      }
    })
  }

  test('context takeover: later messages refer to earlier ones, in call order', async () => {
    const c = codec(true)
    const peer = codec(true)
    try {
      const message = Buffer.from(randomBytes(4 * KiB).toString('hex'))
      const outputs = await Promise.all([c.compress(message), c.compress(message), c.compress(message)])
      const sizes = outputs.map((o) => o.length)
      assert.ok(sizes[1]! < sizes[0]! / 4 && sizes[2]! < sizes[0]! / 4, `context kept: ${sizes}`)
      const inflated = await Promise.all(outputs.map((o) => peer.decompress([o], o.length, MiB)))
      for (const out of inflated)
        assert.ok(Buffer.from(out).equals(message), 'Buffer.from(out).equals(message)')
    } finally {
      c.close()
      peer.close()
    }
  })

  test('no context takeover: one shared context, yet every message stands alone (same bytes each time, inflatable alone)', async () => {
    const a = codec(false)
    const b = codec(false)
    try {
      const message = Buffer.from(compressibleText(3 * KiB))
      const other = Buffer.from(compressibleText(5 * KiB).toUpperCase())
      const first = Buffer.from(await settle(a.compress(message)))
      // Interleaved on the shared context: another connection's message, then the same again.
      await settle(b.compress(other))
      const second = Buffer.from(await settle(b.compress(message)))
      const third = Buffer.from(await settle(a.compress(message)))
      assert.ok(first.equals(second) && first.equals(third), 'no reference to earlier messages')
      // A fresh inflater (nothing before it) reads each one: RFC 7692 7.1.1.1.
      assert.ok(inflate(third).equals(message), 'inflate(third).equals(message)')
    } finally {
      a.close()
      b.close()
    }
  })

  test('no context takeover: the shared decompressor serves the next message after corrupt data and after an oversized one', async () => {
    const a = codec(false)
    const b = codec(false)
    try {
      const message = Buffer.from(compressibleText(4 * KiB))
      const payload = deflate(message)
      const garbage = randomBytes(300)
      garbage[0] = 0x07 // BTYPE=11: reserved
      assert.throws(
        () => a.decompress([garbage], garbage.length, MiB),
        (error: unknown) =>
          error instanceof ProtocolError && error.code === ProtocolErrorCode.InvalidCompressedData,
      )
      assert.ok(Buffer.from(await settle(b.decompress([payload], payload.length, MiB))).equals(message))
      // Stopped half-way through by the limit: the next message must not continue from there.
      assert.throws(
        () => a.decompress([payload], payload.length, 100),
        (error: unknown) =>
          error instanceof ProtocolError && error.code === ProtocolErrorCode.MessageTooLarge,
      )
      assert.ok(Buffer.from(await settle(b.decompress([payload], payload.length, MiB))).equals(message))
    } finally {
      a.close()
      b.close()
    }
  })

  test('context takeover: an empty message between two others is an empty block (0x00), and the context carries on', async () => {
    const c = codec(true)
    const peer = codec(true)
    try {
      const message = Buffer.from(randomBytes(2 * KiB).toString('hex'))
      for (const data of [message, Buffer.alloc(0), Buffer.alloc(0), message]) {
        const payload = await settle(c.compress(data))
        if (data.length === 0) assert.deepEqual([...payload], [0x00])
        const inflated = await settle(peer.decompress([payload], payload.length, MiB))
        assert.ok(Buffer.from(inflated).equals(data), `${data.length} bytes back`)
      }
    } finally {
      c.close()
      peer.close()
    }
  })

  test('context takeover: a small message behind a thread-pool job waits its turn; the peer reads both in order', async () => {
    const c = codec(true)
    const peer = codec(true)
    try {
      const large = randomBytes(SYNC_LIMIT + 4 * KiB)
      const small = Buffer.from(compressibleText(2 * KiB))
      const first = c.compress(large)
      const second = c.compress(small)
      assert.ok(first instanceof Promise, 'over SYNC_LIMIT: thread pool')
      assert.ok(second instanceof Promise, 'behind it: waits, not synchronous')
      const [one, two] = await Promise.all([first, second])
      assert.ok(Buffer.from(await settle(peer.decompress([one], one.length, MiB))).equals(large))
      assert.ok(Buffer.from(await settle(peer.decompress([two], two.length, MiB))).equals(small))
      // Idle again: the next small message is compressed on the spot.
      assert.ok(!(c.compress(small) instanceof Promise), 'synchronous once idle')
    } finally {
      c.close()
      peer.close()
    }
  })

  test('context takeover: a message finished in the thread pool keeps the context for the next one', async () => {
    const c = codec(true)
    const peer = codec(true)
    try {
      // Incompressible at its end: that end, sent again, shrinks only by referring back into the
      // first message, and inflates right only if the context went on from where the thread
      // pool left it.
      const tail = Buffer.from(randomBytes(4 * KiB).toString('hex'))
      const big = Buffer.concat([Buffer.from(compressibleText(SYNC_INFLATE_OUTPUT_LIMIT + 200 * KiB)), tail])
      const bigPayload = await settle(peer.compress(big))
      const tailPayload = await settle(peer.compress(tail))
      assert.ok(tailPayload.length < 100, `refers back (${tailPayload.length} B)`)
      const inflated = c.decompress([bigPayload], bigPayload.length, 4 * MiB)
      assert.ok(inflated instanceof Promise, 'past the synchronous output bound: finished off the event loop')
      const next = c.decompress([tailPayload], tailPayload.length, 4 * MiB)
      assert.ok(next instanceof Promise, 'waits behind the thread-pool job')
      assert.ok(Buffer.from(await inflated).equals(big), 'first message intact')
      assert.ok(Buffer.from(await next).equals(tail), 'second message intact')
    } finally {
      c.close()
      peer.close()
    }
  })

  test('sharedKey: set without context takeover (same settings, same key), undefined with it', () => {
    assert.equal(codec(true).sharedKey, undefined)
    assert.equal(codec(false).sharedKey, codec(false).sharedKey)
    assert.notEqual(codec(false, 10).sharedKey, codec(false, 11).sharedKey)
  })

  test('the limiter runs at most `concurrency` jobs, in order', async () => {
    const limiter = new ZlibLimiter(2)
    let running = 0
    let peak = 0
    const order: number[] = []
    const jobs = Array.from({ length: 6 }, (_, i) =>
      limiter.run(async () => {
        running++
        peak = Math.max(peak, running)
        await sleep(5)
        order.push(i)
        running--
        return i
      }),
    )
    assert.deepEqual(await Promise.all(jobs), [0, 1, 2, 3, 4, 5])
    assert.equal(peak, 2)
    assert.equal(limiter.pending, 0)
  })

  test('close() while a stream job runs: the job rejects (never resolves with truncated output) and frees its limiter slot', async () => {
    const limiter = new ZlibLimiter(1)
    const data = Buffer.from(compressibleText(24 * MiB))
    const payload = deflate(data, { level: 9 })
    const outcomes: string[] = []
    for (const delay of [2, 10]) {
      const c = codec(true, 15, limiter)
      const pending = settle(c.decompress([payload], payload.length, 32 * MiB)).then(
        (out) => (out.length === data.length ? 'complete' : `truncated to ${out.length} B`),
        () => 'rejected',
      )
      setTimeout(() => c.close(), delay)
      outcomes.push(await withTimeout(pending, 5000, 'the job to settle after close() (it hung)'))
    }
    // The limiter must still work afterwards.
    assert.equal(
      await withTimeout(
        limiter.run(async () => 'free'),
        2000,
        'a free limiter slot (stuck)',
      ),
      'free',
    )
    for (const outcome of outcomes) assert.ok(outcome === 'rejected' || outcome === 'complete', outcome)
  })
})
