/**
 * Masking (RFC 6455 5.3): applyMask against a byte-by-byte reference, and the mask key source.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { applyMask, writeRandomMask } from '../../src/protocol/index.js'
import { bytes, hex, patternBytes, xorMask } from './helpers.js'

describe('applyMask', () => {
  it('matches the RFC 6455 5.7 example', () => {
    const key = bytes(0x37, 0xfa, 0x21, 0x3d)
    const hello = new TextEncoder().encode('Hello')
    const out = new Uint8Array(5)
    applyMask(hello, out, key, 0, 0)
    assert.equal(hex(out), '7f9f4d5158')
  })

  it('matches the reference for any length, phase, key offset and alignment (copy and in place)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 300 }),
        fc.integer({ min: 0, max: 0xffffffff }),
        fc.integer({ min: 0, max: 3 }),
        fc.integer({ min: 0, max: 7 }),
        fc.integer({ min: 0, max: 7 }),
        fc.integer({ min: 0, max: 6 }),
        fc.boolean(),
        (length, seed, phase, sourceShift, targetShift, keyOffset, inPlace) => {
          const payload = patternBytes(length, seed)
          const keyHolder = patternBytes(keyOffset + 4, seed ^ 0x5555)
          const key = keyHolder.subarray(keyOffset, keyOffset + 4)
          const source = new Uint8Array(length + 16).subarray(sourceShift, sourceShift + length)
          source.set(payload)
          const sourceBefore = new Uint8Array(source.buffer.slice(0))
          const target = inPlace
            ? source
            : new Uint8Array(length + 16).subarray(targetShift, targetShift + length)
          const targetBefore = new Uint8Array(target.buffer.slice(0))
          applyMask(source, target, keyHolder, keyOffset, phase)
          assert.equal(hex(target), hex(xorMask(payload, key, phase)))
          // Nothing outside the target view was touched.
          const after = new Uint8Array(target.buffer)
          for (let i = 0; i < after.length; i++) {
            if (i >= target.byteOffset && i < target.byteOffset + length) continue
            assert.equal(after[i], targetBefore[i], `byte ${i} outside the target changed`)
          }
          if (!inPlace) assert.deepEqual(new Uint8Array(source.buffer), sourceBefore, 'source untouched')
        },
      ),
      { numRuns: 500 },
    )
  })

  it('masking a payload in pieces with the running phase equals masking it whole', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 400 }),
        fc.array(fc.integer({ min: 1, max: 399 }), { maxLength: 6 }),
        (length, rawCuts) => {
          const payload = patternBytes(length, length)
          const key = bytes(0xde, 0xad, 0xbe, 0xef)
          const cuts = [...new Set(rawCuts.filter((c) => c < length))].sort((a, b) => a - b)
          const work = payload.slice()
          let start = 0
          for (const end of [...cuts, length]) {
            const piece = work.subarray(start, end)
            applyMask(piece, piece, key, 0, start & 3)
            start = end
          }
          assert.equal(hex(work), hex(xorMask(payload, key)))
          applyMask(work, work, key, 0, 0)
          assert.equal(hex(work), hex(payload), 'masking twice restores the payload')
        },
      ),
      { numRuns: 300 },
    )
  })
})

describe('writeRandomMask', () => {
  it('writes exactly 4 bytes at the offset', () => {
    const target = new Uint8Array(12).fill(0xaa)
    let changed = false
    for (let i = 0; i < 8 && !changed; i++) {
      target.fill(0xaa)
      writeRandomMask(target, 4)
      assert.equal(hex(target.subarray(0, 4)), 'aaaaaaaa')
      assert.equal(hex(target.subarray(8)), 'aaaaaaaa')
      changed = hex(target.subarray(4, 8)) !== 'aaaaaaaa'
    }
    assert.ok(changed)
  })

  it('draws unpredictable keys from the CSPRNG, never Math.random, across pool refills', () => {
    const random = Math.random
    Math.random = () => {
      throw new Error('Math.random must not be used for masks')
    }
    const keys = new Set<string>()
    const counts = new Uint32Array(256)
    const draws = 5000 // 20000 bytes: more than two refills of the 8 KiB pool
    try {
      const key = new Uint8Array(4)
      for (let i = 0; i < draws; i++) {
        writeRandomMask(key, 0)
        keys.add(hex(key))
        for (const b of key) counts[b]!++
      }
    } finally {
      Math.random = random
    }
    // With 32-bit random keys, a repeat among 5000 is a 0.3 % event; allow a couple.
    assert.ok(keys.size >= draws - 2, `${keys.size} distinct keys of ${draws}`)
    // Every byte value shows up, roughly uniformly (expected 78 each).
    assert.ok(Math.min(...counts) > 20 && Math.max(...counts) < 160, 'byte distribution looks random')
  })
})
