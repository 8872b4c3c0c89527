/**
 * `createRealtime`: channels, presence, history and recovery, acknowledged publishes and RPC
 * over Rally's WebSocket server (subprotocol `rally.v1`, docs/protocol.md).
 *
 * ```ts
 * const realtime = createRealtime({
 *   authenticate: (request, token) => (token === 'secret' ? { user: 'ann' } : { refuse: 'bad token' }),
 *   channels: { 'chat:*': { publish: true, history: { size: 100, ttl: 600_000 }, presence: true } },
 *   rpc: { time: async () => Date.now() },
 * })
 * await realtime.listen({ port: 3000, path: '/realtime' })
 * await realtime.publish('chat:lobby', { text: 'hello' })   // → { offset, epoch }
 * ```
 *
 * Each WebSocket drives a sans-I/O session (session.ts); the node's channels, fan-out and seam
 * are in hub.ts. Publications reach WebSocket subscribers through Rally's topics — one topic per
 * channel on each server — so a publication's frame is built once for all of them.
 */
import type { Server as HttpServer, IncomingMessage } from 'node:http'
import type { Server as HttpsServer } from 'node:https'
import type { Duplex } from 'node:stream'
import type { Bus, StreamPosition } from '../pubsub/bus.js'
import { MemoryBus } from '../pubsub/memory-bus.js'
import { RallyServer } from '../server/server.js'
import type { ServerWebSocket } from '../server/server-websocket.js'
import type { BackpressureClose, ServerHandlers, ServerOptions, UpgradeContext } from '../server/types.js'
import type { UpgradeRequest } from '../server/upgrade-request.js'
import {
  BUS_OUTAGE_REASON,
  BUS_OUTAGE_RETRY_AFTER,
  BusOutage,
  DEFAULT_BUS_OUTAGE_GRACE,
} from './bus-outage.js'
import type { InferInput, InferOutput, StandardSchema } from './channels.js'
import { type Broadcaster, type ChannelRule, RealtimeCore, type RpcHandler } from './hub.js'
import {
  DisconnectCode,
  disconnectPush,
  encodeServerMessage,
  type HistoryResult,
  type Member,
  type PublishResult,
  SUBPROTOCOL,
} from './protocol.js'
import {
  type Authentication,
  DEFAULT_HEARTBEAT,
  DEFAULT_REALTIME_LIMITS,
  type HeartbeatOptions,
  type RealtimeLimits,
  RealtimeSession,
  type SessionTransport,
} from './session.js'
import { type HttpTransportOptions, HttpTransports, ownPortTransports } from './transports/http.js'

// Rules and handlers typed by the app: their data parameters vary (a publish check taking
// { text: string } is no check of unknown), so the constraints accept any data type.
// biome-ignore lint/suspicious/noExplicitAny: the constraint of app-typed channel rules
type AnyChannelRule = ChannelRule<any>
// biome-ignore lint/suspicious/noExplicitAny: the constraint of app-typed RPC handlers
type AnyRpcHandler = RpcHandler<any, any>

/** Topics of realtime channels on a Rally server carry this prefix, apart from the app's own. */
export const TOPIC_PREFIX = 'rally.rt:'

/**
 * The backpressure policy of realtime WebSockets: a reader that falls `maxBackpressure` behind
 * is told why — the `disconnect` push 4003 (slow consumer), then the close with the same code —
 * rather than closed with a bare 1008; it reconnects and recovers what it missed from history.
 * A gap in its stream would be worse than the reconnect, so 'drop' is never the default here.
 */
export const SLOW_CONSUMER_POLICY: BackpressureClose = Object.freeze({
  code: DisconnectCode.SlowConsumer,
  reason: disconnectPush(DisconnectCode.SlowConsumer).reason,
  lastMessage: encodeServerMessage(disconnectPush(DisconnectCode.SlowConsumer)),
})

/** Default extra presence refresh period: a third of MemoryBus's default presence ttl. */
const DEFAULT_PRESENCE_REFRESH = 20_000

