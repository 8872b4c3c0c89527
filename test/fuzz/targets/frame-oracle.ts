/**
 * What RFC 6455 says a connection must make of a byte stream, written from the RFC for the frames
 * fuzz target (not from the code under test): the messages, control frames and close it delivers,
 * and the close code it fails with, if any; with permessage-deflate without context takeover too
 * (RFC 7692 6: RSV1 marks a compressed message, on its first frame only, never on control frames).
 *
 * It reads the stream as the connection must: a fault is found as soon as the bytes that show it
 * have arrived (a frame header's first two bytes, a declared length, the first byte that cannot
 * continue UTF-8), so a stream that ends inside a frame still fails if what arrived is wrong.
 */
import { Buffer } from 'node:buffer'
import { constants, inflateRawSync } from 'node:zlib'

export interface OracleLimits {
  maxMessageSize: number
  maxFrameSize: number
  maxFragments: number
}

/**
 * permessage-deflate negotiated (each message compressed on its own). The limits on compressed
 * sizes are the implementation's policy, not the RFC's, so the caller gives them.
 */
export interface OracleDeflate {
  /** Largest frame, compressed or not, once deflate is negotiated. */
  frameLimit: number
  /** Largest compressed message, by its declared frame lengths. */
  compressedMessageLimit: number
}

/** Inflates one message (RFC 7692 7.2.2: append 00 00 FF FF); a close code when it cannot. */
function inflate(compressed: Uint8Array, maxSize: number): Uint8Array | number {
  try {
    return inflateRawSync(Buffer.concat([compressed, Uint8Array.of(0, 0, 0xff, 0xff)]), {
      finishFlush: constants.Z_SYNC_FLUSH,
      maxOutputLength: Math.max(1, maxSize),
    })
  } catch (error) {
    return (error as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE' ? 1009 : 1007
  }
}

const CONTINUATION = 0x0
const TEXT = 0x1
const BINARY = 0x2
const CLOSE = 0x8
const PING = 0x9
const PONG = 0xa

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex')
}

/** RFC 6455 7.4.1 and the IANA registry: the codes a close frame may carry. */
function isSendableCode(code: number): boolean {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999)
}

/**
 * The events, as `message text <hex>`, `message binary <hex>`, `ping <hex>`, `pong <hex>`,
 * `close <code> <reason as JSON>` and `fail <close code>`.
 */
