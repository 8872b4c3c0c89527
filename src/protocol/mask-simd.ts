/**
 * A WebAssembly SIMD masker for large payloads. RFC 6455 5.3: "Octet i of the transformed data
 * ("transformed-octet-i") is the XOR of octet i of the original data ("original-octet-i") with
 * octet at index i modulo 4 of the masking key ("masking-key-octet-j")".
 *
 * Why WebAssembly: V8 does not vectorize JavaScript loops, so the JS masker tops out at one 64-bit
 * XOR per step, while a native addon (bufferutil) XORs 16 or 32 bytes at a time. A 128-bit
 * v128.xor with the key splatted over four lanes (the key repeats every 4 bytes, so one 32-bit
 * word of it fills a vector) runs at several times the JS speed.
 *
 * Why the copies: WebAssembly code can only address its own linear memory, and a Node Buffer (a
 * socket read, a caller's payload) cannot be placed there, so each chunk is copied into a fixed
 * scratch area, XORed, and copied out. The copies are plain memmoves, yet they cost more than the
 * XOR itself: in place on 64 KiB, XOR alone runs at about 95 GB/s, copies included at about 35
 * (JS 18, bufferutil 60). On small payloads their fixed cost loses to the JS loop, hence the size
 * threshold in mask.ts.
 *
 * The module is written out byte by byte below (no toolchain, no dependency). It is compiled on
 * first use, not on import, so that programs that never see a large masked payload pay nothing.
 */

/** A masker: XORs `source` into `target` (possibly the same view) with the key word. */
export type Masker = (
  source: Uint8Array,
  target: Uint8Array,
  mask: Uint8Array,
  maskOffset: number,
  phase: number,
) => void

/** The few parts of the WebAssembly JS API used here (the project's lib settings do not type it). */
export interface WasmApi {
  validate(bytes: Uint8Array): boolean
  Module: new (bytes: Uint8Array) => object
  Instance: new (module: object, imports: object) => { exports: Record<string, unknown> }
}

/**
 * Scratch bytes in wasm memory: one 64 KiB page. Longer payloads go through in chunks of this size;
 * being a multiple of 4, a chunk boundary never moves the key phase.
 */
export const SIMD_CHUNK_BYTES = 64 * 1024

// ------------------------------------------------------------------ the module, byte by byte

// Value types, control and memory instructions (WebAssembly core spec 5.3 and 5.4).
const I32 = 0x7f
const V128 = 0x7b
const FUNC = 0x60
const VOID = 0x40
const BLOCK = 0x02
const LOOP = 0x03
const BR = 0x0c
const BR_IF = 0x0d
const END = 0x0b
const LOCAL_GET = 0x20
const LOCAL_SET = 0x21
const I32_LOAD = 0x28
const I32_LOAD8_U = 0x2d
const I32_STORE = 0x36
const I32_STORE8 = 0x3a
const I32_CONST = 0x41
const I32_LT_U = 0x49
const I32_GE_U = 0x4f
const I32_ADD = 0x6a
const I32_SUB = 0x6b
const I32_XOR = 0x73
const I32_SHR_U = 0x76
// SIMD instructions: the 0xfd prefix, then the opcode as a LEB128 u32 (all of these fit one byte).
const SIMD = 0xfd
const V128_LOAD = 0x00
const V128_STORE = 0x0b
const I32X4_SPLAT = 0x11
const V128_XOR = 0x51

// unmask's locals: the three parameters, then `end` and the splatted key vector.
const PTR = 0
const LEN = 1
const KEY = 2
const END_PTR = 3
const KEY_VECTOR = 4

/** `mem[ptr + offset .. +16) ^= keyVector` (memarg: alignment 2^4, then the offset). */
function xorVector(offset: number): number[] {
  // biome-ignore format: one instruction per line, operands beside their opcode
  return [
    LOCAL_GET, PTR,
    LOCAL_GET, PTR, SIMD, V128_LOAD, 4, offset,
    LOCAL_GET, KEY_VECTOR, SIMD, V128_XOR,
    SIMD, V128_STORE, 4, offset,
  ]
}

/** `while (end - ptr >= step) { body; ptr += step }`. `stepBytes` is the step as a signed LEB128. */
function loopWhileRoom(stepBytes: number[], body: number[]): number[] {
  // biome-ignore format: one instruction per line, operands beside their opcode
  return [
    BLOCK, VOID, LOOP, VOID,
    LOCAL_GET, END_PTR, LOCAL_GET, PTR, I32_SUB, I32_CONST, ...stepBytes, I32_LT_U, BR_IF, 1,
    ...body,
    LOCAL_GET, PTR, I32_CONST, ...stepBytes, I32_ADD, LOCAL_SET, PTR,
    BR, 0,
    END, END,
  ]
}

/**
 * `unmask(ptr, len, key)`: XORs `mem[ptr .. ptr+len)` in place with the 4-byte key whose first byte
 * (the one for mem[ptr]) is the low byte of `key` — wasm memory is little-endian on every host.
 */
