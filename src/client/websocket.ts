/**
 * The WHATWG `WebSocket` for Node (https://websockets.spec.whatwg.org/), so that code written for
 * browsers runs on Node unchanged, with Node-only options as a third argument.
 *
 * The opening handshake runs on a raw TCP or TLS socket with Rally's own HTTP head parser (linear
 * time, bounded), then the socket is handed to the same driver as the server's.
 */
import { Buffer } from 'node:buffer'
import { isIP, type Socket, connect as tcpConnect } from 'node:net'
import { type ConnectionOptions as TlsConnectOptions, connect as tlsConnect } from 'node:tls'
import { DeflateCodec } from '../node/deflate.js'
import { type DriverListener, SocketDriver } from '../node/socket-driver.js'
import { parseExtensions } from '../protocol/extensions/extension-header.js'
import {
  acceptServerResponse,
  buildClientOffer,
  DEFAULT_DEFLATE_LEVEL,
  DEFAULT_DEFLATE_MEM_LEVEL,
  DEFAULT_DEFLATE_THRESHOLD,
  directionsFor,
  type PerMessageDeflateOptions,
} from '../protocol/extensions/permessage-deflate.js'
import {
  buildClientRequest,
  CloseCode,
  type CloseInfo,
  generateKey,
  HttpHeadParser,
  isToken,
  type Limits,
  type ProtocolError,
  resolveLimits,
  validateResponse,
} from '../protocol/index.js'
import { CloseEvent, ErrorEvent } from './events.js'

export interface WebSocketOptions {
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
   * is terminated (close event 1006). Default: off, as in browsers.
   */
  heartbeat?: { interval: number; timeout: number }
  /**
   * Offer permessage-deflate (RFC 7692), as browsers do. Default true; false offers nothing.
   * A server response that breaks RFC 7692 fails the connection with 1010.
   */
  perMessageDeflate?: boolean | PerMessageDeflateOptions
}

export type BinaryType = 'blob' | 'arraybuffer'

type Handler = ((this: WebSocket, event: Event) => unknown) | null

const DEFAULT_HANDSHAKE_TIMEOUT = 30_000
const DEFAULT_CLOSE_TIMEOUT = 5000

export class WebSocket extends EventTarget implements DriverListener {
  static readonly CONNECTING = 0
  static readonly OPEN = 1
  static readonly CLOSING = 2
  static readonly CLOSED = 3
  declare readonly CONNECTING: 0
  declare readonly OPEN: 1
  declare readonly CLOSING: 2
  declare readonly CLOSED: 3

  readonly url: string
  /** The origin of `url`, for MessageEvent.origin. */
  private readonly origin: string
  private _readyState: number = WebSocket.CONNECTING
  private _protocol = ''
  private _extensions = ''
  private _binaryType: BinaryType = 'blob'
  /** Bytes passed to send() after closing began, which the spec still counts. */
  private unsentBytes = 0
  private readonly socket: Socket
  private driver: SocketDriver | undefined
  private readonly options: WebSocketOptions
  private readonly limits: Limits
  private readonly key: string
  private readonly offeredProtocols: string[]
  private handshakeTimer: NodeJS.Timeout | undefined
  private headParser: HttpHeadParser | undefined
  private failure: { message: string; error: unknown } | undefined
  private finished = false
  /** The connection was failed by this side after the 101 (the close event says 1006). */
  private failedLocally = false
  /** permessage-deflate settings when offered. */
  private readonly deflateOptions: PerMessageDeflateOptions | undefined
  private compression: DeflateCodec | undefined
  /** Why the connection is failed right after the 101 (an unacceptable extension response). */
  private extensionFailure: string | undefined
  /** Sends waiting for a Blob to be read, to keep them in order. */
  private sendQueue: (string | Uint8Array | Blob)[] | undefined
  private readonly handlers = new Map<string, { current: Handler }>()

