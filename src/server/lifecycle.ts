/**
 * The life of a server's connections after the 101: opening them (a ServerWebSocket on the
 * socket, with its compression), the registry of open ones and their topics, counters, error
 * reporting, liveness, and shutdown (1001 to everyone, resolved when the last one is gone).
 *
 * This object is what each ServerWebSocket holds as its server (ServerContext): the settings and
 * callbacks sockets need live here, not on the public RallyServer.
 */
import type { Buffer } from 'node:buffer'
import type { Duplex } from 'node:stream'
import { codecFor, type DeflateCodec } from '../node/deflate.js'
import { type DriverOptions, isHttp2Stream } from '../node/socket-driver.js'
import type { DeflateParams, PerMessageDeflateOptions } from '../protocol/extensions/permessage-deflate.js'
import type { Limits } from '../protocol/index.js'
import { PreparedMessage } from '../pubsub/prepared-message.js'
import { TopicRegistry } from '../pubsub/topic-registry.js'
import type { Admission } from './admission.js'
import type { AcceptedHandshake, HandshakeHost } from './handshake-decision.js'
import { LivenessMonitor } from './liveness.js'
import { type SendData, type SendOptions, ServerWebSocket, toBytes } from './server-websocket.js'
import type {
  BackpressurePolicy,
  ServerContext,
  ServerErrorKind,
  ServerHandlers,
  ServerOptions,
  ServerStats,
} from './types.js'

const DEFAULT_MAX_BACKPRESSURE = 16 * 1024 * 1024
const DEFAULT_CLOSE_TIMEOUT = 5000
const DEFAULT_READ_PAUSE_THRESHOLD = 1024 * 1024
const DEFAULT_MAX_PENDING_HANDLERS = 64
const DEFAULT_HEARTBEAT = { interval: 30_000, timeout: 10_000 }
/** Errors the peer causes, routine on the Internet: not printed without an `error` handler. */
const ROUTINE_ERRORS: ReadonlySet<ServerErrorKind> = new Set(['protocol', 'timeout', 'transport'])

/** What a server does with an error when the application has no `error` handler. */
export function printUnlessRoutine(error: unknown, kind: ServerErrorKind): void {
  if (!ROUTINE_ERRORS.has(kind)) console.error(error)
}

export class ConnectionLifecycle<UserData> implements ServerContext<UserData>, HandshakeHost<UserData> {
  readonly handlers: ServerHandlers<UserData>
  readonly driverOptions: DriverOptions
  readonly maxBackpressure: number
  readonly backpressurePolicy: BackpressurePolicy
  readonly readPauseThreshold: number
  readonly maxPendingHandlers: number
  readonly decodeText: boolean
  readonly counters: ServerStats
  readonly topicRegistry = new TopicRegistry<ServerWebSocket<UserData>>()
  readonly sockets = new Set<ServerWebSocket<UserData>>()
  /** permessage-deflate settings, when enabled. */
  readonly deflateOptions: PerMessageDeflateOptions | undefined
  closing = false
  private readonly admission: Admission
  private readonly liveness: LivenessMonitor<ServerWebSocket<UserData>>
  /** Resolves `closeAll()` once the last connection is gone. */
  private lastConnectionClosed: (() => void) | undefined
  /** Connections on an HTTP/2 stream, with their session (for `transports` in the stats). */
  private readonly http2Sessions = new Map<ServerWebSocket<UserData>, object>()
  /** Open WebSockets per HTTP/2 session. */
  private readonly sessionSockets = new Map<object, number>()

  constructor(
    options: ServerOptions<UserData>,
    limits: Limits,
    admission: Admission,
    deflateOptions: PerMessageDeflateOptions | undefined,
  ) {
    this.handlers = options
    this.admission = admission
    this.deflateOptions = deflateOptions
    this.readPauseThreshold = options.readPauseThreshold ?? DEFAULT_READ_PAUSE_THRESHOLD
    this.driverOptions = {
      limits,
      autoPong: options.autoPong ?? true,
      closeTimeout: options.closeTimeout ?? DEFAULT_CLOSE_TIMEOUT,
      readPauseThreshold: this.readPauseThreshold,
    }
    this.maxBackpressure = options.maxBackpressure ?? DEFAULT_MAX_BACKPRESSURE
    this.backpressurePolicy = options.backpressurePolicy ?? 'drop'
    this.maxPendingHandlers = options.maxPendingHandlers ?? DEFAULT_MAX_PENDING_HANDLERS
    this.decodeText = options.decodeText ?? true
    this.liveness = new LivenessMonitor(
      () => this.sockets,
      options.heartbeat ?? DEFAULT_HEARTBEAT,
      options.idleTimeout ?? 0,
    )
    this.liveness.start()
    this.counters = {
      connections: 0,
      connectionsTotal: 0,
      messagesIn: 0,
      messagesOut: 0,
      bytesIn: 0,
      bytesOut: 0,
      handshakeRejections: {},
      protocolErrors: 0,
      backpressureDrops: 0,
      backpressureCloses: 0,
      heartbeatTimeouts: 0,
      idleTimeouts: 0,
      transports: { http1: 0, http2: 0, http2Sessions: 0 },
    }
  }