// biome-ignore format: one instruction per line, operands beside their opcode
const UNMASK_BODY = [
  // key vector = i32x4.splat(key); end = ptr + len
  LOCAL_GET, KEY, SIMD, I32X4_SPLAT, LOCAL_SET, KEY_VECTOR,
  LOCAL_GET, PTR, LOCAL_GET, LEN, I32_ADD, LOCAL_SET, END_PTR,
  // 64 bytes per step (64 is 0xc0 0x00 as a signed LEB128: a bare 0x40 would read as -64) ...
  ...loopWhileRoom([0xc0, 0x00], [...xorVector(0), ...xorVector(16), ...xorVector(32), ...xorVector(48)]),
  // ... then 16 ...
  ...loopWhileRoom([16], xorVector(0)),
  // ... then 4: the key word as it is, since every step so far was a multiple of 4 bytes ...
  ...loopWhileRoom([4], [
    LOCAL_GET, PTR,
    LOCAL_GET, PTR, I32_LOAD, 2, 0, LOCAL_GET, KEY, I32_XOR,
    I32_STORE, 2, 0,
  ]),
  // ... then the last 0-3 bytes, shifting the key down a byte each time (store8 keeps the low 8).
  BLOCK, VOID, LOOP, VOID,
  LOCAL_GET, PTR, LOCAL_GET, END_PTR, I32_GE_U, BR_IF, 1,
  LOCAL_GET, PTR,
  LOCAL_GET, PTR, I32_LOAD8_U, 0, 0, LOCAL_GET, KEY, I32_XOR,
  I32_STORE8, 0, 0,
  LOCAL_GET, KEY, I32_CONST, 8, I32_SHR_U, LOCAL_SET, KEY,
  LOCAL_GET, PTR, I32_CONST, 1, I32_ADD, LOCAL_SET, PTR,
  BR, 0,
  END, END,
  END,
]

/** Prefixes `bytes` with its length as a LEB128 u32. */
function sized(bytes: number[]): number[] {
  const length: number[] = []
  let n = bytes.length
  do {
    length.push(n >= 0x80 ? (n & 0x7f) | 0x80 : n)
    n >>>= 7
  } while (n > 0)
  return [...length, ...bytes]
}

/** Wasm pages are 64 KiB; the count is written as a one-byte LEB128 below, so it must stay < 128. */
const SCRATCH_PAGES = SIMD_CHUNK_BYTES / 65536

/** The whole module (core spec 5.5): one function type, one function, one memory, two exports. */
// biome-ignore format: one section per line
export const UNMASK_MODULE = Uint8Array.from([
  // magic "\0asm", version 1
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
  // type section: [func (i32 i32 i32) -> ()]
  0x01, ...sized([1, FUNC, 3, I32, I32, I32, 0]),
  // function section: function 0 has type 0
  0x03, ...sized([1, 0]),
  // memory section: one memory, min = max = SCRATCH_PAGES (fixed: the buffer never detaches)
  0x05, ...sized([1, 0x01, SCRATCH_PAGES, SCRATCH_PAGES]),
  // export section: "unmask" = func 0, "memory" = memory 0
  0x07, ...sized([
    2,
    6, 0x75, 0x6e, 0x6d, 0x61, 0x73, 0x6b, 0x00, 0,
    6, 0x6d, 0x65, 0x6d, 0x6f, 0x72, 0x79, 0x02, 0,
  ]),
  // code section: one body, locals (1 x i32 end, 1 x v128 key vector), then the instructions
  0x0a, ...sized([1, ...sized([2, 1, I32, 1, V128, ...UNMASK_BODY])]),
])

// ------------------------------------------------------------------ the masker

/**
 * Compiles the module and returns a masker, or undefined when WebAssembly or its SIMD proposal is
 * unavailable (no WebAssembly under --jitless, validate() false on engines without SIMD) or
 * compiling fails for any other reason: the caller then keeps the JS path, silently.
 */
export function createSimdMasker(
  // The runtime's WebAssembly by default; the tests pass null (none) or fakes.
  wasm: WasmApi | null | undefined = (globalThis as { WebAssembly?: WasmApi }).WebAssembly,
): Masker | undefined {
  let unmask: (ptr: number, length: number, key: number) => void
  let scratch: Uint8Array
  try {
    if (wasm == null || !wasm.validate(UNMASK_MODULE)) return undefined
    const { exports } = new wasm.Instance(new wasm.Module(UNMASK_MODULE), {})
    unmask = exports.unmask as typeof unmask
    scratch = new Uint8Array((exports.memory as { buffer: ArrayBuffer }).buffer)
    if (typeof unmask !== 'function' || scratch.length < SIMD_CHUNK_BYTES) return undefined
  } catch {
    return undefined
  }
  return (source, target, mask, maskOffset, phase) => {
    const length = source.length
    // The key bytes rotated so that the first lands on source[0], as a little-endian word.
    const key =
      mask[maskOffset + (phase & 3)]! |
      (mask[maskOffset + ((phase + 1) & 3)]! << 8) |
      (mask[maskOffset + ((phase + 2) & 3)]! << 16) |
      (mask[maskOffset + ((phase + 3) & 3)]! << 24)
    for (let i = 0; i < length; i += SIMD_CHUNK_BYTES) {
      const n = Math.min(SIMD_CHUNK_BYTES, length - i)
      scratch.set(n === length ? source : source.subarray(i, i + n))
      unmask(0, n, key)
      // In place, chunk i of source is read in full before chunk i of target is written.
      target.set(n === SIMD_CHUNK_BYTES ? scratch : scratch.subarray(0, n), i)
    }
  }
}
