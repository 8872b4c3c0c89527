/**
 * The client side of a connection, below any API: it dials TCP or TLS, runs the opening
 * handshake with Rally's own HTTP head parser (linear time, bounded), negotiates
 * permessage-deflate, then hands the socket to the same driver as the server's. Both client APIs
 * — the WHATWG `WebSocket` and `rallyjs/ws`'s ws-compatible one — are thin façades over it.
 */
import type { ClientHttp2Session, ClientHttp2Stream } from 'node:http2'
import { isIP, type Socket, connect as tcpConnect } from 'node:net'
import { type ConnectionOptions as TlsConnectOptions, connect as tlsConnect } from 'node:tls'
import { codecFor, type DeflateCodec } from '../node/deflate.js'
import { type DriverListener, type DriverStream, SocketDriver } from '../node/socket-driver.js'
import { parseExtensions } from '../protocol/extensions/extension-header.js'
import {
  acceptServerResponse,
  buildClientOffer,
  checkDeflateOptions,
  type PerMessageDeflateOptions,
} from '../protocol/extensions/permessage-deflate.js'
import {
  buildClientRequest,
  CloseCode,
  generateKey,
  type HttpHead,
  HttpHeadParser,
  isToken,
  type Limits,
  resolveLimits,
  validateResponse,
} from '../protocol/index.js'
import {
  headFromResponse,
  openWebSocketStream,
  releaseShared,
  sharedSession,
  whenSettingsKnown,
} from './http2-dial.js'

export interface ClientOptions {
  /** Extra request headers (Authorization, Cookie, Origin...). */
  headers?: Record<string, string> | Iterable<[string, string]>
  /** Largest message accepted, in bytes. Default 16 MiB. Shorthand for `limits.maxMessageSize`. */
  maxPayload?: number
  limits?: Partial<Limits>
  /** Time allowed for TCP connect + TLS + HTTP upgrade (ms). Default 30000. */
  handshakeTimeout?: number
  /** Time the server has to close TCP after the closing handshake (ms). Default 5000. */
  closeTimeout?: number
  /** TLS options for wss:// (ca, cert, key, rejectUnauthorized, servername...). */
  tls?: TlsConnectOptions
  /** Answer pings automatically (RFC 6455 5.5.2). Default true. */
  autoPong?: boolean
  /**
   * Ping the server every `interval` ms; if nothing arrives within `timeout` ms the connection
   * is terminated (close code 1006). Default: off, as in browsers.
   */
  heartbeat?: { interval: number; timeout: number }
  /**
   * Offer permessage-deflate (RFC 7692), as browsers do. Default true; false offers nothing.
   * A server response that breaks RFC 7692 fails the connection with 1010.
   */
  perMessageDeflate?: boolean | PerMessageDeflateOptions
  /**
   * wss:// only: open the WebSocket as a stream of an HTTP/2 connection (RFC 8441) when the
   * server advertises SETTINGS_ENABLE_CONNECT_PROTOCOL, HTTP/1.1 otherwise. `true` shares one
   * connection among the WebSockets to the same origin made with the same `tls` options object
   * (closed when its last WebSocket closes); a `ClientHttp2Session` (from `http2.connect`) is used
   * as it is and left open. Default false.
   */
  http2?: boolean | ClientHttp2Session
}

/** What the API façade hears, on top of the driver's events. */
export interface ClientListener extends DriverListener {
  /** The 101 was accepted; frames may flow. `response` is the server's HTTP head. */
  onOpen(response: HttpHead): void
  /**
   * The connection failed before it opened (refused, TLS error, bad response, timeout). The
   * socket is destroyed; nothing else follows. `response` is set when the server answered.
   */
  onConnectFailure(message: string, error: unknown, response: HttpHead | undefined): void
  /**
   * The 101 came with an extension response this client cannot accept: the connection is being
   * failed with 1010 (RFC 6455 9.1, RFC 7692 7); onClosed follows.
   */
  onExtensionFailure(message: string): void
}

const DEFAULT_HANDSHAKE_TIMEOUT = 30_000
const DEFAULT_CLOSE_TIMEOUT = 5000

/** Parses and checks a WebSocket URL (WHATWG rules). Throws a SyntaxError DOMException. */
export function parseWebSocketUrl(input: string | URL): URL {
  let url: URL
  try {
    url = new URL(String(input))
  } catch {
    throw new DOMException(`Invalid URL: ${String(input)}`, 'SyntaxError')
  }
  // The spec maps http(s) to ws(s), and refuses other schemes and fragments.
  if (url.protocol === 'http:') url.protocol = 'ws:'
  else if (url.protocol === 'https:') url.protocol = 'wss:'
  if (url.protocol !== 'ws:' && url.protocol !== 'wss:') {
    throw new DOMException(`URL scheme must be ws: or wss:, got ${url.protocol}`, 'SyntaxError')
  }
  // An empty fragment ("ws://host/#") counts too: only `href` keeps its "#".
  if (url.hash !== '' || url.href.includes('#')) {
    throw new DOMException('WebSocket URLs cannot have a fragment', 'SyntaxError')
  }
  return url
}