  constructor(url: string | URL, protocols?: string | string[], options: WebSocketOptions = {}) {
    super()
    const parsed = parseWebSocketUrl(url)
    this.url = parsed.href
    this.origin = parsed.origin
    this.offeredProtocols = parseProtocols(protocols)
    this.options = options
    this.limits = resolveLimits({
      ...options.limits,
      ...(options.maxPayload !== undefined ? { maxMessageSize: options.maxPayload } : {}),
    })
    this.key = generateKey()
    const deflate = options.perMessageDeflate ?? true
    this.deflateOptions = deflate === true ? {} : deflate === false ? undefined : deflate

    const secure = parsed.protocol === 'wss:'
    const hostname = parsed.hostname.startsWith('[') ? parsed.hostname.slice(1, -1) : parsed.hostname
    const port = Number(parsed.port || (secure ? 443 : 80))
    this.socket = secure
      ? tlsConnect({
          host: hostname,
          port,
          servername: isIP(hostname) === 0 ? hostname : undefined,
          ALPNProtocols: ['http/1.1'],
          ...options.tls,
        })
      : tcpConnect({ host: hostname, port })
    const socket = this.socket
    socket.setNoDelay(true)
    this.handshakeTimer = setTimeout(
      () => this.failHandshake('Opening handshake timed out'),
      options.handshakeTimeout ?? DEFAULT_HANDSHAKE_TIMEOUT,
    )
    this.handshakeTimer.unref?.()

    const request = buildClientRequest({
      host: parsed.host,
      path: `${parsed.pathname}${parsed.search}`,
      key: this.key,
      protocols: this.offeredProtocols,
      extensions: this.deflateOptions === undefined ? undefined : buildClientOffer(this.deflateOptions),
      headers: headerEntries(options.headers),
    })
    socket.once(secure ? 'secureConnect' : 'connect', () => socket.write(request))
    this.headParser = new HttpHeadParser(this.limits)
    socket.on('data', this.onHandshakeData)
    socket.on('error', this.onHandshakeError)
    socket.on('close', this.onHandshakeClose)
  }

  get readyState(): number {
    return this._readyState
  }

  /** The subprotocol the server chose, or "". */
  get protocol(): string {
    return this._protocol
  }

  /** The extensions the server accepted, or "". */
  get extensions(): string {
    return this._extensions
  }

  get binaryType(): BinaryType {
    return this._binaryType
  }

  set binaryType(value: BinaryType) {
    // The spec ignores values outside the enumeration rather than throwing.
    if (value === 'blob' || value === 'arraybuffer') this._binaryType = value
  }

  /** Bytes of application data queued but not yet sent. */
  get bufferedAmount(): number {
    return (this.driver?.bufferedAmount ?? 0) + this.unsentBytes + this.queuedBytes()
  }

  get onopen(): Handler {
    return this.getHandler('open')
  }
  set onopen(handler: Handler) {
    this.setHandler('open', handler)
  }
  get onmessage(): Handler {
    return this.getHandler('message')
  }
  set onmessage(handler: Handler) {
    this.setHandler('message', handler)
  }
  get onerror(): Handler {
    return this.getHandler('error')
  }
  set onerror(handler: Handler) {
    this.setHandler('error', handler)
  }
  get onclose(): Handler {
    return this.getHandler('close')
  }
  set onclose(handler: Handler) {
    this.setHandler('close', handler)
  }

  /**
   * Sends a message: strings as text, ArrayBuffer, views and Blobs as binary. Throws
   * InvalidStateError while CONNECTING; after closing began, the data is counted in
   * bufferedAmount and discarded, as the spec says.
   */
  send(data: string | ArrayBufferLike | ArrayBufferView | Blob): void {
    if (this._readyState === WebSocket.CONNECTING) {
      throw new DOMException('WebSocket is still connecting', 'InvalidStateError')
    }
    let item: string | Uint8Array | Blob
    if (typeof data === 'string') item = data
    else if (data instanceof Blob) item = data
    else if (ArrayBuffer.isView(data)) item = new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
    else if (data instanceof ArrayBuffer || data instanceof SharedArrayBuffer) item = new Uint8Array(data)
    else item = String(data)
    if (this._readyState !== WebSocket.OPEN || this.driver === undefined) {
      this.unsentBytes +=
        typeof item === 'string' ? Buffer.byteLength(item) : item instanceof Blob ? item.size : item.length
      return
    }
    if (this.sendQueue !== undefined || item instanceof Blob) {
      this.enqueue(item)
      return
    }
    this.transmit(item)
  }

