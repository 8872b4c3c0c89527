/**
 * `Sec-WebSocket-Key` and `Sec-WebSocket-Accept` (RFC 6455 sections 1.3, 4.1, 4.2.2).
 */
import { Buffer } from 'node:buffer'
import { createHash, randomBytes } from 'node:crypto'

/** The GUID every WebSocket endpoint appends to the key (RFC 6455 1.3). */
export const WEBSOCKET_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'

/** base64(SHA-1(key + GUID)), the value the server proves it read the key with. */
export function computeAcceptKey(key: string): string {
  return createHash('sha1')
    .update(key + WEBSOCKET_GUID)
    .digest('base64')
}

/** RFC 6455 4.1: "a randomly selected 16-byte value that has been base64-encoded". */
export function generateKey(): string {
  return randomBytes(16).toString('base64')
}

/**
 * Whether a key is "a base64-encoded value that, when decoded, is 16 bytes in length"
 * (RFC 6455 4.2.1, item 5): exactly 22 base64 characters followed by "==".
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
  const decoded = Buffer.from(key, 'base64')
  return decoded.length === 16
}
