/**
 * Rally's own port: a plain TCP (or TLS) server whose request heads are read by Rally's own HTTP
 * head parser — no node:http machinery per connection, which is most of a handshake's cost. A
 * head is bounded in size, header count (431) and time (handshakeTimeout: 408); once complete it
 * goes to the handshake decision with the bytes that followed it (frames a client sent at once).
 *
 * With a `request` handler, a head without `Upgrade` is a plain HTTP request: its connection
 * goes to own-http.ts, which serves it and the requests after it on the same connection.
 *
 * The sockets' events go to module-level functions with the state on the socket (as in
 * SocketDriver): reading a head allocates no closures.
 */
import { Buffer } from 'node:buffer'
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { createServer as createTlsServer, type TlsOptions } from 'node:tls'
import { HandshakeError, type HttpHead, HttpHeadParser, type Limits } from '../protocol/index.js'
import { ignoreHandshakeSocketError } from './handshake-decision.js'
import { HttpConnection, type HttpConnectionHost, type HttpRequestHandler } from './own-http.js'
import type { ServerErrorKind } from './types.js'
import { requestFromHead, type UpgradeRequest } from './upgrade-request.js'

/** What the own port needs from the server around it. */
export interface OwnPortHost {
  /** `close()` has begun: new connections are destroyed at once. */
  readonly closing: boolean
  /** A complete request head, and the bytes after it. */
  upgrade(request: UpgradeRequest, socket: Socket, head: Buffer): void
  reject(socket: Duplex, error: HandshakeError): void
  fail(socket: Duplex, error: unknown): void
  reportError(error: unknown, kind: ServerErrorKind): void
}

export interface OwnPortOptions {
  port: number
  host?: string | undefined
  tls?: TlsOptions | undefined
  limits: Limits
  handshakeTimeout: number
  /** Plain HTTP requests (heads without `Upgrade`); without it they go to the handshake (426). */
  request?: HttpRequestHandler | undefined
  /** Largest request body for `request`, in bytes. */
  maxRequestBodySize: number
}

/** Bytes of pipelined requests read while one is answered, before reading pauses. */
const MAX_PIPELINED = 64 * 1024
/** How often connections' request deadlines are checked (ms). */
const DEADLINE_SWEEP = 1000

export class OwnPort {
  readonly listener: NetServer
  /** Resolves once listening; rejects if listen fails (EADDRINUSE...). */
  readonly listening: Promise<void>
  private readonly limits: Limits
  private readonly handshakeTimeout: number
  private readonly host: OwnPortHost
  /** Sockets still sending their request head (destroyed on `close()`). */
  private readonly handshaking = new Set<Socket>()
  /** Plain HTTP connections (own-http.ts), and what they need from the port. */
  private readonly connections = new Set<HttpConnection>()
  private readonly http: HttpConnectionHost | undefined
  private sweep: NodeJS.Timeout | undefined

  constructor(options: OwnPortOptions, host: OwnPortHost) {
    this.limits = options.limits
    this.handshakeTimeout = options.handshakeTimeout
    this.host = host
    const handler = options.request
    if (handler !== undefined) {
      const connections = this.connections
      this.http = {
        handler,
        limits: options.limits,
        maxBodySize: options.maxRequestBodySize,
        requestTimeout: options.handshakeTimeout,
        maxPipelined: MAX_PIPELINED,
        get closing() {
          return host.closing
        },
        upgrade: (request, socket, head) => host.upgrade(request, socket, head),
        reject: (socket, error) => host.reject(socket, error),
        reportError: (error) => host.reportError(error, 'handler'),
        connectionClosed: (connection) => {
          connections.delete(connection)
          if (connections.size === 0 && this.sweep !== undefined) {
            clearInterval(this.sweep)
            this.sweep = undefined
          }
        },
      }
    }
    // TCP_NODELAY set as each socket is accepted (every WebSocket wants it: a frame is sent when
    // it is written, not held for the peer's ACK), before any JavaScript sees the socket; the
    // driver's own setNoDelay(true) then finds it set and costs nothing.
    const listener = options.tls
      ? createTlsServer({ ...options.tls, noDelay: true })
      : createNetServer({ noDelay: true })
    this.listener = listener
    listener.on(options.tls ? 'secureConnection' : 'connection', (socket: Socket) => this.readHead(socket))
    // A failed TLS handshake: nothing to answer, the socket is gone.
    if (options.tls) listener.on('tlsClientError', (_error: Error, socket: Duplex) => socket.destroy())
    this.listening = new Promise((resolve, reject) => {
      listener.once('error', reject)
      listener.listen(options.port, options.host, () => {
        listener.removeListener('error', reject)
        // After listen, errors come from accept (EMFILE when out of file descriptors): without
        // a listener they would crash the process. libuv keeps accepting once descriptors free.
        listener.on('error', (error: Error) => host.reportError(error, 'accept'))
        resolve()
      })
    })
  }

