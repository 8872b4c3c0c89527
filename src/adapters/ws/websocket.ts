/**
 * `rallyjs/ws`'s WebSocket: the public API of the `ws` package's WebSocket, for both ends — on the
 * server it wraps a ServerWebSocket, on the client a ClientConnection. No second implementation:
 * framing, limits and closing are Rally's; this file only maps names and event shapes.
 */
import { Buffer } from 'node:buffer'
import { EventEmitter } from 'node:events'
import type { ConnectionOptions as TlsConnectOptions } from 'node:tls'
import {
  ClientConnection,
  type ClientListener,
  type ClientOptions,
  parseProtocols,
  parseWebSocketUrl,
} from '../../client/client-connection.js'
import { PauseReason, type SocketDriver } from '../../node/socket-driver.js'
import type { PerMessageDeflateOptions } from '../../protocol/extensions/permessage-deflate.js'
import { CloseCode, type CloseInfo, type HttpHead, type ProtocolError } from '../../protocol/index.js'
import type { SendData, ServerWebSocket } from '../../server/server-websocket.js'

export type BinaryType = 'nodebuffer' | 'arraybuffer' | 'fragments'

/** Client options, as `ws` names them (TLS options at the top level). */
export interface ClientWebSocketOptions extends Omit<TlsConnectOptions, 'timeout'> {
  headers?: Record<string, string>
  /** Sets the Origin header. */
  origin?: string
  perMessageDeflate?: boolean | PerMessageDeflateOptions
  /** Default 100 MiB, as in ws. */
  maxPayload?: number
  handshakeTimeout?: number
  autoPong?: boolean
  /** Only 13 exists (RFC 6455); anything else throws. */
  protocolVersion?: number
}

/** ws's default maxPayload, kept for drop-in compatibility (Rally's own default is 16 MiB). */
export const WS_DEFAULT_MAX_PAYLOAD = 100 * 1024 * 1024

type SendCallback = (error?: Error) => void

/** The two ends this class can sit on. */
type Backend =
  | { kind: 'server'; socket: ServerWebSocket<unknown> }
  | { kind: 'client'; client: ClientConnection }

export class WebSocket extends EventEmitter {
  static readonly CONNECTING = 0
  static readonly OPEN = 1
  static readonly CLOSING = 2
  static readonly CLOSED = 3
  declare readonly CONNECTING: 0
  declare readonly OPEN: 1
  declare readonly CLOSING: 2
  declare readonly CLOSED: 3

  binaryType: BinaryType = 'nodebuffer'
  /** The URL for a client; undefined on the server side, as in ws. */
  readonly url: string | undefined
  private backend: Backend
  private state: number = WebSocket.CONNECTING
  private fragmenting = false

