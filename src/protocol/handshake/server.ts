/**
 * Server side of the opening handshake (RFC 6455 section 4.2): validate the client's request,
 * build the 101 response, or say exactly what was wrong with an HTTP status.
 */
import { Buffer } from 'node:buffer'
import { HandshakeError } from '../errors.js'
import { computeAcceptKey, isValidKey } from './accept-key.js'
import { type HeaderFields, listHasToken, parseTokenList, singleValue } from './headers.js'

export interface HandshakeRequest {
  method: string
  /** "1.1", "1.0"... */
  httpVersion: string
  fields: HeaderFields
}

export interface ValidatedRequest {
  key: string
  /** Subprotocols the client offered, in its order of preference (RFC 6455 4.1, item 10). */
  protocols: string[]
  /** Raw `Sec-WebSocket-Extensions` values, for extension negotiation. */
  extensions: readonly string[]
}

/** Checks the client's opening handshake (RFC 6455 4.2.1). Throws HandshakeError. */
export function validateRequest(request: HandshakeRequest): ValidatedRequest {
  const { fields } = request
  // Item 1: "An HTTP/1.1 or higher GET request".
  if (request.method !== 'GET') {
    throw new HandshakeError(405, 'WebSocket handshake must use GET', { Allow: 'GET' })
  }
  if (!isHttp11OrLater(request.httpVersion)) {
    throw new HandshakeError(400, 'WebSocket handshake requires HTTP/1.1 or later')
  }
  // Item 2: a |Host| header field.
  if (singleValue(fields, 'host') === undefined) {
    throw new HandshakeError(400, 'Missing or repeated Host header')
  }
  // Item 3: |Upgrade| containing "websocket", case-insensitive. A plain HTTP request to a
  // WebSocket endpoint gets 426, which tells the client what to do instead.
  if (!listHasToken(fields.upgrade, 'websocket')) {
    throw new HandshakeError(426, 'This endpoint requires a WebSocket upgrade', {
      Upgrade: 'websocket',
      Connection: 'Upgrade',
    })
  }
  // Item 4: |Connection| including the "Upgrade" token. Without it the Upgrade header does not
  // apply (RFC 9110 7.8: it is hop-by-hop and must be listed): a plain request, answered 426.
  if (!listHasToken(fields.connection, 'upgrade')) {
    throw new HandshakeError(426, 'This endpoint requires a WebSocket upgrade (Connection: Upgrade)', {
      Upgrade: 'websocket',
      Connection: 'Upgrade',
    })
  }
  // Item 6, and 4.4: an unsupported version gets 426 with the versions we understand.
  if (singleValue(fields, 'sec-websocket-version') !== '13') {
    throw new HandshakeError(426, 'Unsupported or missing Sec-WebSocket-Version; this server speaks 13', {
      'Sec-WebSocket-Version': '13',
      // RFC 9110 15.5.22: a 426 names the protocol to upgrade to.
      Upgrade: 'websocket',
      Connection: 'Upgrade',
    })
  }
  // Item 5: a |Sec-WebSocket-Key| that decodes to 16 bytes.
  const key = singleValue(fields, 'sec-websocket-key')
  if (key === undefined || !isValidKey(key)) {
    throw new HandshakeError(400, 'Missing, repeated or invalid Sec-WebSocket-Key')
  }
  const protocols = parseTokenList(fields['sec-websocket-protocol'])
  if (protocols === undefined) {
    throw new HandshakeError(400, 'Sec-WebSocket-Protocol must be a list of tokens')
  }
  return { key, protocols, extensions: fields['sec-websocket-extensions'] ?? [] }
}

function isHttp11OrLater(version: string): boolean {
  // RFC 9112 2.3: HTTP-version = HTTP-name "/" DIGIT "." DIGIT. Read as numbers, "1.10", "01.1"
  // and "1.1e3" passed for 1.1 (caught by the http-head fuzz target); Node's parser refuses them.
  // HTTP/2 and later upgrade differently (RFC 8441); only HTTP/1.x, x >= 1, carries this handshake.
  if (version.length !== 3 || version[0] !== '1' || version[1] !== '.') return false
  const minor = version.charCodeAt(2)
  return minor >= 0x31 && minor <= 0x39
}

export interface AcceptOptions {
  /** The chosen subprotocol; must be one the client offered (RFC 6455 4.2.2, item 5.4). */
  protocol?: string | undefined
  /** The `Sec-WebSocket-Extensions` response value, if an extension was accepted. */
  extensions?: string | undefined
  /** Extra response headers (cookies set before the upgrade, for instance). */
  headers?: Iterable<[string, string]> | undefined
}

/** Builds the 101 response head. */
export function buildAcceptResponse(key: string, options: AcceptOptions = {}): string {
  let head =
    'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
    `Sec-WebSocket-Accept: ${computeAcceptKey(key)}\r\n`
  if (options.protocol) head += `Sec-WebSocket-Protocol: ${options.protocol}\r\n`
  if (options.extensions) head += `Sec-WebSocket-Extensions: ${options.extensions}\r\n`
  if (options.headers) head += formatHeaders(options.headers)
  return `${head}\r\n`
}

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  426: 'Upgrade Required',
  429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
}

/** Builds a complete error response (head and a short plain-text body); the socket closes after. */
export function buildErrorResponse(
  status: number,
  body: string,
  headers: Iterable<[string, string]> = [],
  contentType = 'text/plain; charset=utf-8',
): string {
  const text = STATUS_TEXT[status] ?? 'Error'
  const bodyBytes = Buffer.byteLength(body)
  // The connection closes after this answer: one Connection header that says so, keeping any
  // token the caller asked for (a 426 says "Upgrade" too).
  let connection = 'close'
  const others: [string, string][] = []
  for (const [name, value] of headers) {
    if (name.toLowerCase() === 'connection') connection = `${value}, close`
    else others.push([name, value])
  }
  return (
    `HTTP/1.1 ${status} ${text}\r\n${formatHeaders([
      ['Connection', connection],
      ['Content-Type', contentType],
    ])}` + `Content-Length: ${bodyBytes}\r\n${formatHeaders(others)}\r\n${body}`
  )
}

function formatHeaders(headers: Iterable<[string, string]>): string {
  let out = ''
  for (const [name, value] of headers) {
    // A CR or LF in a header would let a caller's data inject response headers.
    if (/[\r\n]/.test(name) || /[\r\n]/.test(value)) throw new TypeError(`Invalid header ${name}`)
    out += `${name}: ${value}\r\n`
  }
  return out
}
