/**
 * Masking (RFC 6455 5.3): payload byte i is XORed with byte (i mod 4) of the masking key.
 *
 * Clients "MUST pick a fresh masking key from the set of allowed 32-bit values" that is
 * unpredictable (RFC 6455 5.3), so keys come from the CSPRNG, drawn in pooled batches so that a
 * busy client does not pay a system call per frame. Never Math.random.
 */
import { createSimdMasker, type Masker } from './mask-simd.js'

const MASK_POOL_BYTES = 8192
let maskPool = new Uint8Array(MASK_POOL_BYTES)
let maskPoolOffset = MASK_POOL_BYTES

/** Writes a fresh 4-byte masking key at `target[offset..offset+4)`. */
export function writeRandomMask(target: Uint8Array, offset: number): void {
  if (maskPoolOffset === MASK_POOL_BYTES) {
    // A new array rather than refilling: keys already handed out may still be referenced.
    maskPool = new Uint8Array(MASK_POOL_BYTES)
    crypto.getRandomValues(maskPool)
    maskPoolOffset = 0
  }
  target[offset] = maskPool[maskPoolOffset]!
  target[offset + 1] = maskPool[maskPoolOffset + 1]!
  target[offset + 2] = maskPool[maskPoolOffset + 2]!
  target[offset + 3] = maskPool[maskPoolOffset + 3]!
  maskPoolOffset += 4
}

/** Below this many bytes a plain byte loop beats setting up a wide view. */
const WORD_LOOP_THRESHOLD = 64

/**
 * From this many bytes on, the WebAssembly SIMD masker (copy into wasm memory, v128.xor, copy out)
 * beats the JS loops below, copies included. Measured on Node 20 / x64: below 64 bytes the JS byte
 * loop wins (a wasm call and two copies cost about 45 ns, a 48-byte byte loop about 30 ns); from 64
 * bytes, where the JS path switches to typed-array word views, wasm is faster at every size: about
 * 1.2x at 64 B, 2x from 4 KiB (in place 35 vs 18 GB/s at 64 KiB), and far more when source and
 * target are not aligned alike (the JS path then falls back to bytes). See mask-simd.ts.
 */
export const SIMD_THRESHOLD = 64

/** The SIMD masker once tried: undefined before the first large payload, null if unavailable. */
let simdMasker: Masker | null | undefined

/**
 * XORs `source` with the key `mask[maskOffset..+4)` into `target` (which may be `source` itself,
 * to unmask in place, or must not overlap it). `phase` is the payload position of `source[0]`
 * modulo 4, so that a payload arriving in pieces is unmasked correctly piece by piece.
 *
 * Payloads of SIMD_THRESHOLD bytes or more go to the WebAssembly SIMD masker when the runtime has
 * one (compiled on first use); the rest, or everything without it, to applyMaskJs.
 */
export function applyMask(
  source: Uint8Array,
  target: Uint8Array,
  mask: Uint8Array,
  maskOffset: number,
  phase: number,
): void {
  if (source.length >= SIMD_THRESHOLD) {
    if (simdMasker === undefined) simdMasker = createSimdMasker() ?? null
    if (simdMasker !== null) {
      simdMasker(source, target, mask, maskOffset, phase)
      return
    }
  }
  applyMaskJs(source, target, mask, maskOffset, phase)
}

/**
 * applyMask in plain JS (exported for the tests, which check both paths). Works on 64-bit words
 * (4 per iteration) where source and target share their alignment modulo 8, 32-bit words where
 * they share it modulo 4, bytes elsewhere.
 */
export function applyMaskJs(
  source: Uint8Array,
  target: Uint8Array,
  mask: Uint8Array,
  maskOffset: number,
  phase: number,
): void {
  const length = source.length
  let i = 0
  if (length >= WORD_LOOP_THRESHOLD) {
    const wide = source.byteOffset % 8 === target.byteOffset % 8
    if (wide || source.byteOffset % 4 === target.byteOffset % 4) {
      const align = wide ? 8 : 4
      const misalignment = (align - (source.byteOffset % align)) % align
      for (; i < misalignment; i++) target[i] = source[i]! ^ mask[maskOffset + ((phase + i) & 3)]!
      // The key words hold the key bytes in memory order, starting where word 0 falls in the key;
      // reading them through typed arrays makes them right on either endianness.
      const wordPhase = (phase + i) & 3
      for (let k = 0; k < 8; k++) keyBytes[k] = mask[maskOffset + ((wordPhase + k) & 3)]!
      if (wide) {
        const words = (length - i) >>> 3
        const key = keyWide[0]!
        const src = new BigUint64Array(source.buffer, source.byteOffset + i, words)
        const dst = target === source ? src : new BigUint64Array(target.buffer, target.byteOffset + i, words)
        let w = 0
        for (; w + 4 <= words; w += 4) {
          dst[w] = src[w]! ^ key
          dst[w + 1] = src[w + 1]! ^ key
          dst[w + 2] = src[w + 2]! ^ key
          dst[w + 3] = src[w + 3]! ^ key
        }
        for (; w < words; w++) dst[w] = src[w]! ^ key
        i += words * 8
      } else {
        const words = (length - i) >>> 2
        const key = keyNarrow[0]!
        const src = new Uint32Array(source.buffer, source.byteOffset + i, words)
        const dst = target === source ? src : new Uint32Array(target.buffer, target.byteOffset + i, words)
        let w = 0
        for (; w + 4 <= words; w += 4) {
          dst[w] = src[w]! ^ key
          dst[w + 1] = src[w + 1]! ^ key
          dst[w + 2] = src[w + 2]! ^ key
          dst[w + 3] = src[w + 3]! ^ key
        }
        for (; w < words; w++) dst[w] = src[w]! ^ key
        i += words * 4
      }
    }
  }
  if (i === length) return
  // Short payloads and tails: the key bytes in locals, rotated to where byte i falls in the key.
  const p = phase + i
  const k0 = mask[maskOffset + (p & 3)]!
  const k1 = mask[maskOffset + ((p + 1) & 3)]!
  const k2 = mask[maskOffset + ((p + 2) & 3)]!
  const k3 = mask[maskOffset + ((p + 3) & 3)]!
  for (; i + 4 <= length; i += 4) {
    target[i] = source[i]! ^ k0
    target[i + 1] = source[i + 1]! ^ k1
    target[i + 2] = source[i + 2]! ^ k2
    target[i + 3] = source[i + 3]! ^ k3
  }
  if (i < length) target[i] = source[i]! ^ k0
  if (i + 1 < length) target[i + 1] = source[i + 1]! ^ k1
  if (i + 2 < length) target[i + 2] = source[i + 2]! ^ k2
}

const keyWide = new BigUint64Array(1)
const keyNarrow = new Uint32Array(keyWide.buffer, 0, 1)
const keyBytes = new Uint8Array(keyWide.buffer)
