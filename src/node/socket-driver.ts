/**
 * The only place where a protocol `Connection` meets a socket. It feeds the socket's bytes to
 * the connection, writes the frames the connection produces, and owns what the sans-I/O core
 * cannot: timers (the closing handshake timeout) and the transport's backpressure.
 *
 * Socket events go to shared module-level functions that find the driver through a symbol on the
 * socket, so an open connection costs no closures.
 */
import type { Socket } from 'node:net'
import {
  type CloseInfo,
  Connection,
  type ConnectionHandler,
  type ConnectionOptions,
  type ProtocolError,
  type Side,
} from '../protocol/index.js'

/** Where the driver reports what happened on the connection. */
export interface DriverListener {
  onMessage(data: Uint8Array, isBinary: boolean): void
  onPing(data: Uint8Array): void
  onPong(data: Uint8Array): void
  /** The peer started or answered the closing handshake. */
  onCloseFrame(code: number, reason: string): void
  onProtocolError(error: ProtocolError): void
  /** The socket's write buffer emptied after a write was buffered. */
  onDrain(): void
  /** Compressing an outgoing message failed; the connection fails with 1011. */
  onInternalError?(error: unknown): void
  /** The transport closed; always the last call. */
  onClosed(info: CloseInfo): void
}

export interface DriverOptions extends ConnectionOptions {
  /** How long to wait for the closing handshake to finish before destroying the socket (ms). */
  closeTimeout: number
  /**
   * Stop reading while this many bytes wait to be written, until the socket drains: a peer
   * that sends without reading cannot make us buffer what we answer. Undefined: never.
   */
  readPauseThreshold?: number
}

/** Why reading is paused; reading resumes when no reason is left. */
export const PauseReason = {
  /** A message is being decompressed off the event loop. */
  Inflating: 1,
  /** Too many bytes wait to be written to this peer. */
  WriteBacklog: 2,
  /** The application has not finished with what it was given (async handlers in flight). */
  Application: 4,
  /** The application asked (`pause()` in rally/ws). */
  User: 8,
} as const

const kDriver = Symbol('rally.driver')

type DrivenSocket = Socket & { [kDriver]?: SocketDriver }

export class SocketDriver implements ConnectionHandler {
  readonly connection: Connection
  readonly socket: Socket
  private readonly listener: DriverListener
  private readonly closeTimeout: number
  private readonly readPauseThreshold: number
  private corked = false
  private closeTimer: NodeJS.Timeout | undefined
  private closed = false
  private pauseReasons = 0
  /** Chunks received so far: heartbeats and idle checks compare it with an earlier reading. */
  receiveCount = 0
  /** Bytes ever handed to the socket; minus `socket.writableLength`, the bytes it has sent. */
  bytesQueuedTotal = 0

  constructor(side: Side, socket: Socket, listener: DriverListener, options: DriverOptions) {
    this.socket = socket
    this.listener = listener
    this.closeTimeout = options.closeTimeout
    // Below the socket's high-water mark 'drain' would never come to resume reading.
    this.readPauseThreshold =
      options.readPauseThreshold === undefined
        ? Number.POSITIVE_INFINITY
        : Math.max(options.readPauseThreshold, socket.writableHighWaterMark)
    this.connection = new Connection(side, this, options)
    // At once, not in attach(): reading may start later (after an async open handler), and a
    // reset in between must not become an uncaught 'error'.
    socket.on('error', onSocketError)
  }

  /**
   * Starts reading. `head` holds bytes that arrived with the handshake (already read from the
   * socket by whoever parsed the HTTP head); they are fed first so that none is lost.
   */
  attach(head?: Uint8Array): void {
    const socket = this.socket as DrivenSocket
    socket[kDriver] = this
    socket.setNoDelay(true)
    socket.setTimeout(0)
    // Sockets from an http.Server allow half-open connections; ours do not: when the peer sends
    // FIN, Node ends our side too (no 'end' listener of our own needed).
    socket.allowHalfOpen = false
    socket.on('close', onSocketClose)
    socket.on('drain', onSocketDrain)
    if (socket.closed) {
      // The peer vanished during the handshake and 'close' has already been emitted.
      queueMicrotask(() => this.transportClosed())
      return
    }
    if (head !== undefined && head.length > 0) this.connection.receive(head)
    socket.on('data', onSocketData)
    // Whoever read the handshake may have paused the socket (a 'data' listener does not undo an
    // explicit pause): start the flow, unless reading is paused for a reason of ours.
    if (this.pauseReasons === 0) socket.resume()
  }

  // ------------------------------------------------------------- ConnectionHandler