/**
 * The presence refresh period for `bus`. RedisBus, NatsBus and MemoryBus carry their presence
 * expiry as `presenceTtl`; a member must be refreshed before it, so the default is a third of it
 * (two refreshes may fail before a live member expires), and a period that is not shorter than
 * the expiry is refused rather than left to make members blink out between refreshes.
 */
function presenceRefreshFor(bus: Bus, requested: number | undefined): number {
  const ttl = (bus as { presenceTtl?: unknown }).presenceTtl
  const expiry = typeof ttl === 'number' && ttl > 0 ? ttl : undefined
  if (requested === undefined)
    return expiry === undefined ? DEFAULT_PRESENCE_REFRESH : Math.min(DEFAULT_PRESENCE_REFRESH, expiry / 3)
  if (!(requested > 0)) throw new RangeError('createRealtime: presenceRefresh must be a positive number')
  if (expiry !== undefined && requested >= expiry)
    throw new RangeError(
      `createRealtime: presenceRefresh (${requested} ms) must be shorter than the bus's presenceTtl (${expiry} ms), or members expire between refreshes`,
    )
  return requested
}

export interface RealtimeOptions<
  Channels extends Record<string, AnyChannelRule> = Record<string, ChannelRule>,
  Rpc extends Record<string, AnyRpcHandler> = Record<string, RpcHandler>,
> {
  /** Carries publications between nodes and keeps history and presence. Default: a new MemoryBus. */
  bus?: Bus
  /**
   * Runs on `connect`: the transport's request (for a WebSocket, the upgrade request: headers,
   * cookies, URL) and the token the client sent. Return `{ user, info?, expiresAt? }` or
   * `{ refuse: reason }`. Default: everyone is let in as user ''. It runs again for `refresh`
   * (a new token on the same connection), with `request` undefined.
   */
  authenticate?: (
    request: unknown,
    token: string | undefined,
    session: RealtimeSession,
  ) => Authentication | Promise<Authentication>
  /** Rules by channel name pattern ('chat:*'). A channel no pattern matches is refused (102). */
  channels: Channels
  /** RPC methods: `async (session, data) => result`, or `{ schema, handler }`. */
  rpc?: Rpc & Record<string, AnyRpcHandler>
  /** Per-connection limits; see DEFAULT_REALTIME_LIMITS and docs/realtime.md. */
  limits?: Partial<RealtimeLimits>
  /** The application heartbeat. Default { interval: 25000, timeout: 10000 }. */
  heartbeat?: Partial<HeartbeatOptions>
  /**
   * Ms between presence refreshes on the bus (the bus expires stale members). Default: 20000, or a
   * third of the bus's `presenceTtl` when that is shorter; it must be shorter than `presenceTtl`.
   */
  presenceRefresh?: number
  /**
   * Ms the bus may be down (its broker out of reach) before this node disconnects its sessions
   * with 4001 and refuses new ones (503) until the bus is back, so that a load balancer moves the
   * clients to nodes that still reach the broker (docs/cluster.md). Default 10000; `Infinity`
   * never moves them.
   */
  busOutageGrace?: number
  /** Errors of hooks and of the bus (never sent to clients). Default: printed to stderr. */
  onError?: (error: unknown, session?: RealtimeSession) => void
}

/**
 * Rally server options for `listen` and `attach` (handlers and subprotocols are realtime's).
 * `backpressurePolicy` defaults to SLOW_CONSUMER_POLICY (disconnect 4003), not the server's 'drop'.
 */
export type RealtimeServerOptions = Omit<
  ServerOptions<RealtimeConnection>,
  'upgrade' | 'open' | 'message' | 'drain' | 'ping' | 'pong' | 'close' | 'protocols'
>

/** Per-WebSocket state (the Rally socket's `data`). */
export interface RealtimeConnection {
  request: unknown
  session: RealtimeSession | undefined
}

type ChannelData<Rule> = Rule extends { schema: StandardSchema<unknown, unknown> }
  ? InferInput<Rule['schema']>
  : unknown
type RpcParams<H> = H extends { schema: StandardSchema<unknown, unknown> }
  ? InferInput<H['schema']>
  : H extends (session: RealtimeSession, data: infer P) => unknown
    ? P
    : unknown