export function expectedEvents(
  wire: Uint8Array,
  expectMasked: boolean,
  limits: OracleLimits,
  deflate?: OracleDeflate,
): string[] {
  const events: string[] = []
  let offset = 0
  // The data message being received.
  let messageOpcode = 0
  let messageLength = 0
  let fragments = 0
  let messageParts: Uint8Array[] = []
  let compressed = false
  let utf8 = new TextDecoder('utf-8', { fatal: true })

  const fail = (code: number): string[] => {
    events.push(`fail ${code}`)
    return events
  }

  while (offset < wire.length) {
    if (wire.length - offset < 2) return events
    const b0 = wire[offset]!
    const b1 = wire[offset + 1]!
    const fin = (b0 & 0x80) !== 0
    const opcode = b0 & 0x0f
    const masked = (b1 & 0x80) !== 0
    const length7 = b1 & 0x7f
    const isControl = opcode >= 0x8
    // 5.2: reserved bits without an extension (RFC 7692 6: RSV1 with deflate); unknown opcodes.
    // 5.1: masking by direction.
    const rsv1 = (b0 & 0x40) !== 0
    if ((b0 & (deflate === undefined ? 0x70 : 0x30)) !== 0) return fail(1002)
    if (![CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG].includes(opcode)) return fail(1002)
    if (masked !== expectMasked) return fail(1002)
    // 5.5: control frames are never fragmented and carry at most 125 bytes.
    if (isControl && (!fin || length7 > 125)) return fail(1002)
    const extended = length7 === 126 ? 2 : length7 === 127 ? 8 : 0
    const headerLength = 2 + extended + (masked ? 4 : 0)
    if (wire.length - offset < headerLength) return events
    let length = length7
    if (length7 === 126) length = (wire[offset + 2]! << 8) | wire[offset + 3]!
    if (length7 === 127) {
      const view = new DataView(wire.buffer, wire.byteOffset + offset + 2, 8)
      const top = view.getUint32(0)
      // 5.2: "the most significant bit MUST be 0".
      if (top >= 0x80000000) return fail(1002)
      length = top * 2 ** 32 + view.getUint32(4)
    }
    if (!isControl && length > (deflate?.frameLimit ?? limits.maxFrameSize)) return fail(1009)
    // RFC 7692 6.1: no RSV1 on control frames, nor on "non-first fragments of a data message".
    if (rsv1 && (isControl || opcode === CONTINUATION)) return fail(1002)
    const key = masked ? wire.subarray(offset + headerLength - 4, offset + headerLength) : undefined
    if (!isControl) {
      // 5.4: a continuation needs a message to continue; a new message waits for the last one.
      if (opcode === CONTINUATION && messageOpcode === 0) return fail(1002)
      if (opcode !== CONTINUATION && messageOpcode !== 0) return fail(1002)
      if (opcode !== CONTINUATION) {
        messageOpcode = opcode
        messageLength = 0
        fragments = 0
        messageParts = []
        compressed = rsv1
        utf8 = new TextDecoder('utf-8', { fatal: true })
      }
      if (++fragments > limits.maxFragments) return fail(1009)
      const messageLimit = compressed ? deflate!.compressedMessageLimit : limits.maxMessageSize
      if (messageLength + length > messageLimit) return fail(1009)
      messageLength += length
    }
    const start = offset + headerLength
    const available = Math.min(length, wire.length - start)
    const payload = wire.slice(start, start + available)
    if (key !== undefined) for (let i = 0; i < payload.length; i++) payload[i]! ^= key[i % 4]!
    if (!isControl) {
      messageParts.push(payload)
      // 8.1: text that cannot be UTF-8 fails as soon as it is seen (once inflated, if compressed).
      if (messageOpcode === TEXT && !compressed) {
        try {
          utf8.decode(payload, { stream: true })
        } catch {
          return fail(1007)
        }
      }
    }
    if (available < length) return events
    offset = start + length
    if (isControl) {
      if (opcode === PING) events.push(`ping ${hex(payload)}`)
      else if (opcode === PONG) events.push(`pong ${hex(payload)}`)
      else {
        // 5.5.1: an empty body, or a 2-byte code and a UTF-8 reason.
        if (payload.length === 0) {
          events.push(`close 1005 ""`)
          return events
        }
        if (payload.length === 1) return fail(1002)
        const code = (payload[0]! << 8) | payload[1]!
        if (!isSendableCode(code)) return fail(1002)
        let reason: string
        try {
          reason = new TextDecoder('utf-8', { fatal: true }).decode(payload.subarray(2))
        } catch {
          return fail(1007)
        }
        events.push(`close ${code} ${JSON.stringify(reason)}`)
        // 5.5.1: nothing is read after a close frame.
        return events
      }
      continue
    }
    if (!fin) continue
    let data: Uint8Array = Buffer.concat(messageParts)
    if (compressed) {
      const inflated = inflate(data, limits.maxMessageSize)
      if (typeof inflated === 'number') return fail(inflated)
      data = inflated
      if (messageOpcode === TEXT) {
        try {
          new TextDecoder('utf-8', { fatal: true }).decode(data)
        } catch {
          return fail(1007)
        }
      }
    } else if (messageOpcode === TEXT) {
      try {
        utf8.decode()
      } catch {
        return fail(1007)
      }
    }
    events.push(`message ${messageOpcode === TEXT ? 'text' : 'binary'} ${hex(data)}`)
    messageOpcode = 0
  }
  return events
}
