/**
 * Masking (RFC 6455 5.3): applyMask and both of its paths (plain JS, WebAssembly SIMD) against a
 * byte-by-byte reference, and the mask key source.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { applyMask, writeRandomMask } from '../../src/protocol/index.js'
import { applyMaskJs, SIMD_THRESHOLD } from '../../src/protocol/mask.js'
import {
  createSimdMasker,
  type Masker,
  SIMD_CHUNK_BYTES,
  UNMASK_MODULE,
  type WasmApi,
} from '../../src/protocol/mask-simd.js'
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

describe('applyMask paths: JS and WebAssembly SIMD', () => {
  const simd = createSimdMasker()
  it('the hand-written wasm module validates and instantiates (Node >= 16.4 has SIMD)', () => {
    const wasm = (globalThis as { WebAssembly?: WasmApi }).WebAssembly
    assert.ok(wasm?.validate(UNMASK_MODULE), 'module does not validate')
    assert.ok(simd !== undefined, 'no SIMD masker')
  })

  const paths: [string, Masker][] = [
    ['js', applyMaskJs],
    ['simd', simd ?? applyMaskJs],
    ['applyMask', applyMask],
  ]

  /** Lengths: every one up to 300 (the threshold among them), then the SIMD chunk boundaries. */
  const lengths = [
    ...Array.from({ length: 301 }, (_, i) => i),
    SIMD_THRESHOLD - 1,
    SIMD_THRESHOLD,
    SIMD_THRESHOLD + 1,
    1023,
    4096 + 5,
    SIMD_CHUNK_BYTES - 1,
    SIMD_CHUNK_BYTES,
    SIMD_CHUNK_BYTES + 1,
    64 * 1024 + 3,
    2 * SIMD_CHUNK_BYTES + 7,
  ]
  /** [source byteOffset, target byteOffset] for separate buffers: same and different alignments. */
  const shifts: [number, number][] = [
    [0, 0],
    [1, 1],
    [8, 0],
    [0, 14],
    [3, 0],
    [2, 7],
    [5, 6],
    [7, 4],
  ]

  /** Runs `mask` once and checks the target, the bytes around it, and the source. */
  function check(
    mask: Masker,
    length: number,
    phase: number,
    keyOffset: number,
    sourceShift: number,
    targetShift: number | 'in place',
  ): void {
    const payload = patternBytes(length, length * 4 + phase + 1)
    const keyHolder = patternBytes(keyOffset + 4, 0x5eed + phase)
    const key = keyHolder.subarray(keyOffset, keyOffset + 4)
    const expected = hex(xorMask(payload, key, phase))
    const source = new Uint8Array(length + 16).fill(0xaa).subarray(sourceShift, sourceShift + length)
    source.set(payload)
    const target =
      targetShift === 'in place'
        ? source
        : new Uint8Array(length + 16).fill(0x55).subarray(targetShift, targetShift + length)
    const targetBacking = new Uint8Array(target.buffer)
    mask(source, target, keyHolder, keyOffset, phase)
    const where = `length ${length}, phase ${phase}, shifts ${sourceShift}/${targetShift}`
    if (hex(target) !== expected) {
      let i = 0
      while (target[i] === (payload[i]! ^ key[(phase + i) % 4]!)) i++
      assert.fail(`${where}: first wrong byte at ${i} of ${length}`)
    }
    const fill = targetShift === 'in place' ? 0xaa : 0x55
    for (let i = 0; i < targetBacking.length; i++) {
      if (i >= target.byteOffset && i < target.byteOffset + length) continue
      assert.equal(targetBacking[i], fill, `${where}: byte ${i} outside the target changed`)
    }
    if (targetShift !== 'in place') assert.equal(hex(source), hex(payload), `${where}: source changed`)
  }

  for (const [name, mask] of paths) {
    it(`${name}: every length 0..300 and the chunk edges, 4 phases, separate buffers at 8 alignments`, () => {
      for (const length of lengths) {
        const big = length > 300
        for (let phase = 0; phase < 4; phase++) {
          for (const [sourceShift, targetShift] of big ? shifts.slice(0, 4) : shifts) {
            check(mask, length, phase, phase, sourceShift, targetShift)
          }
        }
      }
    })

    it(`${name}: the same lengths and phases in place, at every byteOffset modulo 8`, () => {
      for (const length of lengths) {
        for (let phase = 0; phase < 4; phase++) {
          for (let shift = 0; shift < 8; shift += length > 300 ? 3 : 1) {
            check(mask, length, phase, 3 - phase, shift, 'in place')
          }
        }
      }
    })
  }

  it('a large payload unmasked in pieces of every size class, JS and SIMD mixed, equals it whole', () => {
    // As the frame parser does it: each piece in place, phase = payload offset of the piece mod 4.
    const length = 64 * 1024 + 3
    const payload = patternBytes(length, 99)
    const key = bytes(0x37, 0xfa, 0x21, 0x3d)
    const expected = hex(xorMask(payload, key))
    const pieceSizes = [1, 2, SIMD_THRESHOLD - 1, SIMD_THRESHOLD, 3, 5000, 17, SIMD_THRESHOLD + 1, 40001]
    for (let rotation = 0; rotation < pieceSizes.length; rotation++) {
      const sizes = [...pieceSizes.slice(rotation), ...pieceSizes.slice(0, rotation)]
      const work = new Uint8Array(length + 5).subarray(rotation % 5, (rotation % 5) + length)
      work.set(payload)
      let start = 0
      for (let s = 0; start < length; s++) {
        const end = Math.min(length, start + sizes[s % sizes.length]!)
        const piece = work.subarray(start, end)
        applyMask(piece, piece, key, 0, start & 3)
        start = end
      }
      assert.equal(hex(work), expected, `rotation ${rotation}`)
    }
  })

  it('without WebAssembly or SIMD there is no SIMD masker, silently', () => {
    const real = (globalThis as { WebAssembly?: WasmApi }).WebAssembly!
    assert.equal(createSimdMasker(null), undefined, 'no WebAssembly (node --jitless)')
    assert.equal(createSimdMasker({ ...real, validate: () => false }), undefined, 'no SIMD: validate false')
    const throwing = class {
      constructor() {
        throw new Error('CompileError')
      }
    }
    assert.equal(createSimdMasker({ ...real, validate: () => true, Module: throwing }), undefined)
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