  /**
   * Starts the closing handshake. `code` must be 1000 or 3000-4999 (else InvalidAccessError), the
   * reason at most 123 UTF-8 bytes (else SyntaxError).
   */
  close(code?: number, reason?: string): void {
    if (code !== undefined && code !== 1000 && (code < 3000 || code > 4999 || !Number.isInteger(code))) {
      throw new DOMException(`Close code must be 1000 or in 3000-4999, got ${code}`, 'InvalidAccessError')
    }
    if (reason !== undefined && Buffer.byteLength(reason) > 123) {
      throw new DOMException('Close reason must be at most 123 UTF-8 bytes', 'SyntaxError')
    }
    if (this._readyState === WebSocket.CLOSING || this._readyState === WebSocket.CLOSED) return
    if (this._readyState === WebSocket.CONNECTING) {
      // The spec: "Fail the WebSocket connection" and move to CLOSING.
      this.failHandshake('WebSocket was closed before the connection was established')
      return
    }
    this._readyState = WebSocket.CLOSING
    this.driver!.close(code ?? (reason ? CloseCode.Normal : undefined), reason)
  }

  /** Node extension: sends a ping (payload at most 125 bytes). */
  ping(data: string | Uint8Array = ''): void {
    if (this._readyState === WebSocket.CONNECTING) {
      throw new DOMException('WebSocket is still connecting', 'InvalidStateError')
    }
    this.driver?.connection.ping(typeof data === 'string' ? Buffer.from(data) : data)
  }

  /** Node extension: destroys the connection at once, without a closing handshake. */
  terminate(): void {
    if (this.driver !== undefined) this.driver.terminate()
    else this.failHandshake('WebSocket was terminated before the connection was established')
  }

  // ------------------------------------------------------------- handshake

  private readonly onHandshakeData = (chunk: Buffer): void => {
    let result: ReturnType<HttpHeadParser['push']>
    try {
      result = this.headParser!.push(chunk)
      if (result === undefined) return
      const validated = validateResponse(
        result.head,
        this.key,
        this.offeredProtocols,
        this.deflateOptions !== undefined,
      )
      this._protocol = validated.protocol
      this._extensions = validated.extensions
      if (validated.extensions !== '')
        this.negotiateDeflate(result.head.fields['sec-websocket-extensions'] ?? [])
    } catch (error) {
      this.failHandshake(error instanceof Error ? error.message : String(error), error)
      return
    }
    this.open(result.rest)
  }

  private readonly onHandshakeError = (error: Error): void => {
    this.failHandshake(error.message, error)
  }

  private readonly onHandshakeClose = (): void => {
    this.failHandshake('Connection closed before the opening handshake completed')
  }

  /** Checks the server's permessage-deflate response and sets up the codec, or notes why not. */
  private negotiateDeflate(values: readonly string[]): void {
    const options = this.deflateOptions!
    const responses = parseExtensions(values)
    const params =
      responses === undefined
        ? 'Malformed Sec-WebSocket-Extensions response'
        : acceptServerResponse(responses, options)
    if (typeof params === 'string') {
      this.extensionFailure = params
      return
    }
    const { compress, decompress } = directionsFor(params, 'client')
    this.compression = new DeflateCodec({
      compress,
      decompress,
      threshold: options.threshold ?? DEFAULT_DEFLATE_THRESHOLD,
      level: options.level ?? DEFAULT_DEFLATE_LEVEL,
      memLevel: options.memLevel ?? DEFAULT_DEFLATE_MEM_LEVEL,
    })
  }