  /**
   * Stops accepting: heads still arriving (slowloris) are not waited for. Resolves once the
   * listening socket is closed — after it listened, if it was still starting (closing it before
   * would leave the port open when listen completes).
   */
  close(): Promise<void> {
    for (const socket of this.handshaking) socket.destroy()
    // Idle keep-alive connections end now; one being answered ends after its answer, which
    // says `connection: close` (the host is closing).
    for (const connection of this.connections) if (connection.idle) connection.destroy()
    const listener = this.listener
    return this.listening.then(
      () => new Promise<void>((resolve) => listener.close(() => resolve())),
      () => undefined,
    )
  }

  private readHead(socket: Socket): void {
    socket.on('error', ignoreHandshakeSocketError)
    if (this.host.closing) {
      socket.destroy()
      return
    }
    this.handshaking.add(socket)
    const timer = setTimeout(onHeadTimeout, this.handshakeTimeout, socket)
    timer.unref()
    ;(socket as HeadReadingSocket)[kHeadReading] = {
      port: this,
      parser: new HttpHeadParser(this.limits),
      timer,
    }
    socket.on('data', onHeadData)
    socket.on('close', onHeadClose)
  }

  /** @internal A chunk of a request head. */
  receiveHead(socket: Socket, reading: HeadReading, chunk: Buffer): void {
    let request: UpgradeRequest
    let rest: Uint8Array
    try {
      const result = reading.parser.push(chunk)
      if (result === undefined) return
      this.stopReadingHead(socket)
      // Nothing more is read until the handshake is decided: bytes wait in the socket.
      socket.pause()
      if (this.http !== undefined && result.head.fields.upgrade === undefined) {
        this.serveHttp(socket, result.head, result.rest)
        return
      }
      request = requestFromHead(result.head, socket)
      rest = result.rest
    } catch (error) {
      this.stopReadingHead(socket)
      if (error instanceof HandshakeError) this.host.reject(socket, error)
      else this.host.fail(socket, error)
      return
    }
    // The handshake decision installs its own guard against resets.
    socket.removeListener('error', ignoreHandshakeSocketError)
    this.host.upgrade(request, socket, Buffer.from(rest.buffer, rest.byteOffset, rest.length))
  }

  /** A plain HTTP request: the connection is own-http.ts's from here. */
  private serveHttp(socket: Socket, head: HttpHead, rest: Uint8Array): void {
    socket.removeListener('error', ignoreHandshakeSocketError)
    const connection = new HttpConnection(socket, this.http!)
    this.connections.add(connection)
    if (this.sweep === undefined) {
      const connections = this.connections
      this.sweep = setInterval(() => {
        const now = Date.now()
        for (const each of connections) if (each.deadline !== 0 && now >= each.deadline) each.timedOut()
      }, DEADLINE_SWEEP)
      this.sweep.unref()
    }
    connection.start(head, Buffer.from(rest.buffer, rest.byteOffset, rest.length))
  }

  /** @internal The head did not come in time (slowloris): 408. */
  headTimedOut(socket: Socket): void {
    this.stopReadingHead(socket)
    this.host.reject(socket, new HandshakeError(408, 'Request timeout'))
  }

  /** @internal The head is read, refused, timed out, or the socket closed. */
  stopReadingHead(socket: Socket): void {
    const reading = (socket as HeadReadingSocket)[kHeadReading]
    if (reading === undefined) return
    ;(socket as HeadReadingSocket)[kHeadReading] = undefined
    clearTimeout(reading.timer)
    this.handshaking.delete(socket)
    socket.removeListener('data', onHeadData)
    socket.removeListener('close', onHeadClose)
  }
}

/** A request head being read, kept on its socket. */
interface HeadReading {
  port: OwnPort
  parser: HttpHeadParser
  timer: NodeJS.Timeout
}

const kHeadReading = Symbol('rally.headReading')

type HeadReadingSocket = Socket & { [kHeadReading]?: HeadReading | undefined }

function onHeadData(this: HeadReadingSocket, chunk: Buffer): void {
  const reading = this[kHeadReading]
  if (reading !== undefined) reading.port.receiveHead(this, reading, chunk)
}

function onHeadClose(this: HeadReadingSocket): void {
  this[kHeadReading]?.port.stopReadingHead(this)
}

function onHeadTimeout(socket: HeadReadingSocket): void {
  socket[kHeadReading]?.port.headTimedOut(socket)
}
