/**
 * The server side of one WebSocket connection, as the application sees it (`ws` in handlers).
 * Events go to the server's single handler object: a socket holds no closures of its own.
 */
import { Buffer } from 'node:buffer'
import { type DriverStream, PauseReason, remoteAddressOf, SocketDriver } from '../node/socket-driver.js'
import type { PreparedFrame } from '../protocol/connection.js'
import type { MessageCompression } from '../protocol/extensions/compression.js'
import {
  CloseCode,
  type CloseInfo,
  ConnectionState,
  Opcode,
  ProtocolError,
  TimeoutError,
} from '../protocol/index.js'
import type { PreparedMessage } from '../pubsub/prepared-message.js'
import type { BackpressurePolicy, ServerContext } from './types.js'

/** What `send` did with a message: written, queued behind a slow socket, or not sent at all. */
export type SendStatus = 'sent' | 'buffered' | 'dropped'

export interface SendOptions {
  /** Send a string as binary, or bytes as text (bytes must then be UTF-8). Default: strings are
   * text, bytes are binary. */
  binary?: boolean
  /**
   * With permessage-deflate negotiated: true compresses this message, false sends it as is;
   * undefined compresses it if it is at least `threshold` bytes.
   */
  compress?: boolean
}

export type SendData = string | ArrayBuffer | ArrayBufferView

// The DriverListener and Monitored methods are internal (stripped from the published types), so
// the class does not declare them in an implements clause; SocketDriver's and LivenessMonitor's
// parameter types check them where a socket is handed over.
export class ServerWebSocket<UserData = undefined> {
  /** Whatever the `upgrade` handler returned: the place for per-connection state. */
  data: UserData
  /** The subprotocol chosen in the handshake, or "". */
  readonly protocol: string
  /** The negotiated extensions, as in the `Sec-WebSocket-Extensions` response, or "". */
  readonly extensions: string
  /** The peer's address, read from the socket on first use and kept. */
  private peerAddress: string | undefined
  /** The request path and query of the handshake. */
  readonly url: string
  private readonly driver: SocketDriver
  private readonly server: ServerContext<UserData>
  /** This socket's topics (the other half of the server's topic index), created on first use. */
  private ownTopics: Set<string> | undefined
  /** Async `message` handlers not yet settled (reading pauses past `maxPendingHandlers`). */
  private pendingHandlers = 0
  /**
   * This socket's own `backpressurePolicy` (undefined: the server's). For a route that speaks a
   * protocol of its own on a server shared with others (the realtime layer on a Hono server).
   */
  backpressurePolicy: BackpressurePolicy | undefined = undefined
  /** @internal Liveness bookkeeping (see liveness.ts). */
  heartbeatMark = -1
  /** @internal */
  heartbeatRound = 0
  /** @internal */
  idleMark = -1
  /** @internal */
  idleStrikes = 0

  /** @internal Sockets are made by the server, after the handshake. */
  constructor(
    server: ServerContext<UserData>,
    socket: DriverStream,
    data: UserData,
    handshake: {
      protocol: string
      extensions: string
      url: string
      compression?: MessageCompression | undefined
    },
  ) {
    this.server = server
    this.data = data
    this.protocol = handshake.protocol
    this.extensions = handshake.extensions
    this.url = handshake.url
    this.driver = new SocketDriver('server', socket, this, server.driverOptions)
    if (handshake.compression !== undefined) this.driver.connection.setCompression(handshake.compression)
  }

  /** The peer's IP address ("" if the socket never had one). Read lazily: it costs memory. */
  get remoteAddress(): string {
    this.peerAddress ??= remoteAddressOf(this.driver.socket)
    return this.peerAddress
  }

  /** 0 CONNECTING, 1 OPEN, 2 CLOSING, 3 CLOSED, as in the WebSocket API. */
  get readyState(): ConnectionState {
    return this.driver.connection.state
  }

  /** Bytes queued for this socket and not yet handed to the kernel. */
  get bufferedAmount(): number {
    return this.driver.bufferedAmount
  }