  private open(rest: Uint8Array): void {
    clearTimeout(this.handshakeTimer)
    this.handshakeTimer = undefined
    this.headParser = undefined
    const socket = this.socket
    socket.removeListener('data', this.onHandshakeData)
    socket.removeListener('error', this.onHandshakeError)
    socket.removeListener('close', this.onHandshakeClose)
    this.driver = new SocketDriver('client', socket, this, {
      limits: this.limits,
      autoPong: this.options.autoPong ?? true,
      closeTimeout: this.options.closeTimeout ?? DEFAULT_CLOSE_TIMEOUT,
    })
    if (this.extensionFailure !== undefined) {
      // RFC 7692 and RFC 6455 9.1: an extension response we cannot accept fails the connection;
      // 1010 tells the server why.
      this._readyState = WebSocket.CLOSING
      this.failedLocally = true
      this.driver.attach()
      this.driver.fail(CloseCode.MandatoryExtension, this.extensionFailure)
      this.failure = { message: this.extensionFailure, error: undefined }
      this.dispatchEvent(new ErrorEvent('error', this.failure))
      return
    }
    if (this.compression !== undefined) this.driver.connection.setCompression(this.compression)
    this._readyState = WebSocket.OPEN
    if (this.options.heartbeat !== undefined) this.startHeartbeat(this.options.heartbeat)
    this.dispatchEvent(new Event('open'))
    // Frames that came with the 101 response, then the rest of the stream.
    this.driver.attach(rest)
  }

  private heartbeatTimer: NodeJS.Timeout | undefined

  private startHeartbeat({ interval, timeout }: { interval: number; timeout: number }): void {
    const driver = this.driver!
    const beat = (): void => {
      const mark = driver.receiveCount
      driver.connection.ping()
      this.heartbeatTimer = setTimeout(() => {
        // Nothing at all arrived since the ping — no pong, no message: the server is gone.
        if (driver.receiveCount === mark) driver.terminate()
        else this.heartbeatTimer = setTimeout(beat, Math.max(0, interval - timeout))
      }, timeout)
      this.heartbeatTimer.unref()
    }
    this.heartbeatTimer = setTimeout(beat, interval)
    this.heartbeatTimer.unref()
  }

  /** The connection failed before opening: error, then close with 1006 (WHATWG "fail"). */
  private failHandshake(message: string, error?: unknown): void {
    if (this.finished || this.driver !== undefined) return
    this.finished = true
    clearTimeout(this.handshakeTimer)
    this._readyState = WebSocket.CLOSING
    const socket = this.socket
    socket.removeListener('data', this.onHandshakeData)
    socket.removeListener('close', this.onHandshakeClose)
    // Keep listening for errors: a destroyed socket may still report one.
    socket.destroy()
    this.failure = { message, error }
    setImmediate(() => {
      this._readyState = WebSocket.CLOSED
      this.dispatchEvent(new ErrorEvent('error', this.failure))
      this.dispatchEvent(new CloseEvent('close', { wasClean: false, code: CloseCode.Abnormal, reason: '' }))
    })
  }

  // ------------------------------------------------------------- sending

  private transmit(item: string | Uint8Array): void {
    const connection = this.driver!.connection
    if (typeof item === 'string') connection.sendText(item)
    else connection.sendBinary(item)
  }

  private enqueue(item: string | Uint8Array | Blob): void {
    const queue = (this.sendQueue ??= [])
    queue.push(item)
    if (queue.length === 1) void this.drainQueue()
  }

  /** Sends queued items in order, reading each Blob when its turn comes. */
  private async drainQueue(): Promise<void> {
    const queue = this.sendQueue!
    while (queue.length > 0) {
      const item = queue[0]!
      const bytes = item instanceof Blob ? new Uint8Array(await item.arrayBuffer()) : item
      queue.shift()
      if (this._readyState === WebSocket.OPEN) this.transmit(bytes)
      else this.unsentBytes += typeof bytes === 'string' ? Buffer.byteLength(bytes) : bytes.length
    }
    this.sendQueue = undefined
  }

