/**
 * `rallyjs/ws`'s WebSocket: the public API of the `ws` package's WebSocket, for both ends — on the
 * server it wraps a ServerWebSocket, on the client a ClientConnection. No second implementation:
 * framing, limits and closing are Rally's; this file only maps names and event shapes.
 */
import { Buffer } from 'node:buffer'
import { EventEmitter } from 'node:events'
import { type ClientRequest, IncomingMessage, type OutgoingHttpHeaders } from 'node:http'
import type { Duplex, DuplexOptions } from 'node:stream'
import {
  ClientConnection,
  type ClientListener,
  type ClientOptions as NativeClientOptions,
  parseProtocols,
  parseWebSocketUrl,
} from '../../client/client-connection.js'
import { PauseReason, type SocketDriver } from '../../node/socket-driver.js'
import { CloseCode, type CloseInfo, type HttpHead, type ProtocolError } from '../../protocol/index.js'
import type { SendData, SendStatus, ServerWebSocket } from '../../server/server-websocket.js'
import { createWebSocketStream } from './stream.js'
import type * as types from './types.js'
import { WebSocketServer } from './websocket-server.js'

export type BinaryType = 'nodebuffer' | 'arraybuffer' | 'fragments'

/** @deprecated Use `WebSocket.ClientOptions` (the name @types/ws uses). */
export type ClientWebSocketOptions = types.ClientOptions

/** ws's default maxPayload, kept for drop-in compatibility (Rally's own default is 16 MiB). */
export const WS_DEFAULT_MAX_PAYLOAD = 100 * 1024 * 1024

type SendCallback = (error?: Error) => void

/** The two ends this class can sit on. */
type Backend =
  | { kind: 'server'; socket: ServerWebSocket<unknown> }
  | { kind: 'client'; client: ClientConnection }

const READY_STATE_NAMES = ['CONNECTING', 'OPEN', 'CLOSING', 'CLOSED'] as const

/** Options of ws (and of node:http requests) that Rally does not implement: setting one throws. */
const UNSUPPORTED_CLIENT_OPTIONS = ['agent', 'createConnection', 'finishRequest', 'socketPath'] as const

/** Fields of node:http request options that are not TLS options: never passed to tls.connect. */
const NON_TLS_FIELDS = new Set([
  'protocol',
  'followRedirects',
  'maxRedirects',
  'generateMask',
  'allowSynchronousEvents',
  'maxBufferedChunks',
  'maxFragments',
  'skipUTF8Validation',
  'host',
  'hostname',
  'port',
  'defaultPort',
  'path',
  'method',
  'auth',
  'timeout',
  'setHost',
  'localPort',
  'family',
  'lookup',
  'insecureHTTPParser',
  'maxHeaderSize',
  'joinDuplicateHeaders',
  'uniqueHeaders',
  'signal',
  '_defaultAgent',
])

// biome-ignore lint/suspicious/noUnsafeDeclarationMerging: the merged interface adds only event overloads to EventEmitter's own methods (types, no members to initialise).
export class WebSocket extends EventEmitter {
  static readonly CONNECTING = 0
  static readonly OPEN = 1
  static readonly CLOSING = 2
  static readonly CLOSED = 3
  declare readonly CONNECTING: 0
  declare readonly OPEN: 1
  declare readonly CLOSING: 2
  declare readonly CLOSED: 3
  // The rest of the API on the class, as ws puts it on its export: `new WebSocket.Server({ port })`
  // from a default import or require(). Getters, read when used: no module-level side effect
  // (the package says `sideEffects: false`), and the import cycle with the server is harmless.
  static get Server(): typeof WebSocketServer {
    return WebSocketServer
  }
  static get WebSocketServer(): typeof WebSocketServer {
    return WebSocketServer
  }
  static get WebSocket(): typeof WebSocket {
    return WebSocket
  }
  static get createWebSocketStream(): (websocket: WebSocket, options?: DuplexOptions) => Duplex {
    return createWebSocketStream
  }

