/**
 * `Sec-WebSocket-Key` and `Sec-WebSocket-Accept` (RFC 6455 sections 1.3, 4.1, 4.2.2).
 */
import * as crypto from 'node:crypto'

/** The GUID every WebSocket endpoint appends to the key (RFC 6455 1.3). */
export const WEBSOCKET_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'

/**
 * Node's one-shot digest (Node 20.12+, 21.7+): no Hash object per call, 0.5 µs where createHash,
 * update and digest take 1.5-2.4 µs. Read through the namespace and checked, so that a runtime
 * without it (other server runtimes' node:crypto) falls back instead of failing to link.
 */
const oneShotHash: ((algorithm: string, data: string, encoding: 'base64') => string) | undefined =
  typeof crypto.hash === 'function' ? crypto.hash : undefined

/** base64(SHA-1(key + GUID)), the value the server proves it read the key with. */
export function computeAcceptKey(key: string): string {
  if (oneShotHash !== undefined) return oneShotHash('sha1', key + WEBSOCKET_GUID, 'base64')
  return crypto
    .createHash('sha1')
    .update(key + WEBSOCKET_GUID)
    .digest('base64')
}

/** RFC 6455 4.1: "a randomly selected 16-byte value that has been base64-encoded". */
export function generateKey(): string {
  return crypto.randomBytes(16).toString('base64')
}

/**
 * Whether a key is "a base64-encoded value that, when decoded, is 16 bytes in length"
 * (RFC 6455 4.2.1, item 5): exactly 22 base64 characters followed by "==". Those always decode
 * to 16 bytes (24 characters are 18 bytes, less the two of the padding), so nothing is decoded.
 */
export function isValidKey(key: string): boolean {
  if (key.length !== 24 || key.charCodeAt(22) !== 0x3d || key.charCodeAt(23) !== 0x3d) return false
  for (let i = 0; i < 22; i++) {
    const c = key.charCodeAt(i)
    const ok =
      (c >= 0x41 && c <= 0x5a) ||
      (c >= 0x61 && c <= 0x7a) ||
      (c >= 0x30 && c <= 0x39) ||
      c === 0x2b ||
      c === 0x2f
    if (!ok) return false
  }
  return true
}