  /**
   * Sends a message. Strings go as text, bytes as binary. Returns 'sent' when written, 'buffered'
   * when the socket is slow (wait for the `drain` handler before sending much more), 'dropped'
   * when closing has begun or the socket's buffer is over `maxBackpressure`.
   */
  send(data: SendData, options?: SendOptions): SendStatus {
    const connection = this.driver.connection
    if (connection.state !== ConnectionState.OPEN) return 'dropped'
    if (this.driver.isBufferedOver(this.server.maxBackpressure)) return this.overBackpressure()
    const binary = options?.binary ?? typeof data !== 'string'
    const bytes = toBytes(data)
    const compress = options?.compress
    if (binary) connection.sendBinary(bytes, compress)
    else connection.sendText(bytes, compress)
    this.server.counters.messagesOut++
    this.server.counters.bytesOut += bytes.length
    return this.driver.needsDrain ? 'buffered' : 'sent'
  }

  /**
   * Sends a message framed once for many sockets (`server.publish`). Same rules as `send`:
   * 'dropped' when closing or over `maxBackpressure`.
   */
  sendPrepared(message: PreparedMessage): SendStatus {
    const connection = this.driver.connection
    if (connection.state !== ConnectionState.OPEN) return 'dropped'
    if (this.driver.isBufferedOver(this.server.maxBackpressure)) return this.overBackpressure()
    const compression = connection.messageCompression
    if (compression !== undefined && message.wantsCompression(compression)) {
      const key = compression.sharedKey
      // While it is compressed, the message counts as pending with its uncompressed size.
      if (key !== undefined)
        connection.sendPrepared(message.compressedFrame(compression, key), message.data.length)
      // Context takeover: this socket's compressed bytes are its own.
      else if (message.isBinary) connection.sendBinary(message.data, true)
      else connection.sendText(message.data, true)
    } else {
      connection.sendPrepared(message.plainFrame())
    }
    this.server.counters.messagesOut++
    this.server.counters.bytesOut += message.data.length
    return this.driver.needsDrain ? 'buffered' : 'sent'
  }

  /** The `backpressurePolicy`: drop this message, or close the socket (1008, or the policy's code). */
  private overBackpressure(): SendStatus {
    const policy = this.backpressurePolicy ?? this.server.backpressurePolicy
    if (policy === 'drop') {
      this.server.counters.backpressureDrops++
      return 'dropped'
    }
    this.server.counters.backpressureCloses++
    if (policy === 'close') {
      this.driver.fail(CloseCode.PolicyViolation, 'Too slow: send buffer over its limit')
      return 'dropped'
    }
    // The last message goes uncompressed, straight behind what is queued: it is the reason the
    // peer will read just before the close frame (fail() discards only frames still waiting to
    // be compressed).
    if (policy.lastMessage !== undefined)
      this.driver.connection.sendText(Buffer.from(policy.lastMessage, 'utf8'), false)
    this.driver.fail(policy.code, policy.reason)
    return 'dropped'
  }

  /** Stops reading from this socket until `resumeReading()`; input waits in the kernel. */
  pauseReading(): void {
    this.driver.pause(PauseReason.User)
  }

  /** Starts reading again after `pauseReading()` (other reasons to pause may still hold it). */
  resumeReading(): void {
    this.driver.resume(PauseReason.User)
  }

  /** Whether reading is paused, for any reason (backlog, async handlers, pauseReading). */
  get isPaused(): boolean {
    return this.driver.isPaused
  }

  // ------------------------------------------------------------- liveness

  /** @internal */
  get receiveCount(): number {
    return this.driver.receiveCount
  }

  /** @internal Reading is paused on purpose: liveness checks hold off (see liveness.ts). */
  get readingHeld(): boolean {
    return this.driver.readingHeld
  }

  /** @internal */
  sendPreparedFrame(frame: PreparedFrame): void {
    this.driver.connection.sendPrepared(frame)
  }

  /** @internal */
  heartbeatTimedOut(): void {
    this.server.counters.heartbeatTimeouts++
    this.server.reportError(
      new TimeoutError('Heartbeat timeout: the peer did not answer a ping in time'),
      'timeout',
      this,
    )
    this.driver.terminate()
  }