  binaryType: BinaryType = 'nodebuffer'
  /**
   * The URL for a client. On the server side it is undefined, as in ws, though typed `string`
   * as @types/ws types it.
   */
  readonly url: string
  private backend: Backend
  private state: number = WebSocket.CONNECTING
  private fragmenting = false
  /** pause() was called and resume() not yet: ws's isPaused (other pause reasons are Rally's). */
  private userPaused = false
  /** Send callbacks held until the socket drains: ws calls them once the data is written. */
  private drainCallbacks: SendCallback[] = []
  /** The `on*` attributes' listeners, by event name. */
  private attributeListeners: Map<string, EventAttribute> | undefined

  constructor(address: null)
  constructor(address: string | URL, options?: types.ClientConstructorOptions)
  constructor(address: string | URL, protocols?: string | string[], options?: types.ClientConstructorOptions)
  /** @internal The server-side constructor, used by WebSocketServer. */
  constructor(address: null, protocols: undefined, options: undefined, server: ServerWebSocket<unknown>)
  constructor(
    address: string | URL | null,
    protocols?: string | string[] | types.ClientConstructorOptions,
    options?: types.ClientConstructorOptions,
    server?: ServerWebSocket<unknown>,
  ) {
    super()
    if (address === null) {
      if (server === undefined)
        throw new TypeError('new WebSocket(null) is for WebSocketServer: clients need a URL')
      this.url = undefined as unknown as string
      this.backend = { kind: 'server', socket: server }
      this.state = WebSocket.OPEN
      return
    }
    if (protocols !== undefined && typeof protocols === 'object' && !Array.isArray(protocols)) {
      options = protocols
      protocols = undefined
    }
    const opts = (options ?? {}) as types.ClientOptions & Record<string, unknown>
    if (opts.protocolVersion !== undefined && opts.protocolVersion !== 13) {
      throw new RangeError(`Unsupported protocol version: ${opts.protocolVersion} (supported versions: 13)`)
    }
    for (const name of UNSUPPORTED_CLIENT_OPTIONS) {
      if (opts[name] !== undefined && opts[name] !== false)
        throw new TypeError(`rallyjs/ws does not support the "${name}" option (see docs/ws-compat.md)`)
    }
    if (opts.followRedirects === true)
      throw new TypeError('rallyjs/ws does not follow redirects (see docs/ws-compat.md)')
    const url = parseWebSocketUrl(address)
    this.url = url.href
    const { headers, origin, perMessageDeflate, maxPayload, handshakeTimeout, autoPong, maxFragments } = opts
    const tls: Record<string, unknown> = {}
    for (const [name, value] of Object.entries(opts)) {
      if (!NON_TLS_FIELDS.has(name) && !KNOWN_WS_CLIENT_FIELDS.has(name)) tls[name] = value
    }
    const clientOptions: NativeClientOptions = {
      headers: {
        ...normalizeHeaders(headers as OutgoingHttpHeaders | readonly string[] | undefined),
        ...(origin !== undefined ? { Origin: origin } : {}),
      },
      perMessageDeflate: toNativeDeflate(perMessageDeflate) ?? true,
      maxPayload: maxPayload ?? WS_DEFAULT_MAX_PAYLOAD,
      ...(maxFragments !== undefined ? { limits: { maxFragments } } : {}),
      handshakeTimeout,
      autoPong,
      tls,
    }
    this.backend = {
      kind: 'client',
      client: new ClientConnection(
        url,
        parseProtocols(protocols as string | string[] | undefined),
        clientOptions,
        this.clientListener(),
      ),
    }
  }

  get readyState(): 0 | 1 | 2 | 3 {
    if (this.backend.kind === 'server') return this.backend.socket.readyState as 0 | 1 | 2 | 3
    return this.state as 0 | 1 | 2 | 3
  }

  get protocol(): string {
    return this.backend.kind === 'server' ? this.backend.socket.protocol : this.backend.client.protocol
  }

  get extensions(): string {
    return this.backend.kind === 'server' ? this.backend.socket.extensions : this.backend.client.extensions
  }

  get bufferedAmount(): number {
    return this.backend.kind === 'server'
      ? this.backend.socket.bufferedAmount
      : (this.driver()?.bufferedAmount ?? 0)
  }

