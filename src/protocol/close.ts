/**
 * Close codes and close frame payloads (RFC 6455 sections 5.5.1 and 7.4).
 */
import { Buffer } from 'node:buffer'

export const CloseCode = {
  Normal: 1000,
  GoingAway: 1001,
  ProtocolError: 1002,
  UnsupportedData: 1003,
  /** Never on the wire: "no status code was present" (RFC 6455 7.4.1). */
  NoStatus: 1005,
  /** Never on the wire: the connection closed without a close frame (RFC 6455 7.4.1). */
  Abnormal: 1006,
  InvalidPayload: 1007,
  PolicyViolation: 1008,
  MessageTooBig: 1009,
  MandatoryExtension: 1010,
  InternalError: 1011,
  ServiceRestart: 1012,
  TryAgainLater: 1013,
  BadGateway: 1014,
  /** Never on the wire: the TLS handshake failed (RFC 6455 7.4.1). */
  TlsHandshake: 1015,
} as const

/**
 * Whether a close code may appear in a close frame. RFC 6455 7.4.1 reserves 1004, 1005, 1006 and
 * 1015 ("MUST NOT be set as a status code in a Close control frame"); the IANA registry has assigned
 * 1000-1003 and 1007-1014 in the 1000-2999 range, the rest of which is reserved; 3000-3999 are
 * registered by libraries and frameworks, 4000-4999 are private use.
 */
export function isValidWireCloseCode(code: number): boolean {
  if (!Number.isInteger(code)) return false
  if (code >= 1000 && code <= 1003) return true
  if (code >= 1007 && code <= 1014) return true
  return code >= 3000 && code <= 4999
}

/** The longest close reason: a control frame payload is at most 125 bytes, 2 of which are the code. */
export const MAX_CLOSE_REASON_BYTES = 123

const EMPTY = new Uint8Array(0)

/**
 * Builds a close frame payload. With no code the payload is empty (the peer reads 1005).
 * Throws RangeError on a code that may not be sent or a reason over 123 UTF-8 bytes: both are the
 * caller's mistake, not the peer's.
 */
export function encodeClosePayload(code?: number, reason = ''): Uint8Array {
  if (code === undefined) {
    if (reason !== '') throw new TypeError('A close reason needs a close code')
    return EMPTY
  }
  if (!isValidWireCloseCode(code)) throw new RangeError(`Close code ${code} may not be sent on the wire`)
  const reasonLength = Buffer.byteLength(reason)
  if (reasonLength > MAX_CLOSE_REASON_BYTES) {
    throw new RangeError(`Close reason is ${reasonLength} bytes; the limit is ${MAX_CLOSE_REASON_BYTES}`)
  }
  // allocUnsafe is safe here: every byte is written below, so no old memory can leak to the peer.
  const payload = Buffer.allocUnsafe(2 + reasonLength)
  payload.writeUInt16BE(code, 0)
  if (reasonLength > 0) payload.write(reason, 2, 'utf8')
  return payload
}
