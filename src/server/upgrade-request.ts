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

/** Builds the request from a parsed head. Throws HandshakeError 400 for a bad request line. */
export function requestFromHead(head: HttpHead, socket: Socket): UpgradeRequest {
  const [method, url, version] = head.startLine
  if (!version.startsWith('HTTP/')) throw new HandshakeError(400, 'Malformed HTTP request line')
  const headers: IncomingHttpHeaders = {}
  const rawHeaders: string[] = []
  for (const [name, values] of Object.entries(head.fields)) {
    if (name === 'set-cookie') headers[name] = values
    else headers[name] = values.join(', ')
    for (const value of values) rawHeaders.push(name, value)
  }
  return {
    method,
    url,
    httpVersion: version.slice(5),
    headers,
    headersDistinct: head.fields,
    rawHeaders,
    socket,
  }
}