/** Checks subprotocols: tokens (RFC 6455 4.1), no duplicates (WHATWG). Throws SyntaxError. */
export function parseProtocols(protocols: string | readonly string[] | undefined): string[] {
  const list = protocols === undefined ? [] : typeof protocols === 'string' ? [protocols] : [...protocols]
  const seen = new Set<string>()
  for (const protocol of list) {
    if (!isToken(protocol)) throw new DOMException(`Invalid subprotocol "${protocol}"`, 'SyntaxError')
    const folded = protocol.toLowerCase()
    if (seen.has(folded)) throw new DOMException(`Duplicate subprotocol "${protocol}"`, 'SyntaxError')
    seen.add(folded)
  }
  return list
}

export class ClientConnection {
  readonly url: URL
  /** The TCP or TLS socket; over HTTP/2, the session's (shared: never written to directly). */
  socket: Socket
  /** The WebSocket's HTTP/2 stream, when it runs over HTTP/2. */
  private http2Stream: ClientHttp2Stream | undefined
  private http2Shared: ClientHttp2Session | undefined
  /** Set once the 101 is accepted. */
  driver: SocketDriver | undefined
  protocol = ''
  extensions = ''
  private readonly listener: ClientListener
  private readonly options: ClientOptions
  private readonly limits: Limits
  private readonly key: string
  private readonly offeredProtocols: readonly string[]
  private readonly deflateOptions: PerMessageDeflateOptions | undefined
  private headParser: HttpHeadParser | undefined
  private handshakeTimer: NodeJS.Timeout | undefined
  private heartbeatTimer: NodeJS.Timeout | undefined
  private failed = false

  constructor(url: URL, protocols: readonly string[], options: ClientOptions, listener: ClientListener) {
    this.url = url
    this.offeredProtocols = protocols
    this.options = options
    this.listener = listener
    this.limits = resolveLimits({
      ...options.limits,
      ...(options.maxPayload !== undefined ? { maxMessageSize: options.maxPayload } : {}),
    })
    this.key = generateKey()
    const deflate = options.perMessageDeflate ?? true
    this.deflateOptions = deflate === true ? {} : deflate === false ? undefined : deflate
    if (this.deflateOptions !== undefined) checkDeflateOptions(this.deflateOptions)

    const secure = url.protocol === 'wss:'
    const hostname = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname
    const port = Number(url.port || (secure ? 443 : 80))
    // Built before connecting, so that a bad header throws from the constructor.
    const request = buildClientRequest({
      host: url.host,
      path: `${url.pathname}${url.search}`,
      key: this.key,
      protocols,
      extensions: this.deflateOptions === undefined ? undefined : buildClientOffer(this.deflateOptions),
      headers: headerEntries(options.headers),
    })
    const http2 = options.http2
    if (secure && http2 !== undefined && http2 !== false) {
      const session = http2 === true ? sharedSession(`https://${url.host}`, options.tls) : http2
      if (http2 === true) this.http2Shared = session
      this.socket = session.socket as Socket
      this.startHandshakeTimer(options)
      const dialHttp1 = () => this.dialHttp1(request, hostname, port, secure)
      this.dialHttp2(session, protocols, headerEntries(options.headers), dialHttp1)
      return
    }
    this.socket = this.dialHttp1(request, hostname, port, secure)
  }

  private startHandshakeTimer(options: ClientOptions): void {
    this.handshakeTimer = setTimeout(
      () => this.fail('Opening handshake timed out', undefined, undefined),
      options.handshakeTimeout ?? DEFAULT_HANDSHAKE_TIMEOUT,
    )
    this.handshakeTimer.unref()
  }

  /** Dials TCP or TLS and sends the HTTP/1.1 upgrade request. */
  private dialHttp1(request: string, hostname: string, port: number, secure: boolean): Socket {
    const options = this.options
    this.socket = secure
      ? tlsConnect({
          host: hostname,
          port,
          // SNI carries host names only (RFC 6066 3).
          servername: isIP(hostname) === 0 ? hostname : undefined,
          ALPNProtocols: ['http/1.1'],
          ...options.tls,
        })
      : tcpConnect({ host: hostname, port })
    const socket = this.socket
    socket.setNoDelay(true)
    if (this.handshakeTimer === undefined) this.startHandshakeTimer(options)
    socket.once(secure ? 'secureConnect' : 'connect', () => socket.write(request))
    this.headParser = new HttpHeadParser(this.limits)
    socket.on('data', this.onHandshakeData)
    socket.on('error', this.onHandshakeError)
    socket.on('close', this.onHandshakeClose)
    return socket
  }

