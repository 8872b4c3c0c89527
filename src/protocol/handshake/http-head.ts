/**
 * An incremental parser for the head of an HTTP/1.1 message (start line and header fields), for
 * the opening handshake on a raw socket. It looks at each byte once (the search for the blank
 * line resumes where the last chunk ended), so its time is linear in the input, and it enforces
 * `maxHeaderBytes` and `maxHeaderCount` as bytes arrive.
 */
import { Buffer } from 'node:buffer'
import { HandshakeError } from '../errors.js'
import { isToken, trimOws } from './headers.js'

export interface HttpHead {
  /** Request: method, target, version. Response: version, status, reason. */
  startLine: [string, string, string]
  /** Lower-case field names to every value, in order. */
  fields: Record<string, string[]>
  /** Field count, for limits. */
  fieldCount: number
}

export interface HttpHeadResult {
  head: HttpHead
  /** Bytes after the head (the first WebSocket frames, if the peer sent them at once). */
  rest: Uint8Array
}

export interface HttpHeadParserOptions {
  maxHeaderBytes: number
  maxHeaderCount: number
}

export class HttpHeadParser {
  private readonly options: HttpHeadParserOptions
  private readonly chunks: Uint8Array[] = []
  private length = 0
  /** How many trailing bytes of CR LF CR LF have been matched so far. */
  private matched = 0

  constructor(options: HttpHeadParserOptions) {
    this.options = options
  }

  /** Whether any byte of a head has come. */
  get started(): boolean {
    return this.length > 0 || this.matched > 0
  }

  /**
   * Adds bytes. Returns the head once complete, undefined while more is needed. Throws
   * HandshakeError (431 for a head over the limits, 400 for a malformed one).
   */
  push(chunk: Uint8Array): HttpHeadResult | undefined {
    let end = -1
    let matched = this.matched
    if (matched === 0) {
      // No partial match pending (every head's first chunk): the blank line is searched by
      // Buffer's native indexOf, and the state for the next chunk is read from the last bytes.
      const at = asBuffer(chunk).indexOf(HEAD_END)
      if (at !== -1) end = at + 4
      else matched = trailingMatch(chunk)
    } else {
      for (let i = 0; i < chunk.length; i++) {
        const byte = chunk[i]
        if (byte === (matched % 2 === 0 ? 0x0d : 0x0a)) {
          if (++matched === 4) {
            end = i + 1
            break
          }
        } else {
          matched = byte === 0x0d ? 1 : 0
        }
      }
    }
    this.matched = matched
    const used = end === -1 ? chunk.length : end
    if (this.length + used > this.options.maxHeaderBytes) {
      throw new HandshakeError(431, `HTTP head exceeds ${this.options.maxHeaderBytes} bytes`)
    }
    if (end === -1) {
      this.chunks.push(chunk)
      this.length += used
      return undefined
    }
    let text: string
    if (this.chunks.length === 0) text = asBuffer(chunk).toString('latin1', 0, end)
    else {
      this.chunks.push(chunk.subarray(0, end))
      text = Buffer.concat(this.chunks, this.length + used).toString('latin1')
      this.chunks.length = 0
    }
    this.length += used
    return { head: parseHead(text, this.options.maxHeaderCount), rest: chunk.subarray(end) }
  }
}

/** CR LF CR LF: the end of an HTTP head. */
const HEAD_END = Buffer.from('\r\n\r\n', 'latin1')

/**
 * A CR, LF or NUL left in a line once the head is split on CR LF: a bare CR or LF, or a NUL.
 * RFC 9110 5.5: "a recipient of CR, LF, or NUL within a field value MUST either reject the
 * message or replace each of those characters with SP"; accepted as is, "Host: a\nX-Injected: b"
 * would reach the application as one value. (Checked on each line once the head is split: a
 * plain character class, where one expression over the whole head needed look-around.)
 */
const CR_LF_OR_NUL = /[\r\n\0]/

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length)
}