  /**
   * Whether pause() holds reading, as in ws. (Rally also pauses reading on its own — a write
   * backlog, messages being inflated — which this does not report: those lift by themselves.)
   */
  get isPaused(): boolean {
    return this.userPaused
  }

  /** The Rally server socket underneath (topics, backpressure status): server side only. */
  get rally(): ServerWebSocket<unknown> | undefined {
    return this.backend.kind === 'server' ? this.backend.socket : undefined
  }

  // Topics (a Rally extension, server side): see ServerWebSocket.

  subscribe(topic: string): boolean {
    return this.serverSocket('subscribe').subscribe(topic)
  }

  unsubscribe(topic: string): boolean {
    return this.serverSocket('unsubscribe').unsubscribe(topic)
  }

  isSubscribed(topic: string): boolean {
    return this.serverSocket('isSubscribed').isSubscribed(topic)
  }

  get topics(): string[] {
    return this.backend.kind === 'server' ? this.backend.socket.topics : []
  }

  /** Sends to every subscriber of `topic` but this socket, framed once. */
  publish(topic: string, data: SendData, options?: { binary?: boolean; compress?: boolean }): number {
    return this.serverSocket('publish').publish(topic, data, options)
  }

  private serverSocket(method: string): ServerWebSocket<unknown> {
    if (this.backend.kind !== 'server')
      throw new TypeError(`${method}() is for server-side sockets (topics live on the server)`)
    return this.backend.socket
  }

  /**
   * Sends a message. `options.binary` defaults to "not a string"; `compress` applies with
   * permessage-deflate; `fin: false` sends a fragment of a message continued by later calls.
   * As in ws, the callback runs once the data is written to the socket (held while the socket
   * is backed up, until it drains), or with an error if it was not sent.
   */
  send(data: types.SendableData, callback?: SendCallback): void
  send(data: types.SendableData, options: types.SendOptions, callback?: SendCallback): void
  send(data: types.SendableData, options?: types.SendOptions | SendCallback, callback?: SendCallback): void {
    if (typeof options === 'function') {
      callback = options
      options = undefined
    }
    if (this.readyState === WebSocket.CONNECTING) {
      throw new Error('WebSocket is not open: readyState 0 (CONNECTING)')
    }
    const payload = toSendData(data)
    const binary = options?.binary ?? typeof payload !== 'string'
    const fin = options?.fin ?? true
    let status: SendStatus
    if (this.backend.kind === 'server') {
      const socket = this.backend.socket
      if (!fin || this.fragmenting) {
        status = socket.sendFragment(payload, { binary, first: !this.fragmenting, fin })
        if (status !== 'dropped') this.fragmenting = !fin
      } else {
        status = socket.send(payload, { binary, compress: options?.compress })
      }
    } else {
      const driver = this.driver()
      const connection = driver?.connection
      const bytes = typeof payload === 'string' ? Buffer.from(payload) : toUint8(payload)
      let sent: boolean
      if (connection === undefined) sent = false
      else if (!fin || this.fragmenting) {
        sent = connection.sendFragment(this.fragmenting ? 0 : binary ? 2 : 1, bytes, fin)
        if (sent) this.fragmenting = !fin
      } else
        sent = binary
          ? connection.sendBinary(bytes, options?.compress)
          : connection.sendText(bytes, options?.compress)
      status = !sent ? 'dropped' : driver!.needsDrain ? 'buffered' : 'sent'
    }
    if (callback !== undefined) this.settleSend(status, callback)
  }

  /** Calls a send's callback as ws would: after the write, after the drain, or with the reason. */
  private settleSend(status: SendStatus, callback: SendCallback): void {
    if (status === 'dropped') process.nextTick(callback, this.notSentError())
    // The socket is over its high-water mark: 'drain' will come (or 'close', which fails these).
    else if (status === 'buffered' || this.drainCallbacks.length > 0) this.drainCallbacks.push(callback)
    else process.nextTick(callback)
  }

  /** Why a message was not sent: the state, or the opt-in backpressure limit. */
  private notSentError(): Error {
    const state = this.readyState
    // Only the server's opt-in maxBackpressure drops a message on an open socket.
    if (state === WebSocket.OPEN && this.backend.kind === 'server') {
      return new Error(
        `WebSocket message dropped: ${this.bufferedAmount} bytes already queued for this socket, over the server's maxBackpressure`,
      )
    }
    return new Error(`WebSocket is not open: readyState ${state} (${READY_STATE_NAMES[state]})`)
  }

