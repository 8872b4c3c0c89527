/**
 * WebSockets over HTTP/2 (RFC 8441): the extended CONNECT on a `node:http2` server.
 *
 * `server.attachHttp2(h2server)` turns on SETTINGS_ENABLE_CONNECT_PROTOCOL for its new sessions,
 * takes the CONNECT streams whose `:protocol` is "websocket", and hands them to the same handshake
 * decision as an HTTP/1.1 upgrade (path, admission, the `upgrade` hook, subprotocols,
 * permessage-deflate); on success the stream is answered `:status 200` and the WebSocket runs on
 * it through the same socket driver. Every other stream (the page, its API calls) is left to the
 * application's own handlers. With `allowHTTP1: true`, HTTP/1.1 upgrades arriving on the same port
 * go to `handleUpgrade`.
 */
import { Buffer } from 'node:buffer'
import type { IncomingMessage } from 'node:http'
import {
  type Http2SecureServer,
  type Http2Server,
  type Http2Session,
  constants as http2Constants,
  type IncomingHttpHeaders,
  type ServerHttp2Stream,
} from 'node:http2'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { DEFAULT_LIMITS, HandshakeError, parseTokenList } from '../protocol/index.js'
import type { UpgradeRequest } from './upgrade-request.js'

/** Concurrent WebSocket streams one HTTP/2 connection may carry, by default. */
export const DEFAULT_MAX_WEBSOCKET_STREAMS_PER_SESSION = 100

export interface Http2AttachOptions {
  /**
   * WebSocket streams (open or in their handshake) one HTTP/2 connection may carry at once; more
   * are refused with 503 while the others go on. Default 100.
   */
  maxWebSocketStreamsPerSession?: number
  /** Also take HTTP/1.1 upgrades arriving on this server (`allowHTTP1`). Default true. */
  http1Upgrades?: boolean
}

/** What the HTTP/2 front needs from the Rally server. */
export interface Http2Host {
  /** The handshake decision, as for an HTTP/1.1 upgrade. */
  handle(request: UpgradeRequest, stream: Duplex, head: Buffer): void
  /** An HTTP/1.1 upgrade that arrived on the same server (allowHTTP1). */
  handleUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): void
  /** A refusal before the handshake decision (too many streams on the connection). */
  refuse(stream: Duplex, error: HandshakeError): void
  /** The `maxHeaderBytes` limit of HTTP/1.1 handshakes, applied to a stream's header list. */
  maxHeaderBytes?: number | undefined
}

/** Per-session count of WebSocket streams, on the session object. */
const kWebSocketStreams = Symbol('rally.websocketStreams')
type CountedSession = Http2Session & { [kWebSocketStreams]?: number }

/** Marks the streams taken as WebSockets, so that the compatibility API's 'connect' skips them. */
const kTaken = Symbol('rally.websocketStream')

const EMPTY_HEAD = new Uint8Array(0) as Buffer

/**
 * Attaches to an http2 server; returns a function that detaches (listeners removed; open
 * WebSockets stay open).
 */
export function attachHttp2(
  server: Http2SecureServer | Http2Server,
  host: Http2Host,
  options: Http2AttachOptions = {},
): () => void {
  const maxStreams = options.maxWebSocketStreamsPerSession ?? DEFAULT_MAX_WEBSOCKET_STREAMS_PER_SESSION
  const maxHeaderBytes = host.maxHeaderBytes ?? DEFAULT_LIMITS.maxHeaderBytes
  if (!Number.isInteger(maxStreams) || maxStreams < 1)
    throw new RangeError('maxWebSocketStreamsPerSession must be a positive integer')
  // RFC 8441 3: a client may use the extended CONNECT only after the server's SETTINGS carried
  // SETTINGS_ENABLE_CONNECT_PROTOCOL = 1. Sessions opened from now on advertise it.
  server.updateSettings({ enableConnectProtocol: true })

  const onStream = (
    stream: ServerHttp2Stream,
    headers: IncomingHttpHeaders,
    _flags: number,
    raw: string[],
  ) => {
    if (headers[':method'] !== 'CONNECT' || headers[':protocol'] === undefined) return
    ;(stream as ServerHttp2Stream & { [kTaken]?: boolean })[kTaken] = true
    const session = stream.session as CountedSession | undefined
    if (session === undefined) return
    // The same bound as an HTTP/1.1 handshake's head, measured as HTTP/2 measures a header list
    // (RFC 9113 6.5.2: name and value octets plus 32 per field). nghttp2 alone would take up to
    // 64 KiB.
    const size = headerListSize(raw)
    if (size > maxHeaderBytes) {
      host.refuse(
        stream,
        new HandshakeError(431, `Header fields of ${size} bytes; the limit is ${maxHeaderBytes}`),
      )
      return
    }
    const count = session[kWebSocketStreams] ?? 0
    if (count >= maxStreams) {
      host.refuse(
        stream,
        new HandshakeError(503, `More than ${maxStreams} WebSocket streams on this connection`),
      )
      return
    }
    // Counted from the request to the stream's end, handshakes included: a peer cannot pile up
    // pending handshakes past the limit either.
    session[kWebSocketStreams] = count + 1
    stream.once('close', () => {
      session[kWebSocketStreams] = (session[kWebSocketStreams] ?? 1) - 1
    })
    host.handle(new Http2UpgradeRequest(stream, headers, raw), stream, EMPTY_HEAD)
  }

  // With a 'request' listener, Node's compatibility API also sees every stream and emits CONNECT
  // ones as 'connect', answering 405 when nobody listens: this listener keeps it off ours. An
  // HTTP/1.1 CONNECT (allowHTTP1) that nobody else takes is refused here as Node would.
  const onConnect = (request: IncomingMessage & { stream?: unknown }, socketOrResponse: unknown) => {
    const stream = request.stream as { [kTaken]?: boolean } | undefined
    if (stream?.[kTaken] === true) return
    if (server.listenerCount('connect') > 1) return
    if (stream !== undefined) {
      const response = socketOrResponse as { statusCode: number; end(): void }
      response.statusCode = 405
      response.end()
    } else (socketOrResponse as Duplex).destroy()
  }

  const onUpgrade = (request: IncomingMessage, socket: Duplex, head: Buffer) =>
    host.handleUpgrade(request, socket, head)

  server.prependListener('stream', onStream)
  server.on('connect', onConnect)
  const http1 = options.http1Upgrades ?? true
  if (http1) server.on('upgrade', onUpgrade)
  return () => {
    server.removeListener('stream', onStream)
    server.removeListener('connect', onConnect)
    if (http1) server.removeListener('upgrade', onUpgrade)
  }
}