  constructor(
    address: string | URL,
    protocols?: string | string[] | ClientWebSocketOptions,
    options?: ClientWebSocketOptions,
  )
  /** @internal The server-side constructor, used by WebSocketServer. */
  constructor(address: null, protocols: undefined, options: undefined, server: ServerWebSocket<unknown>)
  constructor(
    address: string | URL | null,
    protocols?: string | string[] | ClientWebSocketOptions,
    options?: ClientWebSocketOptions,
    server?: ServerWebSocket<unknown>,
  ) {
    super()
    if (address === null) {
      this.url = undefined
      this.backend = { kind: 'server', socket: server! }
      this.state = WebSocket.OPEN
      return
    }
    if (protocols !== undefined && typeof protocols === 'object' && !Array.isArray(protocols)) {
      options = protocols
      protocols = undefined
    }
    const opts = options ?? {}
    if (opts.protocolVersion !== undefined && opts.protocolVersion !== 13) {
      throw new RangeError(`Unsupported protocol version: ${opts.protocolVersion} (supported versions: 13)`)
    }
    const url = parseWebSocketUrl(address)
    this.url = url.href
    const {
      headers,
      origin,
      perMessageDeflate,
      maxPayload,
      handshakeTimeout,
      autoPong,
      protocolVersion: _version,
      ...tls
    } = opts
    const clientOptions: ClientOptions = {
      headers: { ...headers, ...(origin !== undefined ? { Origin: origin } : {}) },
      perMessageDeflate: perMessageDeflate ?? true,
      maxPayload: maxPayload ?? WS_DEFAULT_MAX_PAYLOAD,
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
    if (this.backend.kind === 'server') return this.backend.socket.readyState
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

  /** Whether reading is paused. */
  get isPaused(): boolean {
    return this.backend.kind === 'server' ? this.backend.socket.isPaused : (this.driver()?.isPaused ?? false)
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
   * The callback runs once the data is handed to the socket, or with an error if it was not sent.
   */
  send(
    data: SendData | readonly number[],
    options?: { binary?: boolean; compress?: boolean; fin?: boolean; mask?: boolean } | SendCallback,
    callback?: SendCallback,
  ): void {
    if (typeof options === 'function') {
      callback = options
      options = undefined
    }
    if (this.readyState === WebSocket.CONNECTING) {
      throw new Error('WebSocket is not open: readyState 0 (CONNECTING)')
    }
    const payload: SendData = Array.isArray(data) ? Buffer.from(data) : (data as SendData)
    if (typeof payload === 'number') throw new TypeError('send() takes a string or bytes')
    const binary = options?.binary ?? typeof payload !== 'string'
    const fin = options?.fin ?? true
    let sent: boolean
    if (this.backend.kind === 'server') {
      const socket = this.backend.socket
      if (!fin || this.fragmenting) {
        sent = socket.sendFragment(payload, { binary, first: !this.fragmenting, fin }) !== 'dropped'
        this.fragmenting = !fin
      } else {
        sent = socket.send(payload, { binary, compress: options?.compress }) !== 'dropped'
      }
    } else {
      const connection = this.driver()?.connection
      const bytes = typeof payload === 'string' ? Buffer.from(payload) : toUint8(payload)
      if (connection === undefined) sent = false
      else if (!fin || this.fragmenting) {
        sent = connection.sendFragment(this.fragmenting ? 0 : binary ? 2 : 1, bytes, fin)
        this.fragmenting = !fin
      } else
        sent = binary
          ? connection.sendBinary(bytes, options?.compress)
          : connection.sendText(bytes, options?.compress)
    }
    if (callback !== undefined) {
      const done = callback
      if (sent) process.nextTick(done)
      else process.nextTick(done, new Error(`WebSocket is not open: readyState ${this.readyState}`))
    }
  }

  ping(data?: SendData, _mask?: boolean, callback?: SendCallback): void {
    if (this.readyState === WebSocket.CONNECTING)
      throw new Error('WebSocket is not open: readyState 0 (CONNECTING)')
    const bytes =
      data === undefined ? Buffer.alloc(0) : typeof data === 'string' ? Buffer.from(data) : toUint8(data)
    const sent =
      this.backend.kind === 'server'
        ? this.backend.socket.ping(bytes) !== 'dropped'
        : (this.driver()?.connection.ping(bytes) ?? false)
    if (callback !== undefined)
      process.nextTick(callback, sent ? undefined : new Error('WebSocket is not open'))
  }

  pong(data?: SendData, _mask?: boolean, callback?: SendCallback): void {
    if (this.readyState === WebSocket.CONNECTING)
      throw new Error('WebSocket is not open: readyState 0 (CONNECTING)')
    const bytes =
      data === undefined ? Buffer.alloc(0) : typeof data === 'string' ? Buffer.from(data) : toUint8(data)
    const sent =
      this.backend.kind === 'server'
        ? this.backend.socket.pong(bytes) !== 'dropped'
        : (this.driver()?.connection.pong(bytes) ?? false)
    if (callback !== undefined)
      process.nextTick(callback, sent ? undefined : new Error('WebSocket is not open'))
  }

  /** Starts the closing handshake. While connecting, aborts (as ws does, with an error event). */
  close(code?: number, reason?: string | Buffer): void {
    const text = reason === undefined ? undefined : reason.toString()
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
    if (this.backend.kind === 'server') this.backend.socket.pauseReading()
    else this.driver()?.pause(PauseReason.User)
  }

  resume(): void {
    if (this.backend.kind === 'server') this.backend.socket.resumeReading()
    else this.driver()?.resume(PauseReason.User)
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

  /** @internal */
  deliverClose(info: CloseInfo): void {
    this.state = WebSocket.CLOSED
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

  private clientListener(): ClientListener {
    return {
      onOpen: (response: HttpHead) => {
        this.state = WebSocket.OPEN
        this.emit('upgrade', responseLike(101, response))
        this.emit('open')
      },
      onConnectFailure: (message: string, error: unknown, response: HttpHead | undefined) => {
        this.state = WebSocket.CLOSING
        process.nextTick(() => {
          this.state = WebSocket.CLOSED
          const status = response === undefined ? 0 : Number(response.startLine[1])
          if (response !== undefined && status !== 101 && this.listenerCount('unexpected-response') > 0) {
            this.emit('unexpected-response', { method: 'GET', url: this.url }, responseLike(status, response))
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
      onDrain: () => {},
      onClosed: (info) => {
        if (this.backend.kind === 'client') this.backend.client.stopTimers()
        this.deliverClose(info)
      },
    }
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

/** What ws passes as the `upgrade` / `unexpected-response` response: status and headers. */
function responseLike(
  status: number,
  head: HttpHead,
): { statusCode: number; statusMessage: string; headers: Record<string, string> } {
  const headers: Record<string, string> = {}
  for (const [name, values] of Object.entries(head.fields)) headers[name] = values.join(', ')
  return { statusCode: status, statusMessage: head.startLine[2], headers }
}

function toUint8(data: SendData): Uint8Array {
  if (data instanceof Uint8Array) return data
  if (data instanceof ArrayBuffer) return new Uint8Array(data)
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
  return Buffer.from(String(data))
}
