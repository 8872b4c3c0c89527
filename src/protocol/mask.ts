/**
 * Masking (RFC 6455 5.3): payload byte i is XORed with byte (i mod 4) of the masking key.
 *
 * Clients "MUST pick a fresh masking key from the set of allowed 32-bit values" that is
 * unpredictable (RFC 6455 5.3), so keys come from the CSPRNG, drawn in pooled batches so that a
 * busy client does not pay a system call per frame. Never Math.random.
 */

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

/** Below this many bytes a plain byte loop beats setting up a 32-bit view. */
const WORD_LOOP_THRESHOLD = 32

/**
 * XORs `source` with the key `mask[maskOffset..+4)` into `target` (which may be `source` itself,
 * to unmask in place). `phase` is the payload position of `source[0]` modulo 4, so that a payload
 * arriving in pieces is unmasked correctly piece by piece.
 *
 * Works on 32-bit words where the memory is aligned, bytes elsewhere.
 */
export function applyMask(
  source: Uint8Array,
  target: Uint8Array,
  mask: Uint8Array,
  maskOffset: number,
  phase: number,
): void {
  const length = source.length
  let i = 0
  if (length >= WORD_LOOP_THRESHOLD && source.byteOffset % 4 === target.byteOffset % 4) {
    // Walk bytes up to the first 4-byte aligned address, then whole words.
    const misalignment = (4 - (source.byteOffset % 4)) % 4
    for (; i < misalignment; i++) target[i] = source[i]! ^ mask[maskOffset + ((phase + i) & 3)]!
    const words = (length - i) >>> 2
    // The key word holds the key bytes in memory order, starting where word 0 falls in the key;
    // reading it through a Uint32Array makes it right on either endianness.
    const wordPhase = (phase + i) & 3
    keyBytes[0] = mask[maskOffset + (wordPhase & 3)]!
    keyBytes[1] = mask[maskOffset + ((wordPhase + 1) & 3)]!
    keyBytes[2] = mask[maskOffset + ((wordPhase + 2) & 3)]!
    keyBytes[3] = mask[maskOffset + ((wordPhase + 3) & 3)]!
    const keyWord = keyWordView[0]!
    const sourceWords = new Uint32Array(source.buffer, source.byteOffset + i, words)
    const targetWords =
      target === source ? sourceWords : new Uint32Array(target.buffer, target.byteOffset + i, words)
    for (let w = 0; w < words; w++) targetWords[w] = sourceWords[w]! ^ keyWord
    i += words * 4
  }
  for (; i < length; i++) target[i] = source[i]! ^ mask[maskOffset + ((phase + i) & 3)]!
}

const keyWordView = new Uint32Array(1)
const keyBytes = new Uint8Array(keyWordView.buffer)