  write(header: Uint8Array, payload: Uint8Array | undefined): void {
    const socket = this.socket
    if (socket.writableEnded || socket.destroyed) return
    // Frames written in one event-loop turn leave in one writev.
    if (!this.corked) {
      this.corked = true
      socket.cork()
      process.nextTick(uncork, this)
    }
    socket.write(header)
    this.bytesQueuedTotal += header.length
    if (payload !== undefined) {
      socket.write(payload)
      this.bytesQueuedTotal += payload.length
    }
    if (
      socket.writableLength > this.readPauseThreshold &&
      (this.pauseReasons & PauseReason.WriteBacklog) === 0
    ) {
      this.pause(PauseReason.WriteBacklog)
    }
  }

  /** Stops reading from the socket for `reason` (a PauseReason bit). */
  pause(reason: number): void {
    if (this.pauseReasons === 0 && !this.closed) this.socket.pause()
    this.pauseReasons |= reason
  }

  /** Clears `reason`; reading resumes once no reason is left. */
  resume(reason: number): void {
    if ((this.pauseReasons & reason) === 0) return
    this.pauseReasons &= ~reason
    if (this.pauseReasons === 0 && !this.closed) this.socket.resume()
  }

  get isPaused(): boolean {
    return this.pauseReasons !== 0
  }

  closeTransport(): void {
    const socket = this.socket
    if (!socket.writableEnded && !socket.destroyed) {
      this.flush()
      socket.end()
    }
    this.armCloseTimer()
  }

  /** Sends what was corked in this turn now rather than at the end of it. */
  flush(): void {
    if (!this.corked) return
    this.corked = false
    this.socket.uncork()
  }

  message(data: Uint8Array, isBinary: boolean): void {
    this.listener.onMessage(data, isBinary)
  }

  ping(data: Uint8Array): void {
    this.listener.onPing(data)
  }

  pong(data: Uint8Array): void {
    this.listener.onPong(data)
  }

  closeReceived(code: number, reason: string): void {
    // A client waits for the server to close TCP, but not forever (RFC 6455 7.1.1).
    this.armCloseTimer()
    this.listener.onCloseFrame(code, reason)
  }

  protocolError(error: ProtocolError): void {
    this.listener.onProtocolError(error)
  }

  pauseReading(): void {
    this.pause(PauseReason.Inflating)
  }

  resumeReading(): void {
    this.resume(PauseReason.Inflating)
  }

  internalError(error: unknown): void {
    this.listener.onInternalError?.(error)
  }

  // ------------------------------------------------------------- calls from the API layer

  /** Bytes queued in the socket and not yet handed to the kernel. */
  get bufferedAmount(): number {
    return this.socket.writableLength
  }

  /** Bytes the socket has handed to the kernel so far. */
  get bytesFlushedTotal(): number {
    return this.bytesQueuedTotal - this.socket.writableLength
  }

  /** Whether the last write went over the socket's high-water mark. */
  get needsDrain(): boolean {
    return this.socket.writableNeedDrain
  }

  /** Starts the closing handshake; the socket is destroyed if it does not finish in time. */
  close(code?: number, reason?: string): void {
    this.connection.close(code, reason)
    if (this.connection.isCloseSent) this.armCloseTimer()
  }

  /** Fails the connection for a local reason (1011 after a handler threw, 1008 policy...). */
  fail(code: number, reason = ''): void {
    this.connection.fail(code, reason)
  }

  /** Destroys the socket at once, without a closing handshake. */
  terminate(): void {
    this.socket.destroy()
  }

  get isClosed(): boolean {
    return this.closed
  }

  // ------------------------------------------------------------- socket events

  receive(chunk: Uint8Array): void {
    this.receiveCount++
    this.connection.receive(chunk)
  }

  handleDrain(): void {
    this.resume(PauseReason.WriteBacklog)
    this.listener.onDrain()
  }

  transportClosed(): void {
    if (this.closed) return
    this.closed = true
    if (this.closeTimer !== undefined) {
      clearTimeout(this.closeTimer)
      this.closeTimer = undefined
    }
    const socket = this.socket as DrivenSocket
    socket.removeListener('data', onSocketData)
    socket.removeListener('drain', onSocketDrain)
    this.listener.onClosed(this.connection.transportClosed())
  }

  private armCloseTimer(): void {
    if (this.closeTimer !== undefined || this.closed) return
    this.closeTimer = setTimeout(destroySocket, this.closeTimeout, this.socket)
    this.closeTimer.unref()
  }
}

function uncork(driver: SocketDriver): void {
  driver.flush()
}

function destroySocket(socket: Socket): void {
  socket.destroy()
}

function onSocketData(this: DrivenSocket, chunk: Buffer): void {
  this[kDriver]!.receive(chunk)
}

function onSocketError(this: DrivenSocket): void {
  // ECONNRESET and friends: 'close' follows, and the close event reports 1006. Listening here
  // keeps the error from crashing the process.
}

function onSocketDrain(this: DrivenSocket): void {
  this[kDriver]!.handleDrain()
}

function onSocketClose(this: DrivenSocket): void {
  this[kDriver]!.transportClosed()
}
