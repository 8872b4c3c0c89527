/**
 * UTF-8 validation, incremental, for text messages and close reasons (RFC 6455 8.1: "When an
 * endpoint is to interpret a byte stream as UTF-8 but finds that the byte stream is not, in fact,
 * a valid UTF-8 stream, that endpoint MUST _Fail the WebSocket Connection_").
 *
 * Text arrives in pieces (frames split across TCP reads, messages split across frames), and a
 * code point may straddle two pieces. The validator checks each piece as it arrives, so an invalid
 * byte fails the connection at once rather than after the whole message is buffered.
 *
 * The bulk of each piece goes through Node's native `isUtf8` (simdutf); only the at most 3 bytes of
 * a code point cut at a piece border go through the small state machine below. Measured faster
 * than a streaming `TextDecoder({ fatal: true })`, which also builds a string we may not need.
 */
import { isUtf8 } from 'node:buffer'

export class Utf8Validator {
  /** Continuation bytes still expected to finish the current code point. */
  private pending = 0
  /** Allowed range of the next continuation byte (narrower right after E0, ED, F0 and F4). */
  private lower = 0x80
  private upper = 0xbf

  reset(): void {
    this.pending = 0
    this.lower = 0x80
    this.upper = 0xbf
  }

  /** Whether the bytes so far end on a code point boundary (a message may end here). */
  get complete(): boolean {
    return this.pending === 0
  }

  /** Checks the next piece. Returns false as soon as the bytes seen so far cannot be UTF-8. */
  push(bytes: Uint8Array): boolean {
    const end = bytes.length
    let i = 0
    // Finish a code point cut at the previous border.
    while (this.pending > 0 && i < end) {
      if (!this.continuation(bytes[i]!)) return false
      i++
    }
    if (i === end) return true

    // Find where a code point cut at the end of this piece starts: its lead byte sits within the
    // last 3 bytes and announces more bytes than remain.
    let tailStart = end
    const lookBackLimit = Math.max(i, end - 3)
    for (let p = end - 1; p >= lookBackLimit; p--) {
      const byte = bytes[p]!
      if ((byte & 0xc0) === 0x80) continue
      const sequenceLength = byte >= 0xf0 ? 4 : byte >= 0xe0 ? 3 : byte >= 0xc0 ? 2 : 1
      if (p + sequenceLength > end) tailStart = p
      break
    }

    if (tailStart > i) {
      const middle = i === 0 && tailStart === end ? bytes : bytes.subarray(i, tailStart)
      if (!isUtf8(middle)) return false
    }
    for (let p = tailStart; p < end; p++) {
      if (!this.step(bytes[p]!)) return false
    }
    return true
  }

  /** One byte through the state machine (used only at piece borders). */
  private step(byte: number): boolean {
    if (this.pending > 0) return this.continuation(byte)
    if (byte < 0x80) return true
    if (byte >= 0xc2 && byte <= 0xdf) {
      this.pending = 1
    } else if (byte >= 0xe0 && byte <= 0xef) {
      this.pending = 2
      // E0 would be an overlong encoding below A0; ED followed by A0-BF encodes a surrogate.
      if (byte === 0xe0) this.lower = 0xa0
      else if (byte === 0xed) this.upper = 0x9f
    } else if (byte >= 0xf0 && byte <= 0xf4) {
      this.pending = 3
      // F0 below 90 is overlong; F4 above 8F is beyond U+10FFFF.
      if (byte === 0xf0) this.lower = 0x90
      else if (byte === 0xf4) this.upper = 0x8f
    } else {
      // 80-BF cannot start a code point; C0, C1 are always overlong; F5-FF are beyond U+10FFFF.
      return false
    }
    return true
  }

  private continuation(byte: number): boolean {
    if (byte < this.lower || byte > this.upper) return false
    this.lower = 0x80
    this.upper = 0xbf
    this.pending--
    return true
  }
}

/** Whole-buffer check, for payloads that arrived in one piece. */
export function isValidUtf8(bytes: Uint8Array): boolean {
  return isUtf8(bytes)
}