  ping(data?: unknown, mask?: boolean, callback?: (error?: Error) => void): void
  ping(data?: unknown, _mask?: boolean, callback?: (error?: Error) => void): void {
    this.control('ping', data, callback)
  }

  pong(data?: unknown, mask?: boolean, callback?: (error?: Error) => void): void
  pong(data?: unknown, _mask?: boolean, callback?: (error?: Error) => void): void {
    this.control('pong', data, callback)
  }

  private control(kind: 'ping' | 'pong', data: unknown, callback: SendCallback | undefined): void {
    if (this.readyState === WebSocket.CONNECTING)
      throw new Error('WebSocket is not open: readyState 0 (CONNECTING)')
    const payload = data === undefined ? '' : toSendData(data as types.SendableData)
    const bytes = typeof payload === 'string' ? Buffer.from(payload) : toUint8(payload)
    let status: SendStatus
    if (this.backend.kind === 'server') status = this.backend.socket[kind](bytes)
    else {
      const connection = this.driver()?.connection
      status = connection?.[kind](bytes) ? 'sent' : 'dropped'
    }
    if (callback !== undefined) this.settleSend(status, callback)
  }

  /** Starts the closing handshake. While connecting, aborts (as ws does, with an error event). */
  close(code?: number, data?: string | Buffer): void {
    const text = data === undefined ? undefined : data.toString()
    if (this.backend.kind === 'server') {
      this.backend.socket.close(code, text)
      return
    }
    if (this.state === WebSocket.CLOSED || this.state === WebSocket.CLOSING) return
    const driver = this.driver()
    if (driver === undefined) {
      this.state = WebSocket.CLOSING
      this.backend.client.abort('WebSocket was closed before the connection was established')
      return
    }
    this.state = WebSocket.CLOSING
    driver.close(code, text)
  }

  terminate(): void {
    if (this.backend.kind === 'server') {
      this.backend.socket.terminate()
      return
    }
    const driver = this.driver()
    if (driver !== undefined) driver.terminate()
    else if (this.state !== WebSocket.CLOSED) {
      this.state = WebSocket.CLOSING
      this.backend.client.abort('WebSocket was closed before the connection was established')
    }
  }

  /** Stops reading from the socket (ws's pause()); messages wait in the kernel's buffer. */
  pause(): void {
    if (this.readyState === WebSocket.CONNECTING || this.readyState === WebSocket.CLOSED) return
    this.userPaused = true
    if (this.backend.kind === 'server') this.backend.socket.pauseReading()
    else this.driver()?.pause(PauseReason.User)
  }

  resume(): void {
    if (this.readyState === WebSocket.CONNECTING || this.readyState === WebSocket.CLOSED) return
    this.userPaused = false
    if (this.backend.kind === 'server') this.backend.socket.resumeReading()
    else this.driver()?.resume(PauseReason.User)
  }

  // ------------------------------------------------------------- WHATWG-style events (as in ws)

  get onopen(): ((event: types.Event) => void) | null {
    return this.attributeHandler('open')
  }
  set onopen(handler: ((event: types.Event) => void) | null) {
    this.setAttributeHandler('open', handler)
  }
  get onerror(): ((event: types.ErrorEvent) => void) | null {
    return this.attributeHandler('error')
  }
  set onerror(handler: ((event: types.ErrorEvent) => void) | null) {
    this.setAttributeHandler('error', handler)
  }
  get onclose(): ((event: types.CloseEvent) => void) | null {
    return this.attributeHandler('close')
  }
  set onclose(handler: ((event: types.CloseEvent) => void) | null) {
    this.setAttributeHandler('close', handler)
  }
  get onmessage(): ((event: types.MessageEvent) => void) | null {
    return this.attributeHandler('message')
  }
  set onmessage(handler: ((event: types.MessageEvent) => void) | null) {
    this.setAttributeHandler('message', handler)
  }

