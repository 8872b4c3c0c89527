/**
 * Hand-made WebSocket frames for raw peers in every suite: a client frame (RFC 6455 5.2, masked
 * with a random key as 5.3 requires of clients, unless a test breaks that rule on purpose) and a
 * close frame's payload (5.5.1).
 */
import { Buffer } from 'node:buffer'
import { applyMask, encodeFrameHeader } from '../../src/protocol/index.js'

export interface FrameSpec {
  /** Default true. */
  fin?: boolean
  /** RSV bits as they sit in the first byte: 0x40, 0x20, 0x10. */
  rsv?: number
  /** Default true: client frames are masked. */
  mask?: boolean
}

/** One complete client frame: header and payload, masked with a random key unless `mask: false`. */
export function clientFrame(opcode: number, payload: Uint8Array | string = '', spec: FrameSpec = {}): Buffer {
  const data = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload
  const mask = spec.mask ?? true
  const header = encodeFrameHeader(opcode, data.length, { fin: spec.fin ?? true, rsv: spec.rsv ?? 0, mask })
  if (!mask || data.length === 0) return Buffer.concat([header, data])
  const masked = Buffer.allocUnsafe(data.length)
  applyMask(data, masked, header, header.length - 4, 0)
  return Buffer.concat([header, masked])
}

/** A close frame's payload: the 2-byte code, then the reason's bytes as given. */
export function closePayload(code: number, reason: Uint8Array | string = ''): Buffer {
  const reasonBytes = typeof reason === 'string' ? Buffer.from(reason, 'utf8') : Buffer.from(reason)
  const payload = Buffer.alloc(2 + reasonBytes.length)
  payload.writeUInt16BE(code, 0)
  reasonBytes.copy(payload, 2)
  return payload
}

/** A frame as it was on the wire (servers' frames unmasked, clients' unmasked here for reading). */
export interface WireFrame {
  fin: boolean
  /** RSV bits as they sit in the first byte: 0x40, 0x20, 0x10. */
  rsv: number
  opcode: number
  masked: boolean
  payload: Buffer
}

/**
 * The first frame of `buffer` and how many bytes it took, or undefined while it is incomplete.
 * An independent reading of RFC 6455 5.2, not the library's parser: a test checks the library
 * against it.
 */
export function parseFrame(buffer: Buffer): { frame: WireFrame; size: number } | undefined {
  if (buffer.length < 2) return undefined
  const b0 = buffer[0]!
  const b1 = buffer[1]!
  let length = b1 & 0x7f
  let position = 2
  if (length === 126) {
    if (buffer.length < 4) return undefined
    length = buffer.readUInt16BE(2)
    position = 4
  } else if (length === 127) {
    if (buffer.length < 10) return undefined
    length = Number(buffer.readBigUInt64BE(2))
    position = 10
  }
  const masked = (b1 & 0x80) !== 0
  let key: Buffer | undefined
  if (masked) {
    if (buffer.length < position + 4) return undefined
    key = buffer.subarray(position, position + 4)
    position += 4
  }
  if (buffer.length < position + length) return undefined
  const payload = Buffer.from(buffer.subarray(position, position + length))
  if (key !== undefined) for (let i = 0; i < payload.length; i++) payload[i]! ^= key[i & 3]!
  return {
    frame: { fin: (b0 & 0x80) !== 0, rsv: b0 & 0x70, opcode: b0 & 0x0f, masked, payload },
    size: position + length,
  }
}