/** RFC 9113 6.5.2's size of a header list: each field's name and value octets, plus 32. */
function headerListSize(raw: readonly string[]): number {
  let size = 0
  for (const field of raw) size += Buffer.byteLength(field)
  return size + 16 * raw.length
}

/**
 * The extended CONNECT request as the `upgrade` hook sees it: method "CONNECT", `url` the
 * `:path`, `httpVersion` "2.0", the fields (pseudo-header fields included) and the connection's
 * TLS socket.
 */
class Http2UpgradeRequest implements UpgradeRequest {
  readonly method = 'CONNECT'
  readonly url: string | undefined
  readonly httpVersion = '2.0'
  readonly headers: IncomingHttpHeaders
  readonly rawHeaders: string[]
  readonly socket: Socket
  private distinct: Record<string, string[]> | undefined

  constructor(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, raw: string[]) {
    this.headers = headers
    this.rawHeaders = raw
    this.url = headers[':path']
    this.socket = stream.session?.socket as Socket
  }

  get headersDistinct(): Record<string, string[]> {
    if (this.distinct === undefined) {
      const fields: Record<string, string[]> = {}
      // HTTP/2 field names are lower case (RFC 9113 8.2.1; nghttp2 refuses others).
      for (let i = 0; i + 1 < this.rawHeaders.length; i += 2) {
        const name = this.rawHeaders[i]!
        const value = this.rawHeaders[i + 1]!
        const values = fields[name]
        if (values === undefined) fields[name] = [value]
        else values.push(value)
      }
      this.distinct = fields
    }
    return this.distinct
  }
}

/** What an extended CONNECT offers, once validated. */
export interface ValidatedConnect {
  protocols: string[]
  extensions: readonly string[]
}

/**
 * Checks an extended CONNECT for a WebSocket (RFC 8441 4 and 5). Throws HandshakeError.
 *
 * nghttp2 already resets a malformed request (RFC 9113 8.1.1: a stream error of type
 * PROTOCOL_ERROR) — `:protocol` without SETTINGS_ENABLE_CONNECT_PROTOCOL, a CONNECT with
 * `:protocol` and no `:scheme` or `:path`, connection-specific fields — so most of these checks
 * are a second line, for what it lets through.
 */