  /**
   * RFC 8441: waits for the server's SETTINGS; with SETTINGS_ENABLE_CONNECT_PROTOCOL, sends the
   * extended CONNECT and opens on its 200; without, dials HTTP/1.1 instead.
   */
  private dialHttp2(
    session: ClientHttp2Session,
    protocols: readonly string[],
    headers: [string, string][],
    dialHttp1: () => void,
  ): void {
    whenSettingsKnown(
      session,
      (supported) => {
        if (this.failed) return
        if (!supported) {
          this.releaseSession()
          dialHttp1()
          return
        }
        const offer = this.deflateOptions === undefined ? undefined : buildClientOffer(this.deflateOptions)
        let stream: ClientHttp2Stream
        try {
          stream = openWebSocketStream(session, this.url, protocols, offer, headers)
        } catch (error) {
          this.fail(error instanceof Error ? error.message : String(error), error, undefined)
          return
        }
        this.http2Stream = stream
        stream.on('error', this.onHandshakeError)
        stream.once('close', this.onHandshakeClose)
        stream.once('close', () => this.releaseSession())
        stream.once('response', (responseHeaders) => this.onHttp2Response(responseHeaders))
      },
      () => {
        // The session failed before its SETTINGS: most often a server without HTTP/2 (no h2 in
        // ALPN). HTTP/1.1 is tried instead; if the server is down, that dial reports it.
        if (this.failed) return
        this.releaseSession()
        dialHttp1()
      },
    )
  }

  private onHttp2Response(responseHeaders: import('node:http2').IncomingHttpHeaders): void {
    const head = headFromResponse(responseHeaders)
    const status = Number(responseHeaders[':status'])
    // RFC 8441 5: a 2xx answer opens the WebSocket (Rally's server sends 200); anything else is a
    // failure to connect, reported with the response.
    if (!(status >= 200 && status < 300)) {
      this.fail(`Unexpected response status ${status}`, undefined, head)
      return
    }
    const fields = head.fields
    let compression: DeflateCodec | undefined
    let extensionFailure: string | undefined
    const chosen = fields['sec-websocket-protocol']
    if (chosen !== undefined) {
      if (chosen.length !== 1 || !this.offeredProtocols.includes(chosen[0]!)) {
        this.fail('Server chose a subprotocol the client did not offer', undefined, head)
        return
      }
      this.protocol = chosen[0]!
    }
    const extensions = fields['sec-websocket-extensions']
    if (extensions !== undefined) {
      if (this.deflateOptions === undefined) {
        this.fail('Server accepted an extension the client did not offer', undefined, head)
        return
      }
      this.extensions = extensions.join(', ')
      const outcome = this.negotiateDeflate(extensions)
      if (typeof outcome === 'string') extensionFailure = outcome
      else compression = outcome
    }
    this.open(head, new Uint8Array(0), compression, extensionFailure)
  }

  /** A shared session's use ends once (its last user closes it). */
  private releaseSession(): void {
    const shared = this.http2Shared
    if (shared === undefined) return
    this.http2Shared = undefined
    releaseShared(shared)
  }

  /** Gives up before the connection opens; `onConnectFailure` reports `message`. */
  abort(message: string): void {
    this.fail(message, undefined, undefined)
  }

  private readonly onHandshakeData = (chunk: Buffer): void => {
    let result: ReturnType<HttpHeadParser['push']>
    let compression: DeflateCodec | undefined
    let extensionFailure: string | undefined
    try {
      result = this.headParser!.push(chunk)
    } catch (error) {
      this.fail(error instanceof Error ? error.message : String(error), error, undefined)
      return
    }
    if (result === undefined) return
    try {
      const validated = validateResponse(
        result.head,
        this.key,
        this.offeredProtocols,
        this.deflateOptions !== undefined,
      )
      this.protocol = validated.protocol
      this.extensions = validated.extensions
      if (validated.extensions !== '') {
        const outcome = this.negotiateDeflate(result.head.fields['sec-websocket-extensions'] ?? [])
        if (typeof outcome === 'string') extensionFailure = outcome
        else compression = outcome
      }
    } catch (error) {
      this.fail(error instanceof Error ? error.message : String(error), error, result.head)
      return
    }
    this.open(result.head, result.rest, compression, extensionFailure)
  }

  private readonly onHandshakeError = (error: Error): void => {
    this.fail(error.message, error, undefined)
  }