  /** @internal */
  idleTimedOut(): void {
    this.server.counters.idleTimeouts++
    this.driver.close(CloseCode.GoingAway, 'Idle timeout')
  }

  // ------------------------------------------------------------- topics

  /** Subscribes to a topic (an exact string). Returns false if already subscribed. */
  subscribe(topic: string): boolean {
    if (this.driver.connection.state === ConnectionState.CLOSED) return false
    this.ownTopics ??= new Set()
    return this.server.topicRegistry.subscribe(this, this.ownTopics, topic)
  }

  /** Unsubscribes from a topic. Returns false if not subscribed. */
  unsubscribe(topic: string): boolean {
    return this.ownTopics !== undefined && this.server.topicRegistry.unsubscribe(this, this.ownTopics, topic)
  }

  /** Whether this socket is subscribed to `topic`. */
  isSubscribed(topic: string): boolean {
    return this.ownTopics?.has(topic) ?? false
  }

  /** The topics this socket is subscribed to. */
  get topics(): string[] {
    return this.ownTopics === undefined ? [] : [...this.ownTopics]
  }

  /**
   * Publishes to every subscriber of `topic` except this socket. Returns the number of sockets
   * the message was sent or queued to.
   */
  publish(topic: string, data: SendData, options?: SendOptions): number {
    return this.server.publish(topic, data, options, this)
  }

  /**
   * Sends a ping (payload at most 125 bytes; the `pong` handler gets the answer). Returns a send
   * status, as `send` and the client's `ping()` do: 'dropped' once closing has begun.
   */
  ping(data: SendData = ''): SendStatus {
    return this.driver.connection.ping(toBytes(data))
      ? this.driver.needsDrain
        ? 'buffered'
        : 'sent'
      : 'dropped'
  }

  /** Sends an unsolicited pong (a one-way heartbeat, RFC 6455 5.5.3). Returns a send status. */
  pong(data: SendData = ''): SendStatus {
    return this.driver.connection.pong(toBytes(data))
      ? this.driver.needsDrain
        ? 'buffered'
        : 'sent'
      : 'dropped'
  }

  /**
   * Starts the closing handshake (RFC 6455 7.1.2). The `close` handler runs once the socket is
   * closed. Throws RangeError for a code that may not be sent, or a reason over 123 bytes.
   */
  close(code?: number, reason?: string): void {
    this.driver.close(code, reason)
  }

  /** Destroys the connection at once, without a closing handshake. */
  terminate(): void {
    this.driver.terminate()
  }

  // ------------------------------------------------------------- DriverListener