  /**
   * Listens for `open`, `message`, `close` or `error` with WHATWG-style event objects, as ws
   * does. Adding the same listener twice for a type adds it once, as in the DOM.
   */
  addEventListener<K extends keyof types.WebSocketEventMap>(
    type: K,
    listener: WhatwgListener<types.WebSocketEventMap[K]>,
    options?: types.EventListenerOptions,
  ): void {
    if (!isWhatwgType(type)) return
    for (const existing of this.rawListeners(type)) {
      if ((existing as Adapted)[kWhatwgListener] === listener && !(existing as Adapted)[kAttribute]) return
    }
    const adapted = adaptListener(this, type, listener as WhatwgListener<types.Event>, false)
    if (options?.once === true) this.once(type, adapted)
    else this.on(type, adapted)
  }

  removeEventListener<K extends keyof types.WebSocketEventMap>(
    type: K,
    listener: WhatwgListener<types.WebSocketEventMap[K]>,
  ): void {
    for (const existing of this.rawListeners(type)) {
      const adapted = existing as Adapted & { listener?: Adapted }
      const target = adapted.listener ?? adapted
      if (target[kWhatwgListener] === listener && !target[kAttribute]) {
        this.removeListener(type, existing as (...args: unknown[]) => void)
        return
      }
    }
  }

  private attributeHandler<E>(type: string): ((event: E) => void) | null {
    return (this.attributeListeners?.get(type)?.handler as ((event: E) => void) | undefined) ?? null
  }

  private setAttributeHandler<E extends types.Event>(
    type: string,
    handler: ((event: E) => void) | null,
  ): void {
    const listeners = (this.attributeListeners ??= new Map())
    const previous = listeners.get(type)
    if (previous !== undefined) {
      this.removeListener(type, previous.adapted)
      listeners.delete(type)
    }
    if (typeof handler !== 'function') return
    const adapted = adaptListener(this, type as WhatwgType, handler as WhatwgListener<types.Event>, true)
    listeners.set(type, { handler, adapted })
    this.on(type, adapted)
  }

  // ------------------------------------------------------------- delivery (both ends)

