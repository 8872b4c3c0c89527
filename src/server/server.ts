/**
 * The Rally WebSocket server: `createServer(options)` with one handler object.
 *
 * It listens on its own port (`port`, `tls` for wss://), or attaches to any `node:http(s)` server
 * through `handleUpgrade(req, socket, head)` — Express, Fastify and Hono's Node server included.
 */
import { Buffer } from 'node:buffer'
import type { IncomingMessage } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { createServer as createNetServer, type Server as NetServer } from 'node:net'
import type { Duplex } from 'node:stream'
import { createServer as createTlsServer } from 'node:tls'
import { DeflateCodec } from '../node/deflate.js'
import { endAndRelease, REFUSAL_LINGER_MS } from '../node/end-and-release.js'
import type { DriverOptions } from '../node/socket-driver.js'
import { parseExtensions } from '../protocol/extensions/extension-header.js'
import {
  checkDeflateOptions,
  DEFAULT_DEFLATE_LEVEL,
  DEFAULT_DEFLATE_MEM_LEVEL,
  DEFAULT_DEFLATE_THRESHOLD,
  type DeflateParams,
  directionsFor,
  negotiateServer,
  type PerMessageDeflateOptions,
  type ServerNegotiation,
} from '../protocol/extensions/permessage-deflate.js'
import {
  buildAcceptResponse,
  buildErrorResponse,
  HandshakeError,
  HttpHeadParser,
  type Limits,
  listHasToken,
  resolveLimits,
  validateRequest,
} from '../protocol/index.js'
import { PreparedMessage } from '../pubsub/prepared-message.js'
import { TopicRegistry } from '../pubsub/topic-registry.js'
import { LivenessMonitor } from './liveness.js'
import { type SendData, type SendOptions, ServerWebSocket, toBytes } from './server-websocket.js'
import type {
  ServerContext,
  ServerErrorKind,
  ServerHandlers,
  ServerOptions,
  ServerStats,
  UpgradeContext,
} from './types.js'
import { isParsedRequest, requestFromHead, type UpgradeRequest } from './upgrade-request.js'

const DEFAULT_MAX_BACKPRESSURE = 16 * 1024 * 1024
const DEFAULT_CLOSE_TIMEOUT = 5000
const DEFAULT_READ_PAUSE_THRESHOLD = 1024 * 1024
const DEFAULT_MAX_PENDING_HANDLERS = 64
const DEFAULT_HANDSHAKE_TIMEOUT = 10_000
const DEFAULT_HEARTBEAT = { interval: 30_000, timeout: 10_000 }
/** Longest body of a refusal `Response` we send; the rest is cut (the peer is not a browser page). */
const MAX_REJECTION_BODY = 4096
/** Errors the peer causes, routine on the Internet: not printed without an `error` handler. */
const ROUTINE_ERRORS: ReadonlySet<ServerErrorKind> = new Set(['protocol', 'timeout', 'transport'])

export class RallyServer<UserData = undefined> implements ServerContext<UserData> {
  readonly handlers: ServerHandlers<UserData>
  readonly driverOptions: DriverOptions
  readonly maxBackpressure: number
  readonly decodeText: boolean
  readonly counters: ServerStats
  /** The TCP or TLS server created for `port`; undefined when attached with `handleUpgrade`. */
  readonly listener: NetServer | undefined
  private readonly options: ServerOptions<UserData>
  /** permessage-deflate settings, when enabled. */
  private readonly deflateOptions: PerMessageDeflateOptions | undefined
  private readonly sockets = new Set<ServerWebSocket<UserData>>()
  readonly topicRegistry = new TopicRegistry<ServerWebSocket<UserData>>()
  private readonly listening: Promise<void>
  private closing: Promise<void> | undefined
  /** Resolves `close()` once the last connection is gone. */
  private lastConnectionClosed: (() => void) | undefined
  readonly backpressurePolicy: 'drop' | 'close'
  readonly readPauseThreshold: number
  readonly maxPendingHandlers: number
  private readonly handshakeTimeout: number
  private readonly limits: Limits
  private readonly liveness: LivenessMonitor<ServerWebSocket<UserData>>
  private readonly originCheck: ((origin: string) => boolean) | undefined
  /** Open connections per remote address, kept only with `maxConnectionsPerIp`. */
  private readonly connectionsPerIp = new Map<string, number>()
  /** Handshakes between the request and the 101 (counted against `maxConnections`). */
  private pendingHandshakes = 0
  /** Sockets answered with a refusal, until they close (destroyed on `close()`). */
  private readonly refusedSockets = new Set<Duplex>()
  /** Sockets of our own port still sending their request head (destroyed on `close()`). */
  private readonly handshaking = new Set<Socket>()