type RpcReturn<H> = H extends { handler: (...args: never[]) => infer R }
  ? Awaited<R>
  : H extends (...args: never[]) => infer R
    ? Awaited<R>
    : unknown

/** The types a RallyClient reads from `typeof realtime` (see the client's schema.ts). */
export interface RealtimeSchemaOf<Channels, Rpc> {
  channels: { [P in keyof Channels]: ChannelData<Channels[P]> }
  rpc: { [M in keyof Rpc]: { params: RpcParams<Rpc[M]>; result: RpcReturn<Rpc[M]> } }
}

export class Realtime<
  Channels extends Record<string, AnyChannelRule> = Record<string, ChannelRule>,
  Rpc extends Record<string, AnyRpcHandler> = Record<string, RpcHandler>,
> {
  /** Types only (never set): `RallyClient<typeof realtime>` reads channel data and RPC types here. */
  declare readonly '~schema'?: RealtimeSchemaOf<Channels, Rpc>
  readonly core: RealtimeCore
  readonly bus: Bus
  /** Whether this node refuses sessions because its bus has been down too long (bus-outage.ts). */
  readonly busOutage: BusOutage
  private readonly ownsBus: boolean
  private readonly servers = new Set<RallyServer<RealtimeConnection>>()
  private readonly broadcasters = new Map<object, Broadcaster>()
  private detachedServer: RallyServer<RealtimeConnection> | undefined
  /** The fallback transports `listen` serves (closed by `close()`). */
  private readonly httpTransports = new Set<HttpTransports>()
  private readonly timer: ReturnType<typeof setInterval>
  private closing: Promise<void> | undefined

  constructor(options: RealtimeOptions<Channels, Rpc>) {
    this.ownsBus = options.bus === undefined
    this.bus = options.bus ?? new MemoryBus()
    const limits = { ...DEFAULT_REALTIME_LIMITS, ...options.limits }
    const heartbeat = { ...DEFAULT_HEARTBEAT, ...options.heartbeat }
    for (const [name, value] of Object.entries({ ...limits, ...heartbeat })) {
      if (typeof value !== 'number' || !(value > 0))
        throw new RangeError(`createRealtime: ${name} must be a positive number`)
    }
    const onError = options.onError ?? ((error: unknown) => console.error('rallyjs/realtime:', error))
    this.core = new RealtimeCore({
      bus: this.bus,
      channels: options.channels as unknown as Record<string, ChannelRule<never>>,
      rpc: (options.rpc ?? {}) as Record<string, RpcHandler<never, unknown>>,
      authenticate: options.authenticate,
      limits,
      heartbeat,
      presenceRefresh: presenceRefreshFor(this.bus, options.presenceRefresh),
      onError,
    })
    // One timer for every session: heartbeats, timeouts, presence refreshes. A quarter of the
    // shortest period keeps each deadline within 25% of its value.
    const period = Math.min(1000, Math.max(10, Math.min(heartbeat.interval, heartbeat.timeout) / 4))
    this.timer = setInterval(() => this.core.tick(Date.now()), period)
    this.timer.unref()
    this.busOutage = new BusOutage(this.bus, options.busOutageGrace ?? DEFAULT_BUS_OUTAGE_GRACE, () => {
      for (const session of [...this.core.sessions, ...this.core.pendingSessions])
        session.disconnect(DisconnectCode.GoingAway, BUS_OUTAGE_REASON)
    })
  }

  /** Handlers for `createServer` (then call `addServer` with the server). */
  handlers(): ServerHandlers<RealtimeConnection> {
    const core = this.core
    const outage = this.busOutage
    return {
      upgrade(request: UpgradeRequest, context: UpgradeContext) {
        if (outage.refusing)
          return new Response(`${BUS_OUTAGE_REASON}\n`, {
            status: 503,
            headers: { 'content-type': 'text/plain', 'retry-after': BUS_OUTAGE_RETRY_AFTER },
          })
        if (!context.protocols.includes(SUBPROTOCOL)) {
          return new Response(`This endpoint speaks the ${SUBPROTOCOL} WebSocket subprotocol\n`, {
            status: 400,
            headers: { 'content-type': 'text/plain' },
          })
        }
        context.protocol = SUBPROTOCOL
        return { request, session: undefined }
      },
      open(ws: ServerWebSocket<RealtimeConnection>) {
        const session = new RealtimeSession(core, new WebSocketTransport(ws), ws.data.request, Date.now())
        ws.data.session = session
        // The session keeps the request until connect is authenticated, then drops it; a copy
        // here would hold the whole IncomingMessage (headers, socket) for the socket's life.
        ws.data.request = undefined
        core.opened(session)
      },
      message(ws: ServerWebSocket<RealtimeConnection>, data: string | Buffer, isBinary: boolean) {
        const session = ws.data.session
        if (session === undefined) return
        if (isBinary || typeof data !== 'string') {
          session.disconnect(DisconnectCode.BadRequest, `binary messages are not part of ${SUBPROTOCOL}`)
          return
        }
        session.receive(data, Date.now())
      },
      close(ws: ServerWebSocket<RealtimeConnection>) {
        ws.data.session?.transportClosed()
      },
      error(error: unknown) {
        core.reportError(error)
      },
    }
  }

  /**
   * Starts a session on a transport that a server of another kind accepted (a Hono route, and
   * later SSE and long polling). `request` is what the authenticate hook will see.
   */
  openSession(transport: SessionTransport, request: unknown): RealtimeSession {
    const session = new RealtimeSession(this.core, transport, request, Date.now())
    this.core.opened(session)
    if (this.busOutage.refusing) session.disconnect(DisconnectCode.GoingAway, BUS_OUTAGE_REASON)
    return session
  }

  /** Registers a Rally server whose sockets run realtime sessions, for topic fan-out. */
  addServer(server: { publish(topic: string, data: string): number }): void {
    if (this.broadcasters.has(server)) return
    const broadcaster: Broadcaster = {
      broadcast: (channel, envelope) => void server.publish(TOPIC_PREFIX + channel, envelope),
    }
    this.broadcasters.set(server, broadcaster)
    this.core.broadcasters.add(broadcaster)
  }

  /**
   * Starts a Rally server on its own port: rally.v1 WebSockets at `path` (any path without it),
   * and the fallback transports, SSE and long polling, under `path` (at the root without it),
   * served by Rally's own HTTP/1.1 handling (docs/transports.md). `transports` takes their
   * options; `false` serves WebSockets only (plain HTTP requests get 426 at the path, 404 elsewhere).
   * `realtime.close()` ends them with the server.
   */
  async listen(
    options: RealtimeServerOptions & {
      port: number
      transports?: Omit<HttpTransportOptions, 'path'> | false
    },
  ): Promise<RallyServer<RealtimeConnection>> {
    const { transports: transportOptions, ...serverOptions } = options
    if (transportOptions === false || serverOptions.request !== undefined) {
      const server = this.createServer(serverOptions)
      await server.ready()
      return server
    }
    const transports = new HttpTransports(this, { ...transportOptions, path: serverOptions.path ?? '/' })
    this.httpTransports.add(transports)
    const server = this.createServer({ ...serverOptions, ...ownPortTransports(transports) })
    try {
      await server.ready()
    } catch (error) {
      transports.close()
      this.httpTransports.delete(transports)
      throw error
    }
    return server
  }

  /**
   * Serves rally.v1 on an existing node:http(s) server's upgrades (at `options.path` if given;
   * other upgrade paths are left to other listeners).
   */
  attach(
    httpServer: HttpServer | HttpsServer,
    options: RealtimeServerOptions = {},
  ): RallyServer<RealtimeConnection> {
    const server = this.createServer({ ...options, path: undefined })
    const path = options.path
    httpServer.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) => {
      if (path !== undefined && pathnameOf(request.url ?? '/') !== path) return
      server.handleUpgrade(request, socket, head)
    })
    return server
  }

  /** Completes a rally.v1 upgrade received by any node:http(s) server. */
  handleUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): void {
    this.detachedServer ??= this.createServer({})
    this.detachedServer.handleUpgrade(request, socket, head)
  }

  /** Publishes from the server; resolves with the publication's offset and epoch. */
  publish<Name extends string>(channel: Name, data: unknown): Promise<PublishResult> {
    return this.core.serverPublish(channel, data)
  }

  /** Reads a channel's history: publications after `since`, or the latest `limit`. */
  history(channel: string, query: { since?: StreamPosition; limit?: number } = {}): Promise<HistoryResult> {
    return this.core.readHistory(channel, query.since, query.limit)
  }

  /** Who is subscribed to a channel with presence (every node, through the bus). */
  async presence(channel: string): Promise<Member[]> {
    const members = await this.bus.members(channel)
    return members.map((member) => ({ ...member }))
  }

  presenceCount(channel: string): Promise<number> {
    return this.bus.memberCount(channel)
  }

  /** Connected clients on this node. */
  get clients(): ReadonlyMap<string, RealtimeSession> {
    return this.core.clients
  }

  /** Disconnects a client of this node (4505: do not come back; 4008: reconnect). */
  disconnect(
    client: string,
    code: DisconnectCode = DisconnectCode.ForceDisconnect,
    reason?: string,
  ): boolean {
    const session = this.core.clients.get(client)
    if (session === undefined) return false
    session.disconnect(code, reason)
    return true
  }

  /** Ends a client's subscription from the server (an `unsubscribed` push with code 2000). */
  unsubscribe(client: string, channel: string, reason = 'unsubscribed by the server'): boolean {
    const session = this.core.clients.get(client)
    return session !== undefined && this.core.serverUnsubscribe(session, channel, reason)
  }

  /** Disconnects everyone (4001, reconnect elsewhere), closes the servers it created and its bus. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      clearInterval(this.timer)
      this.busOutage.close()
      this.core.disconnectAll(DisconnectCode.GoingAway)
      for (const transports of this.httpTransports) transports.close()
      await Promise.all([...this.servers].map((server) => server.close()))
      if (this.ownsBus) await this.bus.close()
    })()
    return this.closing
  }

  private createServer(options: RealtimeServerOptions): RallyServer<RealtimeConnection> {
    const limits = this.core.limits
    const server = new RallyServer<RealtimeConnection>({
      // The application heartbeat does the WebSocket heartbeat's job, and browsers see it.
      heartbeat: false,
      // Bigger envelopes than maxMessageSize get a clean 113 reply; far bigger ones, 1009.
      maxPayload: limits.maxMessageSize * 2 + 1024,
      ...options,
      // A socket that falls too far behind is disconnected with 4003 unless the app chose
      // otherwise ('close': a bare 1008; 'drop': gaps, which the app then accepts).
      backpressurePolicy: options.backpressurePolicy ?? SLOW_CONSUMER_POLICY,
      ...this.handlers(),
      protocols: [SUBPROTOCOL],
    })
    this.servers.add(server)
    this.addServer(server)
    return server
  }
}

/** A WebSocket carrying one session: envelopes as text messages, channels as topics. */
export class WebSocketTransport implements SessionTransport {
  readonly kind = 'websocket'
  private readonly ws: ServerWebSocket<unknown>

  constructor(ws: ServerWebSocket<unknown>) {
    this.ws = ws
  }

  send(envelope: string): void {
    this.ws.send(envelope)
  }

  close(code: number, reason: string): void {
    this.ws.close(code, reason)
  }

  joinBroadcast(channel: string): void {
    this.ws.subscribe(TOPIC_PREFIX + channel)
  }

  leaveBroadcast(channel: string): void {
    this.ws.unsubscribe(TOPIC_PREFIX + channel)
  }
}

/** Creates a realtime server; see `RealtimeOptions`. */
export function createRealtime<
  Channels extends Record<string, AnyChannelRule>,
  Rpc extends Record<string, AnyRpcHandler> = {},
>(options: RealtimeOptions<Channels, Rpc>): Realtime<Channels, Rpc> {
  return new Realtime(options)
}

function pathnameOf(url: string): string {
  const query = url.indexOf('?')
  return query === -1 ? url : url.slice(0, query)
}

export type { InferOutput }