  get openConnections(): number {
    return this.sockets.size
  }

  /** The 101 is written: the connection opens, `open` runs, then the first frames are read. */
  open(socket: Duplex, head: Buffer, data: UserData, handshake: AcceptedHandshake): void {
    const ws = new ServerWebSocket<UserData>(this, socket, data, {
      protocol: handshake.protocol,
      extensions: handshake.extensions,
      url: handshake.url,
      compression: handshake.deflate === undefined ? undefined : this.createCodec(handshake.deflate),
    })
    this.sockets.add(ws)
    if (this.admission.countsAddresses) this.admission.connectionOpened(ws.remoteAddress)
    this.counters.connectionsTotal++
    this.counters.connections = this.sockets.size
    this.countTransport(ws, socket, 1)
    ws.start(head)
  }

  private createCodec(params: DeflateParams): DeflateCodec {
    return codecFor(params, 'server', this.deflateOptions!)
  }

  connectionClosed(ws: ServerWebSocket<UserData>): void {
    if (!this.sockets.delete(ws)) return
    this.countTransport(ws, undefined, -1)
    if (this.admission.countsAddresses) this.admission.connectionClosed(ws.remoteAddress)
    this.counters.connections = this.sockets.size
    if (this.sockets.size === 0 && this.lastConnectionClosed !== undefined) this.lastConnectionClosed()
  }

  /** Counts a connection opening (+1, with its stream) or closing (-1) in `transports`. */
  private countTransport(ws: ServerWebSocket<UserData>, socket: Duplex | undefined, change: 1 | -1): void {
    const transports = this.counters.transports
    // A stream whose session is already gone counts as a session of its own.
    const session =
      change === 1
        ? socket !== undefined && isHttp2Stream(socket)
          ? (socket.session ?? socket)
          : undefined
        : this.http2Sessions.get(ws)
    if (session === undefined) {
      transports.http1 += change
      return
    }
    transports.http2 += change
    const count = (this.sessionSockets.get(session) ?? 0) + change
    if (change === 1) this.http2Sessions.set(ws, session)
    else this.http2Sessions.delete(ws)
    if (count === 0) this.sessionSockets.delete(session)
    else this.sessionSockets.set(session, count)
    transports.http2Sessions = this.sessionSockets.size
  }

  /** See RallyServer.publish. */
  publish(topic: string, data: SendData, options?: SendOptions, exclude?: ServerWebSocket<UserData>): number {
    const subscribers = this.topicRegistry.subscribers(topic)
    if (subscribers === undefined) return 0
    const message = new PreparedMessage(
      toBytes(data),
      options?.binary ?? typeof data !== 'string',
      options?.compress,
    )
    let sent = 0
    for (const ws of subscribers) {
      if (ws !== exclude && ws.sendPrepared(message) !== 'dropped') sent++
    }
    return sent
  }

  countRejection(status: number): void {
    const key = String(status)
    this.counters.handshakeRejections[key] = (this.counters.handshakeRejections[key] ?? 0) + 1
  }

  reportError(error: unknown, kind: ServerErrorKind, ws?: ServerWebSocket<UserData>): void {
    const handler = this.handlers.error
    if (handler === undefined) {
      // A peer's faults (protocol violations, silence, resets) are routine; the application
      // hears of them only if it listens. Our own failures are printed.
      printUnlessRoutine(error, kind)
      return
    }
    try {
      const result = handler(error, ws, kind)
      if (result instanceof Promise) result.catch((cause: unknown) => console.error(cause))
    } catch (cause) {
      console.error(cause)
    }
  }

  /**
   * Sends 1001 Going Away to every connection; resolves once the last one is gone (each closing
   * handshake is bounded by closeTimeout, after which the socket is destroyed).
   */
  closeAll(): Promise<void> {
    this.closing = true
    this.liveness.stop()
    const done =
      this.sockets.size === 0
        ? Promise.resolve()
        : new Promise<void>((resolve) => {
            this.lastConnectionClosed = resolve
          })
    for (const ws of this.sockets) ws.goAway()
    return done
  }
}