  /** @internal */
  deliverMessage(data: Uint8Array, isBinary: boolean): void {
    const buffer = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.length)
    let payload: Buffer | ArrayBuffer | Buffer[] = buffer
    if (this.binaryType === 'arraybuffer') {
      payload = buffer.buffer.slice(buffer.byteOffset, buffer.byteOffset + buffer.length) as ArrayBuffer
    } else if (this.binaryType === 'fragments') {
      payload = [buffer]
    }
    this.emit('message', payload, isBinary)
  }

  /** @internal The socket drained: the send callbacks held for it run. */
  deliverDrain(): void {
    const callbacks = this.drainCallbacks
    if (callbacks.length === 0) return
    this.drainCallbacks = []
    for (const callback of callbacks) callback()
  }

  /** @internal */
  deliverClose(info: CloseInfo): void {
    this.state = WebSocket.CLOSED
    this.userPaused = false
    // Messages still held behind a backed-up socket died with it.
    const callbacks = this.drainCallbacks
    this.drainCallbacks = []
    for (const callback of callbacks)
      callback(new Error('WebSocket closed before the message was written: readyState 3 (CLOSED)'))
    // ws reports 1005 when the close frame had no code, and 1006 without a close frame.
    this.emit('close', info.code, Buffer.from(info.reason))
  }

  /** @internal A protocol error: emitted only if someone listens (ws would crash the process). */
  deliverError(error: Error): void {
    if (this.listenerCount('error') > 0) this.emit('error', error)
  }

  // ------------------------------------------------------------- client end

  private driver(): SocketDriver | undefined {
    return this.backend.kind === 'client' ? this.backend.client.driver : undefined
  }

  /**
   * The handshake's response as ws passes it to `upgrade` and `unexpected-response`: an
   * http.IncomingMessage on the connection's socket, with the status line and headers. Rally reads
   * no response body, so the message ends at once.
   */
  private responseMessage(status: number, head: HttpHead): IncomingMessage {
    const socket = this.backend.kind === 'client' ? this.backend.client.socket : undefined
    const response = new IncomingMessage(socket as NonNullable<typeof socket>)
    response.statusCode = status
    response.statusMessage = head.startLine[2]
    const version = /^HTTP\/(\d)\.(\d)$/.exec(head.startLine[0])
    response.httpVersionMajor = Number(version?.[1] ?? 1)
    response.httpVersionMinor = Number(version?.[2] ?? 1)
    response.httpVersion = `${response.httpVersionMajor}.${response.httpVersionMinor}`
    const headers: Record<string, string | string[]> = {}
    const rawHeaders: string[] = []
    for (const [name, values] of Object.entries(head.fields)) {
      // node:http's convention: set-cookie as a list, other repeated fields joined with ", ".
      headers[name] = name === 'set-cookie' ? [...values] : values.join(', ')
      for (const value of values) rawHeaders.push(name, value)
    }
    response.headers = headers
    response.rawHeaders = rawHeaders
    response.push(null)
    return response
  }

  private clientListener(): ClientListener {
    return {
      onOpen: (response: HttpHead) => {
        this.state = WebSocket.OPEN
        this.emit('upgrade', this.responseMessage(101, response))
        this.emit('open')
      },
      onConnectFailure: (message: string, error: unknown, response: HttpHead | undefined) => {
        this.state = WebSocket.CLOSING
        process.nextTick(() => {
          this.state = WebSocket.CLOSED
          const status = response === undefined ? 0 : Number(response.startLine[1])
          if (response !== undefined && status !== 101 && this.listenerCount('unexpected-response') > 0) {
            const request: types.UpgradeRequest = { method: 'GET', url: this.url }
            this.emit('unexpected-response', request, this.responseMessage(status, response))
          } else {
            this.emit('error', error instanceof Error ? error : new Error(message))
          }
          this.emit('close', CloseCode.Abnormal, Buffer.alloc(0))
        })
      },
      onExtensionFailure: (message: string) => {
        this.state = WebSocket.CLOSING
        this.emit('error', new Error(message))
      },
      onMessage: (data, isBinary) => this.deliverMessage(data, isBinary),
      onPing: (data) => this.emit('ping', Buffer.from(data)),
      onPong: (data) => this.emit('pong', Buffer.from(data)),
      onCloseFrame: () => {
        this.state = WebSocket.CLOSING
      },
      onProtocolError: (error: ProtocolError) => this.deliverError(error),
      onDrain: () => this.deliverDrain(),
      onClosed: (info) => {
        if (this.backend.kind === 'client') this.backend.client.stopTimers()
        this.deliverClose(info)
      },
    }
  }
}

/**
 * The event overloads of @types/ws: `ws.on('message', (data, isBinary) => …)` gets its parameter
 * types without annotations. Declared on an interface merged with the class, so they add types
 * and no code (EventEmitter's methods do the work).
 */
type WsListener<A extends unknown[]> = (this: WebSocket, ...args: A) => void
type WsListenerNoThis<A extends unknown[]> = (...args: A) => void
interface WebSocketEvents {
  close: [code: number, reason: Buffer]
  error: [error: Error]
  upgrade: [response: types.UpgradeResponse]
  message: [data: types.RawData, isBinary: boolean]
  open: []
  ping: [data: Buffer]
  pong: [data: Buffer]
  redirect: [url: string, request: ClientRequest]
  'unexpected-response': [request: types.UpgradeRequest, response: types.UpgradeResponse]
}

export interface WebSocket {
  on<K extends keyof WebSocketEvents>(event: K, listener: WsListener<WebSocketEvents[K]>): this
  // biome-ignore lint/suspicious/noExplicitAny: any event name takes any listener, as in @types/ws.
  on(event: string | symbol, listener: (this: WebSocket, ...args: any[]) => void): this
  once<K extends keyof WebSocketEvents>(event: K, listener: WsListener<WebSocketEvents[K]>): this
  // biome-ignore lint/suspicious/noExplicitAny: as above.
  once(event: string | symbol, listener: (this: WebSocket, ...args: any[]) => void): this
  off<K extends keyof WebSocketEvents>(event: K, listener: WsListener<WebSocketEvents[K]>): this
  // biome-ignore lint/suspicious/noExplicitAny: as above.
  off(event: string | symbol, listener: (this: WebSocket, ...args: any[]) => void): this
  addListener<K extends keyof WebSocketEvents>(event: K, listener: WsListenerNoThis<WebSocketEvents[K]>): this
  // biome-ignore lint/suspicious/noExplicitAny: as above.
  addListener(event: string | symbol, listener: (...args: any[]) => void): this
  removeListener<K extends keyof WebSocketEvents>(
    event: K,
    listener: WsListenerNoThis<WebSocketEvents[K]>,
  ): this
  // biome-ignore lint/suspicious/noExplicitAny: as above.
  removeListener(event: string | symbol, listener: (...args: any[]) => void): this
}