  private readonly onHandshakeClose = (): void => {
    this.fail('Connection closed before the opening handshake completed', undefined, undefined)
  }

  /** The codec for the server's permessage-deflate response, or why it is unacceptable. */
  private negotiateDeflate(values: readonly string[]): DeflateCodec | string {
    const options = this.deflateOptions!
    const responses = parseExtensions(values)
    const params =
      responses === undefined
        ? 'Malformed Sec-WebSocket-Extensions response'
        : acceptServerResponse(responses, options)
    if (typeof params === 'string') return params
    return codecFor(params, 'client', options)
  }

  private open(
    response: HttpHead,
    rest: Uint8Array,
    compression: DeflateCodec | undefined,
    extensionFailure: string | undefined,
  ): void {
    clearTimeout(this.handshakeTimer)
    this.headParser = undefined
    let socket: DriverStream
    if (this.http2Stream !== undefined) {
      socket = this.http2Stream
      socket.removeListener('error', this.onHandshakeError)
      socket.removeListener('close', this.onHandshakeClose)
    } else {
      socket = this.socket
      socket.removeListener('data', this.onHandshakeData)
      socket.removeListener('error', this.onHandshakeError)
      socket.removeListener('close', this.onHandshakeClose)
    }
    const driver = new SocketDriver('client', socket, this.listener, {
      limits: this.limits,
      autoPong: this.options.autoPong ?? true,
      closeTimeout: this.options.closeTimeout ?? DEFAULT_CLOSE_TIMEOUT,
    })
    this.driver = driver
    if (extensionFailure !== undefined) {
      // RFC 6455 9.1 and RFC 7692 7: a response the client cannot accept fails the connection;
      // 1010 tells the server why.
      this.listener.onExtensionFailure(extensionFailure)
      driver.attach()
      driver.fail(CloseCode.MandatoryExtension, extensionFailure)
      return
    }
    if (compression !== undefined) driver.connection.setCompression(compression)
    this.listener.onOpen(response)
    if (this.options.heartbeat !== undefined) this.startHeartbeat(driver, this.options.heartbeat)
    // Frames that came with the 101 response first, then the rest of the stream.
    driver.attach(rest)
  }

  private startHeartbeat(
    driver: SocketDriver,
    { interval, timeout }: { interval: number; timeout: number },
  ): void {
    const beat = (): void => {
      if (driver.isClosed) return
      const mark = driver.receiveCount
      driver.connection.ping()
      this.heartbeatTimer = setTimeout(() => {
        // Nothing at all arrived since the ping — no pong, no message: the server is gone. Unless
        // reading is paused on purpose (pause(), a message waiting for decompression): then its
        // answer waits unread, and judging resumes with reading (a resume counts as input).
        if (driver.receiveCount === mark && !driver.readingHeld) driver.terminate()
        else this.heartbeatTimer = setTimeout(beat, Math.max(0, interval - timeout))
        this.heartbeatTimer?.unref()
      }, timeout)
      this.heartbeatTimer.unref()
    }
    this.heartbeatTimer = setTimeout(beat, interval)
    this.heartbeatTimer.unref()
  }

  /** Stops the heartbeat (the façade calls this when the connection closes). */
  stopTimers(): void {
    clearTimeout(this.heartbeatTimer)
    clearTimeout(this.handshakeTimer)
  }

  private fail(message: string, error: unknown, response: HttpHead | undefined): void {
    if (this.failed || this.driver !== undefined) return
    this.failed = true
    clearTimeout(this.handshakeTimer)
    if (this.http2Shared !== undefined || this.http2Stream !== undefined || this.options.http2) {
      // Over HTTP/2 only our stream goes; the session is shared (or the application's).
      const stream = this.http2Stream
      if (stream !== undefined) {
        stream.removeListener('close', this.onHandshakeClose)
        stream.on('error', () => {})
        // RST_STREAM CANCEL (RFC 8441 5), then released at once, unread input or not.
        if (!stream.destroyed) stream.close(0x8)
        stream.destroy()
      }
      this.releaseSession()
      if (stream !== undefined || this.headParser === undefined) {
        this.listener.onConnectFailure(message, error, response)
        return
      }
    }
    const socket = this.socket
    socket.removeListener('data', this.onHandshakeData)
    socket.removeListener('close', this.onHandshakeClose)
    // The error listener stays: a destroyed socket may still report one.
    socket.destroy()
    this.listener.onConnectFailure(message, error, response)
  }
}

function headerEntries(headers: ClientOptions['headers']): [string, string][] {
  if (headers === undefined) return []
  if (Symbol.iterator in headers) return [...(headers as Iterable<[string, string]>)]
  return Object.entries(headers)
}
