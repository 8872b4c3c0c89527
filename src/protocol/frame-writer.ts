/**
 * Frame serialization (RFC 6455 section 5.2).
 *
 * A frame goes out as two chunks, header and payload, so a server never copies a payload: the
 * socket layer writes both in one system call (writev). A client must mask, which needs a copy,
 * since the caller's buffer is not ours to change.
 */
import { Buffer } from 'node:buffer'
import { applyMask, writeRandomMask } from './mask.js'

export interface Frame {
  header: Uint8Array
  /** Undefined for an empty payload. */
  payload: Uint8Array | undefined
}

export interface FrameOptions {
  fin?: boolean
  /** RSV bits as 0x40/0x20/0x10 (set only by a negotiated extension). */
  rsv?: number
  /** Client frames are masked with a fresh random key; pass `maskKey` to fix it in tests. */
  mask?: boolean
  maskKey?: Uint8Array
}

/** Header length for a payload length: the RFC requires the minimal encoding (5.2). */
function lengthFieldSize(length: number): number {
  return length < 126 ? 0 : length < 0x10000 ? 2 : 8
}

/** Builds the header bytes of one frame. */
export function encodeFrameHeader(opcode: number, length: number, options: FrameOptions = {}): Uint8Array {
  const fin = options.fin ?? true
  const masked = options.mask ?? false
  const extra = lengthFieldSize(length)
  const header = Buffer.allocUnsafe(2 + extra + (masked ? 4 : 0))
  header[0] = (fin ? 0x80 : 0) | (options.rsv ?? 0) | opcode
  let position = 2
  if (extra === 0) {
    header[1] = length
  } else if (extra === 2) {
    header[1] = 126
    header[2] = length >>> 8
    header[3] = length & 0xff
    position = 4
  } else {
    header[1] = 127
    const high = Math.floor(length / 0x100000000)
    header.writeUInt32BE(high, 2)
    header.writeUInt32BE(length >>> 0, 6)
    position = 10
  }
  if (masked) {
    header[1]! |= 0x80
    if (options.maskKey) header.set(options.maskKey.subarray(0, 4), position)
    else writeRandomMask(header, position)
  }
  return header
}

/**
 * Builds a frame. With masking, the payload is a masked copy; without, it is `payload` itself.
 */
export function encodeFrame(opcode: number, payload: Uint8Array, options: FrameOptions = {}): Frame {
  const length = payload.length
  const header = encodeFrameHeader(opcode, length, options)
  if (length === 0) return { header, payload: undefined }
  if (!options.mask) return { header, payload }
  const masked = Buffer.allocUnsafe(length)
  applyMask(payload, masked, header, header.length - 4, 0)
  return { header, payload: masked }
}

/**
 * Builds a whole frame in one buffer: header, then the payload (masked for a client). A client
 * must copy its payload to mask it anyway, so it always writes one buffer; a server copies only
 * small payloads (see SMALL_FRAME_LIMIT), where one write beats two.
 */
export function encodeFrameInto(opcode: number, payload: Uint8Array, options: FrameOptions = {}): Uint8Array {
  const length = payload.length
  const masked = options.mask ?? false
  const headerLength = 2 + lengthFieldSize(length) + (masked ? 4 : 0)
  const frame = Buffer.allocUnsafe(headerLength + length)
  frame[0] = ((options.fin ?? true) ? 0x80 : 0) | (options.rsv ?? 0) | opcode
  if (length < 126) {
    frame[1] = length
  } else if (length < 0x10000) {
    frame[1] = 126
    frame[2] = length >>> 8
    frame[3] = length & 0xff
  } else {
    frame[1] = 127
    frame.writeUInt32BE(Math.floor(length / 0x100000000), 2)
    frame.writeUInt32BE(length >>> 0, 6)
  }
  if (!masked) {
    frame.set(payload, headerLength)
    return frame
  }
  frame[1]! |= 0x80
  const maskOffset = headerLength - 4
  if (options.maskKey) frame.set(options.maskKey.subarray(0, 4), maskOffset)
  else writeRandomMask(frame, maskOffset)
  applyMask(payload, frame.subarray(headerLength), frame, maskOffset, 0)
  return frame
}

/**
 * Encodes an unmasked frame of at most SMALL_FRAME_LIMIT payload bytes into `target` at
 * `offset` — `firstByte` (FIN, RSV, opcode), the 7- or 16-bit length (RFC 6455 5.2), the payload —
 * and returns the offset after it. The caller makes room: at most 4 + payload.length bytes.
 */
export function encodeSmallFrameAt(
  target: Uint8Array,
  offset: number,
  firstByte: number,
  payload: Uint8Array,
): number {
  const length = payload.length
  target[offset++] = firstByte
  if (length < 126) target[offset++] = length
  else {
    target[offset++] = 126
    target[offset++] = length >>> 8
    target[offset++] = length & 0xff
  }
  target.set(payload, offset)
  return offset + length
}

/**
 * Payloads up to this size are copied behind their header into one buffer on the server side:
 * one socket write instead of two costs less than copying half a kilobyte. Larger payloads are
 * written as they are, never copied.
 */
export const SMALL_FRAME_LIMIT = 512