/**
 * The names @types/ws puts on `WebSocket`: `WebSocket.RawData`, `WebSocket.ServerOptions`,
 * `WebSocket.Server`... usable in type positions, as in code written for `ws`.
 */
export declare namespace WebSocket {
  type RawData = types.RawData
  type Data = types.Data
  type CertMeta = types.CertMeta
  type VerifyClientCallbackSync<Request extends IncomingMessage = IncomingMessage> =
    types.VerifyClientCallbackSync<Request>
  type VerifyClientCallbackAsync<Request extends IncomingMessage = IncomingMessage> =
    types.VerifyClientCallbackAsync<Request>
  type ClientOptions = types.ClientOptions
  type PerMessageDeflateOptions = types.PerMessageDeflateOptions
  type Event = types.Event
  type ErrorEvent = types.ErrorEvent
  type CloseEvent = types.CloseEvent
  type MessageEvent = types.MessageEvent
  type WebSocketEventMap = types.WebSocketEventMap
  type EventListenerOptions = types.EventListenerOptions
  type ServerOptions<
    T extends typeof WebSocket = typeof WebSocket,
    U extends typeof IncomingMessage = typeof IncomingMessage,
  > = types.ServerOptions<T, U>
  type AddressInfo = types.AddressInfo
  type Server<
    T extends typeof WebSocket = typeof WebSocket,
    U extends typeof IncomingMessage = typeof IncomingMessage,
  > = WebSocketServer<T, U>
  type WebSocketServer<
    T extends typeof WebSocket = typeof WebSocket,
    U extends typeof IncomingMessage = typeof IncomingMessage,
  > = import('./websocket-server.js').WebSocketServer<T, U>
  type WebSocket = import('./websocket.js').WebSocket
}

for (const [name, value] of [
  ['CONNECTING', 0],
  ['OPEN', 1],
  ['CLOSING', 2],
  ['CLOSED', 3],
] as const) {
  Object.defineProperty(WebSocket.prototype, name, { value, enumerable: true })
}

// ------------------------------------------------------------- WHATWG-style listeners

type WhatwgType = keyof types.WebSocketEventMap
type WhatwgListener<E> = ((event: E) => void) | { handleEvent(event: E): void }

const kWhatwgListener = Symbol('rally.ws.whatwgListener')
const kAttribute = Symbol('rally.ws.attribute')

/** An EventEmitter listener standing for a WHATWG-style one. */
type Adapted = ((...args: unknown[]) => void) & {
  [kWhatwgListener]?: unknown
  [kAttribute]?: boolean
}

interface EventAttribute {
  handler: unknown
  adapted: Adapted
}

function isWhatwgType(type: string): type is WhatwgType {
  return type === 'open' || type === 'message' || type === 'close' || type === 'error'
}

/** Wraps a WHATWG-style listener: the emitter's arguments become an event object. */
function adaptListener(
  target: WebSocket,
  type: WhatwgType,
  listener: WhatwgListener<types.Event>,
  attribute: boolean,
): Adapted {
  const call = (event: types.Event): void => {
    if (typeof listener === 'function') listener.call(target, event)
    else listener.handleEvent(event)
  }
  let adapted: Adapted
  switch (type) {
    case 'open':
      adapted = () => call({ type, target })
      break
    case 'message':
      adapted = (data, isBinary) => {
        const payload = isBinary ? (data as types.RawData) : (data as Buffer).toString()
        call({ type, target, data: payload } as types.MessageEvent)
      }
      break
    case 'close':
      adapted = (code, reason) =>
        call({
          type,
          target,
          code: code as number,
          reason: (reason as Buffer).toString(),
          // ws: clean when the closing handshake completed, which a 1006 says it did not.
          wasClean: code !== CloseCode.Abnormal,
        } as types.CloseEvent)
      break
    case 'error':
      adapted = (error) =>
        call({ type, target, error, message: (error as Error)?.message ?? '' } as types.ErrorEvent)
      break
  }
  adapted[kWhatwgListener] = listener
  adapted[kAttribute] = attribute
  return adapted
}

