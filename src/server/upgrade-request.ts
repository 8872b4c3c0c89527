/**
 * The request of an opening handshake, as the `upgrade` handler sees it: the parts of Node's
 * IncomingMessage that a handshake has. On Rally's own port the head is parsed by Rally's
 * HttpHeadParser (linear time, bounded) and this object is built from it; attached to a
 * node:http(s) server, the IncomingMessage itself is passed.
 */
import type { IncomingHttpHeaders } from 'node:http'
import type { Socket } from 'node:net'
import { HandshakeError, type HttpHead } from '../protocol/index.js'

export interface UpgradeRequest {
  method?: string | undefined
  /** Path and query, as on the request line. */
  url?: string | undefined
  /** "1.1" */
  httpVersion: string
  /** Lower-case names; repeated fields joined with ", " (set-cookie: an array), as Node does. */
  headers: IncomingHttpHeaders
  /** Every value of every field, by lower-case name. */
  headersDistinct: Record<string, string[] | undefined>
  /** Names and values, alternating. */
  rawHeaders: string[]
  socket: Socket
}

/**
 * A request built from a parsed head. `headers` and `rawHeaders` are made on first use: most
 * handshakes never read them, and a handshake's garbage is most of its cost after the syscalls.
 */
export class ParsedUpgradeRequest implements UpgradeRequest {
  readonly method: string
  readonly url: string
  readonly httpVersion: string
  readonly headersDistinct: Record<string, string[]>
  readonly socket: Socket
  private joined: IncomingHttpHeaders | undefined
  private raw: string[] | undefined

  constructor(
    method: string,
    url: string,
    httpVersion: string,
    fields: Record<string, string[]>,
    socket: Socket,
  ) {
    this.method = method
    this.url = url
    this.httpVersion = httpVersion
    this.headersDistinct = fields
    this.socket = socket
  }

  get headers(): IncomingHttpHeaders {
    if (this.joined === undefined) {
      const headers: IncomingHttpHeaders = {}
      for (const [name, values] of Object.entries(this.headersDistinct)) {
        if (name === 'set-cookie') headers[name] = values
        else headers[name] = values.join(', ')
      }
      this.joined = headers
    }
    return this.joined
  }

  get rawHeaders(): string[] {
    if (this.raw === undefined) {
      const raw: string[] = []
      for (const [name, values] of Object.entries(this.headersDistinct)) {
        for (const value of values) raw.push(name, value)
      }
      this.raw = raw
    }
    return this.raw
  }
}

/** Builds the request from a parsed head. Throws HandshakeError 400 for a bad request line. */
export function requestFromHead(head: HttpHead, socket: Socket): UpgradeRequest {
  const [method, url, version] = head.startLine
  if (!version.startsWith('HTTP/')) throw new HandshakeError(400, 'Malformed HTTP request line')
  return new ParsedUpgradeRequest(method, url, version.slice(5), head.fields, socket)
}

/** Whether Rally's own parser made this request (and so already enforced the header limits). */
export function isParsedRequest(request: UpgradeRequest): boolean {
  return request instanceof ParsedUpgradeRequest
}
