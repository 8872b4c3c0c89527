/**
 * Client side of the opening handshake (RFC 6455 sections 4.1 and 4.2.2): build the request,
 * validate the server's response.
 */
import { HandshakeError } from '../errors.js'
import { computeAcceptKey } from './accept-key.js'
import { type HeaderFields, isToken, listHasToken, singleValue } from './headers.js'
import type { HttpHead } from './http-head.js'

export interface ClientRequestOptions {
  /** Host header value: host, plus ":port" unless it is the scheme's default. */
  host: string
  /** Path and query ("resource name", RFC 6455 3). */
  path: string
  key: string
  protocols?: readonly string[]
  /** A `Sec-WebSocket-Extensions` offer. */
  extensions?: string | undefined
  headers?: Iterable<[string, string]>
}

/** Builds the opening handshake request head. */
export function buildClientRequest(options: ClientRequestOptions): string {
  let head =
    `GET ${options.path} HTTP/1.1\r\nHost: ${options.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    `Sec-WebSocket-Key: ${options.key}\r\nSec-WebSocket-Version: 13\r\n`
  if (options.protocols && options.protocols.length > 0) {
    head += `Sec-WebSocket-Protocol: ${options.protocols.join(', ')}\r\n`
  }
  if (options.extensions) head += `Sec-WebSocket-Extensions: ${options.extensions}\r\n`
  for (const [name, value] of options.headers ?? []) {
    if (!isToken(name) || /[\r\n]/.test(value)) throw new TypeError(`Invalid header ${name}`)
    head += `${name}: ${value}\r\n`
  }
  return `${head}\r\n`
}

export interface ValidatedResponse {
  /** The subprotocol the server chose, or "". */
  protocol: string
  /** The raw `Sec-WebSocket-Extensions` value, or "". */
  extensions: string
}

/**
 * Checks the server's response (RFC 6455 4.1, "the client MUST validate the server's response").
 * Throws HandshakeError whose `status` is the response's status.
 */
export function validateResponse(
  head: HttpHead,
  key: string,
  offeredProtocols: readonly string[],
  offeredExtensions: boolean,
): ValidatedResponse {
  const [version, statusText] = head.startLine
  // Exactly three digits (RFC 9112 4): "101.0" or "0x65" are not 101.
  const status = /^\d{3}$/.test(statusText) ? Number(statusText) : Number.NaN
  if (!version.startsWith('HTTP/') || !Number.isInteger(status)) {
    throw new HandshakeError(0, 'Malformed HTTP status line in handshake response')
  }
  // Item 1: "If the status code received from the server is not 101, the client handles the
  // response per HTTP procedures" — for a WebSocket, that is a failure to connect.
  if (status !== 101) throw new HandshakeError(status, `Unexpected response status ${status}`)
  const fields: HeaderFields = head.fields
  // Items 2 and 3.
  if (!listHasToken(fields.upgrade, 'websocket')) {
    throw new HandshakeError(status, 'Response lacks "Upgrade: websocket"')
  }
  if (!listHasToken(fields.connection, 'upgrade')) {
    throw new HandshakeError(status, 'Response lacks "Connection: Upgrade"')
  }
  // Item 4.
  if (singleValue(fields, 'sec-websocket-accept') !== computeAcceptKey(key)) {
    throw new HandshakeError(status, 'Missing or wrong Sec-WebSocket-Accept')
  }
  // Item 6: a subprotocol must be one the client offered.
  let protocol = ''
  const protocolValues = fields['sec-websocket-protocol']
  if (protocolValues !== undefined) {
    const chosen = singleValue(fields, 'sec-websocket-protocol')
    if (chosen === undefined || !offeredProtocols.includes(chosen)) {
      throw new HandshakeError(status, 'Server chose a subprotocol the client did not offer')
    }
    protocol = chosen
  }
  // Item 5: an extension the client did not offer fails the connection.
  const extensionValues = fields['sec-websocket-extensions']
  const extensions = extensionValues?.join(', ') ?? ''
  if (extensions !== '' && !offeredExtensions) {
    throw new HandshakeError(status, 'Server accepted an extension the client did not offer')
  }
  return { protocol, extensions }
}