  /** @internal */
  onMessage(data: Uint8Array, isBinary: boolean): void {
    const stats = this.server.counters
    stats.messagesIn++
    stats.bytesIn += data.length
    const handler = this.server.handlers.message
    if (handler === undefined) return
    const buffer = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.length)
    let result: unknown
    try {
      result = handler(this, isBinary || !this.server.decodeText ? buffer : buffer.toString('utf8'), isBinary)
    } catch (error) {
      this.handlerFailed(error)
      return
    }
    if (result instanceof Promise) this.trackHandler(result)
  }

  /**
   * An async message handler: the application has not finished with the message. Past
   * `maxPendingHandlers` reading pauses, until half of them have settled.
   */
  private trackHandler(result: Promise<unknown>): void {
    if (++this.pendingHandlers >= this.server.maxPendingHandlers) this.driver.pause(PauseReason.Application)
    result.then(
      () => this.handlerSettled(),
      (error: unknown) => {
        this.handlerSettled()
        this.handlerFailed(error)
      },
    )
  }

  private handlerSettled(): void {
    if (--this.pendingHandlers <= this.server.maxPendingHandlers / 2)
      this.driver.resume(PauseReason.Application)
  }

  /** @internal */
  onPing(data: Uint8Array): void {
    const handler = this.server.handlers.ping
    if (handler === undefined) return
    try {
      this.settle(handler(this, Buffer.from(data)))
    } catch (error) {
      this.handlerFailed(error)
    }
  }

  /** @internal */
  onPong(data: Uint8Array): void {
    const handler = this.server.handlers.pong
    if (handler === undefined) return
    try {
      this.settle(handler(this, Buffer.from(data)))
    } catch (error) {
      this.handlerFailed(error)
    }
  }

  /** @internal */
  onCloseFrame(): void {}

  /** @internal */
  onProtocolError(error: ProtocolError): void {
    this.server.counters.protocolErrors++
    this.server.reportError(error, 'protocol', this)
  }

  /** @internal */
  onInternalError(error: unknown): void {
    this.server.reportError(error, 'compression', this)
  }

  /** @internal */
  onDrain(): void {
    const handler = this.server.handlers.drain
    if (handler === undefined) return
    try {
      this.settle(handler(this))
    } catch (error) {
      this.handlerFailed(error)
    }
  }

  /** @internal */
  onClosed(info: CloseInfo): void {
    if (this.ownTopics !== undefined) this.server.topicRegistry.unsubscribeAll(this, this.ownTopics)
    this.server.connectionClosed(this)
    // A protocol fault was reported when it happened; a socket error is reported now.
    if (info.error !== undefined && !(info.error instanceof ProtocolError))
      this.server.reportError(info.error, 'transport', this)
    const handler = this.server.handlers.close
    if (handler === undefined) return
    try {
      this.settle(handler(this, info.code, info.reason, info))
    } catch (error) {
      this.server.reportError(error, 'handler', this)
    }
  }

  /** @internal Called by the server once the 101 response is written: `open`, then the first frames. */
  start(head: Uint8Array): void {
    const handler = this.server.handlers.open
    let result: unknown
    if (handler !== undefined) {
      try {
        result = handler(this)
      } catch (error) {
        this.handlerFailed(error)
      }
    }
    if (!(result instanceof Promise)) {
      this.driver.attach(head)
      return
    }
    // An async open handler: reading starts once it has settled, so the first messages find
    // the state it prepared. Bytes that arrive meanwhile wait in the socket; none is lost.
    result.then(
      () => this.driver.attach(head),
      (error: unknown) => {
        this.driver.attach(head)
        this.handlerFailed(error)
      },
    )
  }

  /**
   * Sends one frame of a fragmented message (RFC 6455 5.4): the first with `first: true`, the
   * last with `fin: true`. Nothing else may be sent between them but control frames.
   */
  sendFragment(data: SendData, options: { binary: boolean; first: boolean; fin: boolean }): SendStatus {
    const connection = this.driver.connection
    if (connection.state !== ConnectionState.OPEN) return 'dropped'
    const opcode = options.first ? (options.binary ? Opcode.Binary : Opcode.Text) : Opcode.Continuation
    connection.sendFragment(opcode, toBytes(data), options.fin)
    return this.driver.needsDrain ? 'buffered' : 'sent'
  }

  /** @internal The server is shutting down: 1001 Going Away (RFC 6455 7.4.1). */
  goAway(): void {
    if (this.driver.connection.state === ConnectionState.OPEN)
      this.driver.close(CloseCode.GoingAway, 'Server shutting down')
  }

  /** An async handler's rejection is handled like a throw: never an unhandled rejection. */
  private settle(result: unknown): void {
    if (result instanceof Promise) result.catch((error: unknown) => this.handlerFailed(error))
  }

  /**
   * A handler that throws is the application's bug, not the peer's: the error goes to the
   * `error` handler and the connection closes with 1011 and no details (RFC 6455 7.4.1).
   */
  private handlerFailed(error: unknown): void {
    this.server.reportError(error, 'handler', this)
    if (!this.driver.isClosed) this.driver.fail(CloseCode.InternalError)
  }
}

export function toBytes(data: SendData): Uint8Array {
  if (typeof data === 'string') return Buffer.from(data, 'utf8')
  if (data instanceof Uint8Array) return data
  if (data instanceof ArrayBuffer) return new Uint8Array(data)
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
  throw new TypeError('send() takes a string, a Uint8Array, an ArrayBuffer or a DataView')
}