/** How much of CR LF CR LF the chunk ends with (it does not contain all of it). */
function trailingMatch(chunk: Uint8Array): number {
  const n = chunk.length
  if (n >= 3 && chunk[n - 3] === 0x0d && chunk[n - 2] === 0x0a && chunk[n - 1] === 0x0d) return 3
  if (n >= 2 && chunk[n - 2] === 0x0d && chunk[n - 1] === 0x0a) return 2
  return n >= 1 && chunk[n - 1] === 0x0d ? 1 : 0
}

/**
 * Field names already seen, as sent, to their lower-case form: clients send the same few names
 * in the same spelling, and a hit skips the token check and the lower-casing (a new string per
 * field). Bounded: once full, other names take the slow path and are not kept, so a peer sending
 * made-up names costs at most this table. The handshake's own names are in it from the start.
 */
const knownNames = new Map<string, string>()
const MAX_KNOWN_NAMES = 256
const MAX_KNOWN_NAME_LENGTH = 64
for (const name of [
  'Host',
  'Upgrade',
  'Connection',
  'Origin',
  'Sec-WebSocket-Key',
  'Sec-WebSocket-Version',
  'Sec-WebSocket-Extensions',
  'Sec-WebSocket-Protocol',
  'User-Agent',
  'Cookie',
  'Pragma',
  'Cache-Control',
  'Accept-Encoding',
  'Accept-Language',
]) {
  knownNames.set(name, name.toLowerCase())
  knownNames.set(name.toLowerCase(), name.toLowerCase())
}

/** The lower-case key of a field name; undefined if the name is not a token (RFC 9110 5.1). */
function fieldKey(name: string): string | undefined {
  const known = knownNames.get(name)
  if (known !== undefined) return known
  if (!isToken(name)) return undefined
  const key = name.toLowerCase()
  if (knownNames.size < MAX_KNOWN_NAMES && name.length <= MAX_KNOWN_NAME_LENGTH) knownNames.set(name, key)
  return key
}

/** Parses a complete head ending in CR LF CR LF. */
export function parseHead(text: string, maxHeaderCount: number): HttpHead {
  const lines = text.slice(0, -4).split('\r\n')
  const first = lines[0]!
  if (CR_LF_OR_NUL.test(first)) throw new HandshakeError(400, 'Bare CR, LF or NUL in the HTTP head')
  const startParts = first.split(' ')
  if (startParts.length < 3 || startParts[0] === '' || startParts[1] === '') {
    throw new HandshakeError(400, 'Malformed HTTP start line')
  }
  // The reason phrase of a status line may contain spaces.
  const startLine: [string, string, string] = [
    startParts[0]!,
    startParts[1]!,
    startParts.length === 3 ? startParts[2]! : startParts.slice(2).join(' '),
  ]
  if (lines.length - 1 > maxHeaderCount) {
    throw new HandshakeError(431, `More than ${maxHeaderCount} header fields`)
  }
  const fields: Record<string, string[]> = Object.create(null)
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!
    if (CR_LF_OR_NUL.test(line)) throw new HandshakeError(400, 'Bare CR, LF or NUL in the HTTP head')
    const colon = line.indexOf(':')
    // RFC 7230 3.2.4: no whitespace between the field name and the colon; obsolete line folding
    // (a line starting with whitespace) is rejected.
    if (colon <= 0 || line.charCodeAt(0) === 0x20 || line.charCodeAt(0) === 0x09) {
      throw new HandshakeError(400, 'Malformed HTTP header field')
    }
    const key = fieldKey(line.slice(0, colon))
    if (key === undefined) throw new HandshakeError(400, 'Malformed HTTP header field name')
    const value = trimOws(line.slice(colon + 1))
    const list = fields[key]
    if (list === undefined) fields[key] = [value]
    else list.push(value)
  }
  return { startLine, fields, fieldCount: lines.length - 1 }
}
