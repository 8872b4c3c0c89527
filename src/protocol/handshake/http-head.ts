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

  /**
   * Adds bytes. Returns the head once complete, undefined while more is needed. Throws
   * HandshakeError (431 for a head over the limits, 400 for a malformed one).
   */
  push(chunk: Uint8Array): HttpHeadResult | undefined {
    let end = -1
    let matched = this.matched
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
    this.matched = matched
    const used = end === -1 ? chunk.length : end
    if (this.length + used > this.options.maxHeaderBytes) {
      throw new HandshakeError(431, `HTTP head exceeds ${this.options.maxHeaderBytes} bytes`)
    }
    this.chunks.push(end === -1 ? chunk : chunk.subarray(0, end))
    this.length += used
    if (end === -1) return undefined
    const text = Buffer.concat(this.chunks, this.length).toString('latin1')
    this.chunks.length = 0
    return { head: parseHead(text, this.options.maxHeaderCount), rest: chunk.subarray(end) }
  }
}

/** Parses a complete head ending in CR LF CR LF. */
export function parseHead(text: string, maxHeaderCount: number): HttpHead {
  const lines = text.slice(0, -4).split('\r\n')
  // Any CR or LF left after splitting on CR LF is bare. RFC 9110 5.5: "a recipient of CR, LF, or
  // NUL within a field value MUST either reject the message or replace each of those characters
  // with SP"; accepted as is, "Host: a\nX-Injected: b" would reach the application as one value.
  for (const line of lines) {
    if (hasCrLfOrNul(line)) throw new HandshakeError(400, 'Bare CR, LF or NUL in the HTTP head')
  }
  const startParts = lines[0]!.split(' ')
  if (startParts.length < 3 || startParts[0] === '' || startParts[1] === '') {
    throw new HandshakeError(400, 'Malformed HTTP start line')
  }
  // The reason phrase of a status line may contain spaces.
  const startLine: [string, string, string] = [startParts[0]!, startParts[1]!, startParts.slice(2).join(' ')]
  if (lines.length - 1 > maxHeaderCount) {
    throw new HandshakeError(431, `More than ${maxHeaderCount} header fields`)
  }
  const fields: Record<string, string[]> = Object.create(null)
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!
    const colon = line.indexOf(':')
    // RFC 7230 3.2.4: no whitespace between the field name and the colon; obsolete line folding
    // (a line starting with whitespace) is rejected.
    if (colon <= 0 || line.charCodeAt(0) === 0x20 || line.charCodeAt(0) === 0x09) {
      throw new HandshakeError(400, 'Malformed HTTP header field')
    }
    const name = line.slice(0, colon)
    if (!isToken(name)) throw new HandshakeError(400, 'Malformed HTTP header field name')
    const value = trimOws(line.slice(colon + 1))
    const key = name.toLowerCase()
    const list = fields[key]
    if (list === undefined) fields[key] = [value]
    else list.push(value)
  }
  return { startLine, fields, fieldCount: lines.length - 1 }
}

function hasCrLfOrNul(line: string): boolean {
  for (let i = 0; i < line.length; i++) {
    const c = line.charCodeAt(i)
    if (c === 0x0d || c === 0x0a || c === 0x00) return true
  }
  return false
}