export function validateExtendedConnect(
  fields: Record<string, readonly string[] | undefined>,
): ValidatedConnect {
  const protocol = single(fields, ':protocol')
  // RFC 8441 5: "The :protocol pseudo-header field MUST be included in the CONNECT request and it
  // MUST have a value of "websocket"". Another protocol is one this server does not implement:
  // 501 (RFC 9110 15.6.2, "does not support the functionality required to fulfill the request").
  if (protocol === undefined || protocol.toLowerCase() !== 'websocket') {
    throw new HandshakeError(
      501,
      `Unsupported :protocol${protocol === undefined ? '' : ` "${protocol}"`}; this endpoint speaks websocket`,
    )
  }
  // RFC 8441 4: "On requests that contain the :protocol pseudo-header field, the :scheme and
  // :path pseudo-header fields of the target URI MUST also be included."
  const scheme = single(fields, ':scheme')
  if (scheme === undefined || single(fields, ':path') === undefined) {
    throw new HandshakeError(400, 'Extended CONNECT requires :scheme and :path')
  }
  // RFC 8441 5: "The scheme of the target URI MUST be "https" for "wss"-schemed WebSockets and
  // "http" for "ws"-schemed WebSockets." nghttp2 checks only the field's characters.
  if (scheme !== 'https' && scheme !== 'http') {
    throw new HandshakeError(400, `A WebSocket's :scheme is https or http, not "${scheme}"`)
  }
  // RFC 8441 4: :authority is interpreted as for any request (RFC 9113 8.3.1); it stands for the
  // Host header RFC 6455 4.1 requires of a WebSocket handshake.
  if (single(fields, ':authority') === undefined) {
    throw new HandshakeError(400, 'Missing or repeated :authority')
  }
  // RFC 6455 4.4 via RFC 8441 5: a version we do not speak gets an error naming the versions we
  // do. Not 426 as on HTTP/1.1: a 426 must carry an Upgrade header (RFC 9110 15.5.22), which HTTP/2
  // forbids (RFC 9113 8.2.2); 400 with Sec-WebSocket-Version says the same.
  if (single(fields, 'sec-websocket-version') !== '13') {
    throw new HandshakeError(400, 'Unsupported or missing Sec-WebSocket-Version; this server speaks 13', {
      'Sec-WebSocket-Version': '13',
    })
  }
  // RFC 8441 5: Sec-WebSocket-Key and Sec-WebSocket-Accept are not used over HTTP/2 (the
  // :protocol pseudo-header field replaces them); a key sent anyway is ignored, never answered.
  const protocols = parseTokenList(fields['sec-websocket-protocol'])
  if (protocols === undefined) {
    throw new HandshakeError(400, 'Sec-WebSocket-Protocol must be a list of tokens')
  }
  return { protocols, extensions: fields['sec-websocket-extensions'] ?? [] }
}

function single(fields: Record<string, readonly string[] | undefined>, name: string): string | undefined {
  const values = fields[name]
  return values !== undefined && values.length === 1 ? values[0] : undefined
}

/** Answers a WebSocket stream's handshake: `:status 200` and the negotiated fields (RFC 8441 5). */
export function acceptStream(stream: ServerHttp2Stream, fields: Iterable<[string, string]>): boolean {
  if (stream.destroyed || stream.headersSent) return false
  const headers: Record<string, string | string[]> = { [http2Constants.HTTP2_HEADER_STATUS]: '200' }
  for (const [name, value] of fields) {
    // A CR, LF or NUL in a field would be refused by nghttp2 with a throw; say which.
    if (/[\r\n\0]/.test(name) || /[\r\n\0]/.test(value)) throw new TypeError(`Invalid header ${name}`)
    const key = name.toLowerCase()
    const previous = headers[key]
    if (previous === undefined) headers[key] = value
    else headers[key] = Array.isArray(previous) ? [...previous, value] : [previous, value]
  }
  stream.respond(headers)
  return true
}

/**
 * Refuses a WebSocket stream with a status and a short body, then ends the stream (END_STREAM);
 * a peer that keeps its side open is reset after `lingerMs`.
 */
export function refuseStream(
  stream: ServerHttp2Stream,
  status: number,
  body: string,
  headers: Iterable<[string, string]>,
  contentType: string,
  lingerMs: number,
): void {
  stream.on('error', ignoreError)
  if (stream.destroyed) return
  if (stream.headersSent) {
    resetIfOpen(stream)
    return
  }
  const fields: Record<string, string> = {
    [http2Constants.HTTP2_HEADER_STATUS]: String(status),
    'content-type': contentType,
  }
  for (const [name, value] of headers) {
    const key = name.toLowerCase()
    // Connection-specific fields are forbidden in HTTP/2 (RFC 9113 8.2.2): nghttp2 would throw.
    if (key === 'connection' || key === 'upgrade' || key === 'keep-alive' || key === 'transfer-encoding')
      continue
    if (/[\r\n\0]/.test(name) || /[\r\n\0]/.test(value)) continue
    fields[key] = value
  }
  try {
    stream.respond(fields)
    stream.end(body)
  } catch {
    stream.close(http2Constants.NGHTTP2_INTERNAL_ERROR)
    stream.destroy()
    return
  }
  // What the peer still sends on this stream is read and dropped, so that flow control does not
  // stall; the stream is reset if the peer never ends its side.
  stream.resume()
  setTimeout(resetIfOpen, lingerMs, stream).unref()
}

function resetIfOpen(stream: ServerHttp2Stream): void {
  if (!stream.destroyed) stream.close(http2Constants.NGHTTP2_CANCEL)
  stream.destroy()
}

function ignoreError(): void {}
