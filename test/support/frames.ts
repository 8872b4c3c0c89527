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