  constructor(options: ServerOptions<UserData>) {
    this.options = options
    this.handlers = options
    const limits = resolveLimits({
      ...options.limits,
      ...(options.maxPayload !== undefined ? { maxMessageSize: options.maxPayload } : {}),
    })
    this.limits = limits
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
    this.handshakeTimeout = options.handshakeTimeout ?? DEFAULT_HANDSHAKE_TIMEOUT
    this.originCheck =
      options.allowedOrigins === undefined ? undefined : compileOrigins(options.allowedOrigins)
    this.liveness = new LivenessMonitor(
      () => this.sockets,
      options.heartbeat ?? DEFAULT_HEARTBEAT,
      options.idleTimeout ?? 0,
    )
    this.liveness.start()
    this.decodeText = options.decodeText ?? true
    const deflate = options.perMessageDeflate
    this.deflateOptions =
      deflate === true ? {} : deflate === false || deflate === undefined ? undefined : deflate
    if (this.deflateOptions !== undefined) checkDeflateOptions(this.deflateOptions)
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
    }
    if (options.port === undefined) {
      this.listener = undefined
      this.listening = Promise.resolve()
      return
    }
    // Rally's own port: a plain TCP (or TLS) server, the handshake read by Rally's own HTTP head
    // parser — no node:http machinery per connection, which is most of a handshake's cost.
    const listener = options.tls ? createTlsServer(options.tls) : createNetServer()
    this.listener = listener
    listener.on(options.tls ? 'secureConnection' : 'connection', (socket: Socket) => this.readHead(socket))
    // A failed TLS handshake: nothing to answer, the socket is gone.
    if (options.tls) listener.on('tlsClientError', (_error: Error, socket: Duplex) => socket.destroy())
    const server = listener
    this.listening = new Promise((resolve, reject) => {
      server.once('error', reject)
      server.listen(options.port, options.host, () => {
        server.removeListener('error', reject)
        // After listen, errors come from accept (EMFILE when out of file descriptors): without
        // a listener they would crash the process. libuv keeps accepting once descriptors free.
        server.on('error', (error: Error) => this.reportError(error, 'accept'))
        resolve()
      })
    })
  }

  /** Resolves once the server listens (at once when attached to another server). */
  ready(): Promise<void> {
    return this.listening
  }

  /** The address the server listens on; undefined when attached. */
  address(): AddressInfo | undefined {
    const address = this.listener?.address()
    return address !== null && typeof address === 'object' ? address : undefined
  }

  get port(): number | undefined {
    return this.address()?.port
  }

  /** Open connections. */
  get clients(): ReadonlySet<ServerWebSocket<UserData>> {
    return this.sockets
  }

  /**
   * Sends a message to every subscriber of `topic` (except `exclude`): framed — and compressed,
   * where the sockets' settings allow — once, the same bytes written to each. Never blocks: a
   * slow subscriber gets 'buffered' or, past `maxBackpressure`, loses the message, and the
   * others are not delayed. Returns the number of sockets the message went to.
   */
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

  /** Number of sockets subscribed to `topic`. */
  subscriberCount(topic: string): number {
    return this.topicRegistry.count(topic)
  }

  /** A snapshot of the counters: a plain object, cheap enough to read every second. */
  stats(): ServerStats {
    return {
      ...this.counters,
      connections: this.sockets.size,
      handshakeRejections: { ...this.counters.handshakeRejections },
    }
  }

  /**
   * Reads a request head on Rally's own port, bounded in size, header count (431) and time
   * (handshakeTimeout: 408), then hands it to the handshake. Bytes after the head — frames a
   * client sent at once — go along as `head`. The socket's events go to module-level functions
   * (state on the socket, as in SocketDriver): a handshake allocates no closures.
   */
  private readHead(socket: Socket): void {
    socket.on('error', ignoreHandshakeSocketError)
    if (this.closing !== undefined) {
      socket.destroy()
      return
    }
    this.handshaking.add(socket)
    const timer = setTimeout(onHeadTimeout, this.handshakeTimeout, socket)
    timer.unref()
    ;(socket as HeadReadingSocket)[kHeadReading] = {
      server: this as RallyServer<unknown>,
      parser: new HttpHeadParser(this.limits),
      timer,
    }
    socket.on('data', onHeadData)
    socket.on('close', onHeadClose)
  }

  /** @internal A chunk of a request head on Rally's own port. */
  receiveHead(socket: Socket, reading: HeadReading, chunk: Buffer): void {
    let request: UpgradeRequest
    let rest: Uint8Array
    try {
      const result = reading.parser.push(chunk)
      if (result === undefined) return
      this.stopReadingHead(socket)
      // Nothing more is read until the handshake is decided: bytes wait in the socket.
      socket.pause()
      request = requestFromHead(result.head, socket)
      rest = result.rest
    } catch (error) {
      this.stopReadingHead(socket)
      if (error instanceof HandshakeError) this.reject(socket, error)
      else this.fail(socket, error)
      return
    }
    // handleUpgrade installs its own guard against resets.
    socket.removeListener('error', ignoreHandshakeSocketError)
    this.handleUpgrade(request, socket, Buffer.from(rest.buffer, rest.byteOffset, rest.length))
  }

  /** @internal The head did not come in time (slowloris): 408. */
  headTimedOut(socket: Socket): void {
    this.stopReadingHead(socket)
    this.reject(socket, new HandshakeError(408, 'Request timeout'))
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

  /**
   * Completes (or refuses) a WebSocket handshake for an upgrade request received by any
   * `node:http(s)` server. `head` holds bytes that arrived after the request head: they are the
   * client's first frames and are processed before anything read later.
   */
  handleUpgrade(req: UpgradeRequest | IncomingMessage, socket: Duplex, head: Buffer): void {
    // Before anything else, so that a reset during the handshake cannot crash the process.
    socket.on('error', ignoreHandshakeSocketError)
    if (this.closing !== undefined) {
      this.reject(socket, new HandshakeError(503, 'Server is shutting down'))
      return
    }
    const url = req.url ?? '/'
    if (this.options.path !== undefined && pathnameOf(url) !== this.options.path) {
      this.reject(socket, new HandshakeError(404, 'No WebSocket endpoint at this path'))
      return
    }
    const policyError = this.checkPolicy(req, socket as Socket)
    if (policyError !== undefined) {
      this.reject(socket, policyError)
      return
    }
    let validated: ReturnType<typeof validateRequest>
    try {
      validated = validateRequest({
        method: req.method ?? '',
        httpVersion: req.httpVersion,
        fields: req.headersDistinct,
      })
    } catch (error) {
      if (!(error instanceof HandshakeError)) this.fail(socket, error)
      else if (this.handlers.handshakeError?.(error, req, socket) === true) this.countRejection(error.status)
      else this.reject(socket, error)
      return
    }
    let deflate: ServerNegotiation | undefined
    if (this.deflateOptions !== undefined && validated.extensions.length > 0) {
      const offers = parseExtensions(validated.extensions)
      if (offers === undefined) {
        this.reject(socket, new HandshakeError(400, 'Malformed Sec-WebSocket-Extensions header'))
        return
      }
      try {
        deflate = negotiateServer(offers, this.deflateOptions)
      } catch (error) {
        this.fail(socket, error)
        return
      }
    }
    const context = new HandshakeContext(
      validated.protocols,
      this.options.protocols?.find((p) => validated.protocols.includes(p)),
      socket as Socket,
    )
    const upgrade = this.handlers.upgrade
    if (upgrade === undefined) {
      this.accept(req, socket, head, validated.key, context, deflate, undefined as UserData)
      return
    }
    let result: UserData | Response | Promise<UserData | Response>
    try {
      result = upgrade(req, context)
    } catch (error) {
      this.fail(socket, error)
      return
    }
    if (!(result instanceof Promise)) {
      this.decide(req, socket, head, validated.key, context, deflate, result)
      return
    }
    // The socket may go away while the application decides; bytes the client sends meanwhile
    // stay in the socket's buffer (nothing reads it yet), so none is lost. The decision is
    // bounded by handshakeTimeout, and counts against maxConnections while it is pending.
    this.pendingHandshakes++
    let settled = false
    const timer = setTimeout(() => {
      if (!finish()) return
      this.reject(socket, new HandshakeError(503, 'Handshake timed out'))
    }, this.handshakeTimeout)
    timer.unref()
    // A peer that leaves while the application decides frees its slot at once: no 503 counted
    // later for a socket that is gone, no maxConnections slot held for handshakeTimeout.
    const onGone = (): void => void finish()
    socket.once('close', onGone)
    const finish = (): boolean => {
      if (settled) return false
      settled = true
      this.pendingHandshakes--
      clearTimeout(timer)
      socket.removeListener('close', onGone)
      return true
    }
    result.then(
      (value) => {
        if (finish()) this.decide(req, socket, head, validated.key, context, deflate, value)
      },
      (error: unknown) => {
        if (finish()) this.fail(socket, error)
      },
    )
  }

  /** maxConnections and maxConnectionsPerIp, counting `pending` handshakes as connections. */
  private checkCaps(socket: Socket, pending: number): HandshakeError | undefined {
    const max = this.options.maxConnections ?? 0
    if (max > 0 && this.sockets.size + pending >= max) {
      return new HandshakeError(503, 'Too many connections')
    }
    const perIp = this.options.maxConnectionsPerIp ?? 0
    if (perIp > 0 && (this.connectionsPerIp.get(socket.remoteAddress ?? '') ?? 0) >= perIp) {
      return new HandshakeError(429, 'Too many connections from this address')
    }
    return undefined
  }

  /** Server-wide admission rules, checked before the application sees the request. */
  private checkPolicy(req: UpgradeRequest, socket: Socket): HandshakeError | undefined {
    const limits = this.limits
    // (On Rally's own port the head parser has enforced this already.)
    if (!isParsedRequest(req) && req.rawHeaders.length / 2 > limits.maxHeaderCount) {
      return new HandshakeError(431, `More than ${limits.maxHeaderCount} header fields`)
    }
    const capError = this.checkCaps(socket, this.pendingHandshakes)
    if (capError !== undefined) return capError
    if (this.originCheck !== undefined) {
      // Browsers always send Origin on a WebSocket handshake; other clients need not (RFC 6455
      // 4.1 item 8, 10.2), and a forged Origin proves nothing, so only present origins are judged.
      const origins = req.headersDistinct.origin
      if (origins !== undefined && (origins.length !== 1 || !this.originCheck(origins[0]!))) {
        return new HandshakeError(403, 'Origin not allowed')
      }
    }
    return undefined
  }

  private decide(
    req: UpgradeRequest,
    socket: Duplex,
    head: Buffer,
    key: string,
    context: HandshakeContext,
    deflate: ServerNegotiation | undefined,
    result: UserData | Response,
  ): void {
    if (socket.destroyed) return
    if (result instanceof Response) {
      this.refuse(socket, result)
      return
    }
    if (this.closing !== undefined) {
      this.reject(socket, new HandshakeError(503, 'Server is shutting down'))
      return
    }
    // Connections may have opened while the application decided: the caps are checked again.
    const capError = this.checkCaps(socket as Socket, 0)
    if (capError !== undefined) {
      this.reject(socket, capError)
      return
    }
    this.accept(req, socket, head, key, context, deflate, result)
  }

  private accept(
    req: UpgradeRequest,
    socket: Duplex,
    head: Buffer,
    key: string,
    context: HandshakeContext,
    deflate: ServerNegotiation | undefined,
    data: UserData,
  ): void {
    const protocol = context.protocol
    if (protocol !== undefined && !context.protocols.includes(protocol)) {
      // RFC 6455 4.2.2: the server picks "one of the values from the client's handshake".
      this.fail(
        socket,
        new TypeError(`upgrade chose subprotocol "${protocol}", which the client did not offer`),
      )
      return
    }
    let response: string
    try {
      response = buildAcceptResponse(key, {
        protocol,
        extensions: deflate?.response,
        headers: context.extraHeaders(),
      })
    } catch (error) {
      this.fail(socket, error)
      return
    }
    socket.removeListener('error', ignoreHandshakeSocketError)
    socket.write(response)
    const ws = new ServerWebSocket<UserData>(this, socket as Socket, data, {
      protocol: protocol ?? '',
      extensions: deflate?.response ?? '',
      url: req.url ?? '/',
      compression: deflate === undefined ? undefined : this.createCodec(deflate.params),
    })
    this.sockets.add(ws)
    if ((this.options.maxConnectionsPerIp ?? 0) > 0) {
      this.connectionsPerIp.set(ws.remoteAddress, (this.connectionsPerIp.get(ws.remoteAddress) ?? 0) + 1)
    }
    this.counters.connectionsTotal++
    this.counters.connections = this.sockets.size
    ws.start(head)
  }

  private createCodec(params: DeflateParams): DeflateCodec {
    const options = this.deflateOptions!
    const { compress, decompress } = directionsFor(params, 'server')
    return new DeflateCodec({
      compress,
      decompress,
      threshold: options.threshold ?? DEFAULT_DEFLATE_THRESHOLD,
      level: options.level ?? DEFAULT_DEFLATE_LEVEL,
      memLevel: options.memLevel ?? DEFAULT_DEFLATE_MEM_LEVEL,
    })
  }

  private countRejection(status: number): void {
    const key = String(status)
    this.counters.handshakeRejections[key] = (this.counters.handshakeRejections[key] ?? 0) + 1
  }

  /** Answers a refused handshake with its status and a one-line reason, then closes. */
  private reject(socket: Duplex, error: HandshakeError): void {
    this.countRejection(error.status)
    this.answerAndClose(
      socket,
      buildErrorResponse(error.status, `${error.message}\n`, Object.entries(error.headers)),
    )
  }

  /**
   * Sends a final HTTP answer and closes the socket: half-closes after the answer, discards
   * whatever the peer still sends, and destroys the socket after a second if the peer keeps
   * its side open — a refused peer must not hold a file descriptor (or `close()`) forever.
   */
  private answerAndClose(socket: Duplex, response: string): void {
    if (!socket.writable || socket.destroyed) {
      socket.destroy()
      return
    }
    this.refusedSockets.add(socket)
    socket.once('close', () => this.refusedSockets.delete(socket))
    // The answer is small and already handed to the kernel by then: a second is plenty.
    endAndRelease(socket, response, Math.min(this.driverOptions.closeTimeout, REFUSAL_LINGER_MS))
  }

  /** The application refused the upgrade with a Response. */
  private refuse(socket: Duplex, response: Response): void {
    response.text().then(
      (text) => {
        this.countRejection(response.status)
        const headers: [string, string][] = []
        response.headers.forEach((value, name) => {
          if (name !== 'content-length' && name !== 'connection' && name !== 'content-type')
            headers.push([name, value])
        })
        const body = text.length > MAX_REJECTION_BODY ? text.slice(0, MAX_REJECTION_BODY) : text
        const contentType = response.headers.get('content-type') ?? undefined
        this.answerAndClose(socket, buildErrorResponse(response.status, body, headers, contentType))
      },
      (error: unknown) => this.fail(socket, error),
    )
  }

  /** Our own failure during a handshake: 500 without details, the cause to the error handler. */
  private fail(socket: Duplex, error: unknown): void {
    this.reportError(error, 'handshake')
    this.reject(socket, new HandshakeError(500, 'Internal server error'))
  }

  connectionClosed(ws: ServerWebSocket<UserData>): void {
    if (!this.sockets.delete(ws)) return
    const count = this.connectionsPerIp.get(ws.remoteAddress)
    if (count !== undefined) {
      if (count <= 1) this.connectionsPerIp.delete(ws.remoteAddress)
      else this.connectionsPerIp.set(ws.remoteAddress, count - 1)
    }
    this.counters.connections = this.sockets.size
    if (this.sockets.size === 0 && this.lastConnectionClosed !== undefined) this.lastConnectionClosed()
  }

  reportError(error: unknown, kind: ServerErrorKind, ws?: ServerWebSocket<UserData>): void {
    const handler = this.handlers.error
    if (handler === undefined) {
      // A peer's faults (protocol violations, silence, resets) are routine; the application
      // hears of them only if it listens. Our own failures are printed.
      if (!ROUTINE_ERRORS.has(kind)) console.error(error)
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
   * Shuts down: stops accepting, sends 1001 Going Away to every connection, waits for the closing
   * handshakes (each bounded by `closeTimeout`), then closes the listening server.
   */
  close(): Promise<void> {
    if (this.closing !== undefined) return this.closing
    this.liveness.stop()
    const waits: Promise<void>[] = []
    if (this.listener !== undefined) {
      const server = this.listener
      // A server still starting to listen is closed once it listens (closing it before would
      // leave the port open when listen completes).
      waits.push(
        this.listening.then(
          () => new Promise<void>((resolve) => server.close(() => resolve())),
          () => undefined,
        ),
      )
    }
    if (this.sockets.size > 0) {
      waits.push(
        new Promise((resolve) => {
          this.lastConnectionClosed = resolve
        }),
      )
    }
    // Each socket's closing handshake is bounded by closeTimeout, after which it is destroyed.
    for (const ws of this.sockets) ws.goAway()
    // Refused peers and handshakes still arriving (slowloris) are not waited for.
    for (const socket of this.refusedSockets) socket.destroy()
    for (const socket of this.handshaking) socket.destroy()
    this.closing = Promise.all(waits).then(() => undefined)
    return this.closing
  }
}

/**
 * Compiles `allowedOrigins`. A "*" stands for one or more DNS labels ("https://*.example"
 * matches "https://a.example" and "https://a.b.example", not "https://example"). Origins are
 * compared in their serialized, lower-case form (RFC 6454 6.2).
 */
function compileOrigins(allowed: readonly (string | RegExp)[]): (origin: string) => boolean {
  const exact = new Set<string>()
  const patterns: { prefix: string; suffix: string }[] = []
  const regexps: RegExp[] = []
  for (const entry of allowed) {
    if (entry instanceof RegExp) {
      regexps.push(entry)
      continue
    }
    const lower = entry.toLowerCase()
    const star = lower.indexOf('*')
    if (star === -1) exact.add(lower)
    else patterns.push({ prefix: lower.slice(0, star), suffix: lower.slice(star + 1) })
  }
  return (origin) => {
    const lower = origin.toLowerCase()
    if (exact.has(lower)) return true
    for (const { prefix, suffix } of patterns) {
      if (
        lower.length > prefix.length + suffix.length &&
        lower.startsWith(prefix) &&
        lower.endsWith(suffix)
      ) {
        const middle = lower.slice(prefix.length, lower.length - suffix.length)
        if (isHostLabels(middle)) return true
      }
    }
    return regexps.some((regexp) => {
      // A /g or /y RegExp remembers where it stopped; each origin is a fresh match.
      regexp.lastIndex = 0
      return regexp.test(origin)
    })
  }
}

/** Letters, digits, hyphens and dots: what "*" may stand for in an origin pattern. */
function isHostLabels(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i)
    const ok = (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x2e
    if (!ok) return false
  }
  return value.length > 0 && !value.startsWith('.') && !value.endsWith('.')
}

/**
 * The Connection header of a 426: "Upgrade" (the Upgrade header is hop-by-hop), plus "close"
 * when the request asked for it (RFC 9112 9.6), so that a keep-alive client does not reuse a
 * connection we are closing.
 */
export function upgradeRequiredConnection(requestConnection: string | undefined): string {
  return listHasToken(requestConnection === undefined ? undefined : [requestConnection], 'close')
    ? 'Upgrade, close'
    : 'Upgrade'
}

function pathnameOf(url: string): string {
  const query = url.indexOf('?')
  return query === -1 ? url : url.slice(0, query)
}

/**
 * The UpgradeContext of one handshake. Its Headers object and the peer's address are made only
 * if the application asks: most handshakes need neither, and both cost allocations.
 */
class HandshakeContext implements UpgradeContext {
  readonly protocols: readonly string[]
  protocol: string | undefined
  private readonly socket: Socket
  private responseHeaders: Headers | undefined

  constructor(protocols: readonly string[], protocol: string | undefined, socket: Socket) {
    this.protocols = protocols
    this.protocol = protocol
    this.socket = socket
  }

  get headers(): Headers {
    this.responseHeaders ??= new Headers()
    return this.responseHeaders
  }

  get remoteAddress(): string {
    return this.socket.remoteAddress ?? ''
  }

  /** Headers the application added, for the 101 response. */
  extraHeaders(): Iterable<[string, string]> {
    return this.responseHeaders?.entries() ?? []
  }
}

/** A request head being read on Rally's own port, kept on its socket. */
interface HeadReading {
  server: RallyServer<unknown>
  parser: HttpHeadParser
  timer: NodeJS.Timeout
}

const kHeadReading = Symbol('rally.headReading')

type HeadReadingSocket = Socket & { [kHeadReading]?: HeadReading | undefined }

function onHeadData(this: HeadReadingSocket, chunk: Buffer): void {
  const reading = this[kHeadReading]
  if (reading !== undefined) reading.server.receiveHead(this, reading, chunk)
}

function onHeadClose(this: HeadReadingSocket): void {
  this[kHeadReading]?.server.stopReadingHead(this)
}

function onHeadTimeout(socket: HeadReadingSocket): void {
  socket[kHeadReading]?.server.headTimedOut(socket)
}

function ignoreHandshakeSocketError(): void {
  // The socket closes; there is no connection yet to report it to.
}

/** Creates a WebSocket server. With `port` it listens at once: `await server.ready()`. */
export function createServer<UserData = undefined>(options: ServerOptions<UserData>): RallyServer<UserData> {
  return new RallyServer<UserData>(options)
}