  private queuedBytes(): number {
    if (this.sendQueue === undefined) return 0
    let total = 0
    for (const item of this.sendQueue) {
      total +=
        typeof item === 'string' ? Buffer.byteLength(item) : item instanceof Blob ? item.size : item.length
    }
    return total
  }

  // ------------------------------------------------------------- DriverListener

  onMessage(data: Uint8Array, isBinary: boolean): void {
    let payload: string | Blob | ArrayBuffer
    if (!isBinary) {
      payload = Buffer.from(data.buffer, data.byteOffset, data.length).toString('utf8')
    } else if (this._binaryType === 'arraybuffer') {
      payload = data.buffer.slice(data.byteOffset, data.byteOffset + data.length) as ArrayBuffer
    } else {
      payload = new Blob([data])
    }
    this.dispatchEvent(new MessageEvent('message', { data: payload, origin: this.origin }))
  }

  onPing(): void {}

  onPong(): void {}

  onCloseFrame(): void {
    // "When the WebSocket closing handshake is started, [...] change the readyState to CLOSING".
    this._readyState = WebSocket.CLOSING
  }

  onProtocolError(error: ProtocolError): void {
    this.failure = { message: error.message, error }
    this.dispatchEvent(new ErrorEvent('error', this.failure))
  }

  onDrain(): void {}

  onClosed(info: CloseInfo): void {
    clearTimeout(this.heartbeatTimer)
    this._readyState = WebSocket.CLOSED
    // A failed connection reports 1006 and is never clean (WHATWG "fail the WebSocket connection").
    const failed = info.error !== undefined || this.failedLocally
    this.dispatchEvent(
      new CloseEvent('close', {
        wasClean: info.wasClean && !failed,
        code: failed ? CloseCode.Abnormal : info.code,
        reason: failed ? '' : info.reason,
      }),
    )
  }

  // ------------------------------------------------------------- event handler attributes

  private getHandler(type: string): Handler {
    return this.handlers.get(type)?.current ?? null
  }

  private setHandler(type: string, handler: Handler): void {
    let slot = this.handlers.get(type)
    if (slot === undefined) {
      // The listener is registered once, at the first assignment, and calls whatever is current.
      const created = { current: null as Handler }
      slot = created
      this.handlers.set(type, created)
      this.addEventListener(type, (event) => created.current?.call(this, event))
    }
    slot.current = typeof handler === 'function' ? handler : null
  }
}

for (const [name, value] of [
  ['CONNECTING', 0],
  ['OPEN', 1],
  ['CLOSING', 2],
  ['CLOSED', 3],
] as const) {
  Object.defineProperty(WebSocket.prototype, name, { value, enumerable: true })
}

function parseWebSocketUrl(input: string | URL): URL {
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
  if (url.hash !== '') throw new DOMException('WebSocket URLs cannot have a fragment', 'SyntaxError')
  return url
}

function parseProtocols(protocols: string | string[] | undefined): string[] {
  const list = protocols === undefined ? [] : typeof protocols === 'string' ? [protocols] : [...protocols]
  const seen = new Set<string>()
  for (const protocol of list) {
    // RFC 6455 4.1: each is a token, and the spec refuses duplicates.
    if (!isToken(protocol)) throw new DOMException(`Invalid subprotocol "${protocol}"`, 'SyntaxError')
    const folded = protocol.toLowerCase()
    if (seen.has(folded)) throw new DOMException(`Duplicate subprotocol "${protocol}"`, 'SyntaxError')
    seen.add(folded)
  }
  return list
}

function headerEntries(headers: WebSocketOptions['headers']): [string, string][] {
  if (headers === undefined) return []
  if (Symbol.iterator in headers) return [...(headers as Iterable<[string, string]>)]
  return Object.entries(headers)
}