// ------------------------------------------------------------- helpers

/** ws's own option names, handled above: never passed to tls.connect. */
const KNOWN_WS_CLIENT_FIELDS = new Set([
  'headers',
  'origin',
  'perMessageDeflate',
  'maxPayload',
  'handshakeTimeout',
  'autoPong',
  'protocolVersion',
])

/** Request headers as node:http takes them (numbers, arrays, a flat list) as name → value. */
function normalizeHeaders(
  headers: OutgoingHttpHeaders | readonly string[] | undefined,
): Record<string, string> {
  const out: Record<string, string> = {}
  if (headers === undefined) return out
  if (Array.isArray(headers)) {
    for (let i = 0; i + 1 < headers.length; i += 2) out[headers[i]!] = headers[i + 1]!
    return out
  }
  for (const [name, value] of Object.entries(headers as OutgoingHttpHeaders)) {
    if (value === undefined) continue
    out[name] = Array.isArray(value) ? value.join(', ') : String(value)
  }
  return out
}

/** ws's permessage-deflate options in Rally's terms. */
export function toNativeDeflate(
  options: boolean | types.PerMessageDeflateOptions | undefined,
): boolean | import('../../protocol/extensions/permessage-deflate.js').PerMessageDeflateOptions | undefined {
  if (options === undefined || typeof options === 'boolean') return options
  const { zlibDeflateOptions, level, memLevel, ...rest } = options
  const native: import('../../protocol/extensions/permessage-deflate.js').PerMessageDeflateOptions = {}
  if (rest.serverNoContextTakeover !== undefined)
    native.serverNoContextTakeover = rest.serverNoContextTakeover
  if (rest.clientNoContextTakeover !== undefined)
    native.clientNoContextTakeover = rest.clientNoContextTakeover
  // ws treats 0 (and undefined) as "not set"; Rally validates 8-15.
  if (rest.serverMaxWindowBits) native.serverMaxWindowBits = rest.serverMaxWindowBits
  if (rest.clientMaxWindowBits) native.clientMaxWindowBits = rest.clientMaxWindowBits
  if (rest.threshold !== undefined) native.threshold = rest.threshold
  const zlibLevel = level ?? zlibDeflateOptions?.level
  const zlibMemLevel = memLevel ?? zlibDeflateOptions?.memLevel
  if (zlibLevel !== undefined) native.level = zlibLevel
  if (zlibMemLevel !== undefined) native.memLevel = zlibMemLevel
  return native
}

/** ws's send conversions: numbers as text, arrays of bytes and `valueOf` objects as bytes. */
function toSendData(data: types.SendableData): SendData {
  if (typeof data === 'string') return data
  if (typeof data === 'number') return String(data)
  if (ArrayBuffer.isView(data) || data instanceof ArrayBuffer) return data
  if (typeof SharedArrayBuffer !== 'undefined' && data instanceof SharedArrayBuffer)
    return new Uint8Array(data)
  if (Array.isArray(data)) {
    // A list of buffers is one message in pieces (ws's 'fragments'); otherwise byte values.
    if (data.length > 0 && data.every((item) => item instanceof Uint8Array))
      return Buffer.concat(data as Uint8Array[])
    return Buffer.from(data as number[])
  }
  const value = (data as { valueOf(): unknown }).valueOf()
  if (value !== data && value !== undefined && value !== null) return toSendData(value as types.SendableData)
  throw new TypeError('send() takes a string, a number, bytes or an array of bytes')
}

function toUint8(data: SendData): Uint8Array {
  if (data instanceof Uint8Array) return data
  if (data instanceof ArrayBuffer) return new Uint8Array(data)
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
  return Buffer.from(String(data))
}
