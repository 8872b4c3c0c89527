/**
 * RallyClient: the `rally.v1` client for browsers and Node, one module, no `node:` imports.
 *
 * It keeps a logical session alive over any number of physical connections:
 * - connection states with events (`connecting`, `connected`, `disconnected` with the reason,
 *   `closed`), reconnection with exponential backoff and full jitter (reset once a connection
 *   proved stable), an immediate retry when the browser comes back online or the page becomes
 *   visible again, and no retry on a terminal refusal (after asking `getToken` once for a new
 *   token when the refusal was about the token);
 * - an application heartbeat: the server pings, the client answers, and a client that hears
 *   nothing for `silenceLimit(ping)` judges the path dead, drops it and reconnects — the only way
 *   to notice a path that silently swallows bytes;
 * - subscriptions that survive reconnections (recovery from the last `{offset, epoch}`);
 * - publishes and RPCs made while disconnected wait in a bounded queue (count and bytes) and are
 *   rejected with a clear error when it is full or their timeout passes. A publish carries a key
 *   chosen here, so a publish resent after a reconnection is not published twice by the server;
 *   an RPC whose connection dropped before the reply is rejected (`connection_lost`), never
 *   resent, because it may already have run.
 */
import {
  type CommandResults,
  type ConnectResult,
  DisconnectCode,
  decodeServerMessage,
  silenceLimit as defaultSilenceLimit,
  type ErrorBody,
  ErrorCode,
  encodeCommand,
  isReply,
  mayReconnect,
  PROTOCOL_VERSION,
  type PublishResult,
  type Push,
  type Reply,
  type RpcResult,
  type StreamPosition,
  type SubscribeResult,
} from '../protocol.js'
import { type BackoffOptions, backoffDelay, type ResolvedBackoff, resolveBackoff } from './backoff.js'
import { Emitter } from './emitter.js'
import { RallyClientError, RallyError } from './errors.js'
import type {
  AnySchema,
  ChannelData,
  ChannelName,
  RpcMethod,
  RpcParams,
  RpcResultOf,
  SchemaOf,
} from './schema.js'
import {
  type CallOptions,
  Subscription,
  type SubscriptionHost,
  type SubscriptionOptions,
} from './subscription.js'
import type { Transport, TransportClose, TransportFactory, WebSocketConstructor } from './transport.js'
import { defaultTransports, resolveTransports, type TransportName } from './transports/index.js'
import { rememberedTransport, rememberTransport } from './transports/memory.js'
import { DEFAULT_PROBE_INTERVAL, probeTransport } from './transports/probe.js'

export type ConnectionState = 'disconnected' | 'connecting' | 'connected' | 'closed'

/** Why a connection ended (from the server's disconnect advice, the close code, or the client). */
export interface DisconnectReason {
  code: number
  reason: string
  /** Whether the client will try again. */
  reconnect: boolean
}

export interface ClientEvents {
  state: { state: ConnectionState; previous: ConnectionState; reason?: DisconnectReason }
  connecting: { attempt: number }
  connected: { client: string; transport: string; ping: number }
  /** The connection ended; another attempt follows after `delay` ms. */
  disconnected: DisconnectReason & { delay: number }
  /** The client stopped for good: close() or a terminal refusal. */
  closed: DisconnectReason
  /** Something went wrong that no call is waiting for (a malformed server message, getToken failing). */
  error: { error: Error }
}

export interface QueueOptions {
  /** Most calls waiting for a connection. Default 1000. */
  maxCount?: number
  /** Most bytes of serialised calls waiting for a connection. Default 1 MiB. */
  maxBytes?: number
}

export interface RallyClientOptions {
  /** The token sent in `connect`. */
  token?: string
  /**
   * Asked for a token when there is none, and again once when the server refuses the current
   * one (unauthorized or expired) or before it expires.
   */
  getToken?: () => string | Promise<string>
  /**
   * The WebSocket constructor; default the runtime's global one. In Node 20, which has none, pass
   * Rally's (`import { WebSocket } from 'rallyjs'`); without it the default transports start with SSE.
   */
  WebSocket?: WebSocketConstructor
  /**
   * Transports, in order of preference. Default `['websocket', 'sse', 'long-polling']`. A server
   * serves them all under one URL; a runtime with no WebSocket (and none passed) leaves
   * 'websocket' out of the default. One that fails before it connects gives way to the next for the following
   * attempt, until one connects; that one is kept. Names or factories; `['sse']` forces one,
   * `['websocket']` restricts the client to WebSocket (a server that serves nothing else).
   */
  transports?: (TransportName | TransportFactory)[]
  /** Backoff between reconnection attempts; `false` never reconnects. */
  reconnect?: BackoffOptions | false
  queue?: QueueOptions
  /** Default timeout of a call (publish, RPC, presence, history), waiting included. Default 10000 ms. */
  timeout?: number
  /** Time from opening a transport to the connect reply. Default 10000 ms. */
  connectTimeout?: number
  /**
   * How long the client tolerates silence from the server, given the server's ping interval.
   * Default protocol.ts's `silenceLimit` (two intervals plus a margin: one lost ping is tolerated).
   */
  silenceLimit?: (ping: number) => number
  /**
   * Ms between probes of the first of `transports` while connected over a later one (a
   * fallback); when a probe gets a connect reply, the client moves back to it (subscriptions
   * recover across the switch). Default 60000; false never probes. The first probe after landing
   * on a fallback runs at once.
   */
  probeInterval?: number | false
  /** The clock, for tests. Default Date.now. */
  now?: () => number
}

const DEFAULT_TIMEOUT = 10_000
const DEFAULT_CONNECT_TIMEOUT = 10_000
const DEFAULT_QUEUE_COUNT = 1000
const DEFAULT_QUEUE_BYTES = 1024 * 1024
/** Ask for a new token this long before the current one expires (bounded by half its life). */
const TOKEN_REFRESH_AHEAD = 10_000
/** WebSocket close code for a connection that ended without a close frame (RFC 6455 7.1.5). */
const ABNORMAL_CLOSURE = 1006

type CallKind = 'publish' | 'rpc' | 'read'

/** A call from the app: queued while disconnected, in flight while connected. */
interface Call {
  readonly kind: CallKind
  /** Order of creation: a call put back after a lost connection keeps its place. */
  readonly sequence: number
  /** The serialised command without its id (ids are per connection). */
  readonly json: string
  readonly bytes: number
  readonly resolve: (result: unknown) => void
  readonly reject: (error: Error) => void
  readonly timeout: number
  timer: ReturnType<typeof setTimeout> | undefined
  /** The id of the command on the current connection, while in flight. */
  id: number | undefined
  done: boolean
}

/** One physical connection: everything that dies with it. */
interface Link {
  readonly transport: Transport
  readonly transportName: string
  nextId: number
  connected: boolean
  /** Replies awaited on this connection, by command id. */
  readonly replies: Map<number, (reply: Reply) => void>
  silenceTimer: ReturnType<typeof setTimeout> | undefined
  silenceLimit: number
  /** When the last message arrived (Date.now()): the silence timer measures from here. */
  lastMessageAt: number
  connectTimer: ReturnType<typeof setTimeout> | undefined
  refreshTimer: ReturnType<typeof setTimeout> | undefined
  /** The server's disconnect advice, when it sent one before closing. */
  advice: DisconnectReason | undefined
  /** The transport opened (a failure before that may mean this transport cannot work here). */
  opened: boolean
  /**
   * A server message arrived (a refused connect, a disconnect push): frames flow both ways, so a
   * failure of this connection is not this transport's and must not move the client to another.
   */
  heard: boolean
  /** While on a fallback transport: the next probe of the preferred one, or the probe running. */
  probeTimer?: ReturnType<typeof setTimeout> | undefined
  probe?: { cancel(): void } | undefined
}

let instanceCounter = 0

export class RallyClient<Schema = AnySchema> extends Emitter<ClientEvents> {
  readonly url: string
  private _state: ConnectionState = 'disconnected'
  private readonly transports: TransportFactory[]
  private readonly backoff: ResolvedBackoff | undefined
  private readonly options: RallyClientOptions
  private readonly now: () => number
  private readonly maxQueueCount: number
  private readonly maxQueueBytes: number
  private readonly defaultTimeout: number
  private link: Link | undefined
  private token: string | undefined
  /** A refusal already led to a fresh token: a second one is terminal. */
  private retriedWithFreshToken = false
  private attempt = 0
  private connectedAt: number | undefined
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined
  /** Increments on every attempt, so that a late getToken answer for an old one is ignored. */
  private generation = 0
  private _clientId: string | undefined
  private readonly subscriptions = new Map<string, Subscription<unknown>>()
  private readonly subscribeRetryTimers = new Map<string, ReturnType<typeof setTimeout>>()
  private readonly queue: Call[] = []
  private queuedBytes = 0
  private readonly inFlight = new Map<number, Call>()
  private callSequence = 0
  /** A prefix unique to this client instance, for publish keys that stay unique across reconnections. */
  private readonly keyPrefix: string
  private keyCounter = 0
  private browserListeners: (() => void) | undefined
  /** Which of `transports` the next attempt uses. */
  private transportIndex = 0
  /** The transport that connected, once one has: kept from then on. */
  private workingTransport: number | undefined
  /** A probe moved the client back to the first transport, which has not connected since. */
  private movedByProbe = false

  constructor(url: string, options: RallyClientOptions = {}) {
    super()
    this.url = url
    this.options = options
    this.token = options.token
    this.now = options.now ?? Date.now
    this.transports =
      options.transports === undefined
        ? defaultTransports(options.WebSocket)
        : resolveTransports(options.transports, options.WebSocket)
    if (this.transports.length === 0) throw new TypeError('RallyClient needs at least one transport')
    // Start with the transport that last worked here, sparing the failures before it.
    const remembered = this.transports.length > 1 ? rememberedTransport(url) : undefined
    const rememberedIndex = this.transports.findIndex((factory) => factory.name === remembered)
    if (rememberedIndex > 0) this.transportIndex = rememberedIndex
    this.backoff = options.reconnect === false ? undefined : resolveBackoff(options.reconnect)
    this.maxQueueCount = options.queue?.maxCount ?? DEFAULT_QUEUE_COUNT
    this.maxQueueBytes = options.queue?.maxBytes ?? DEFAULT_QUEUE_BYTES
    this.defaultTimeout = options.timeout ?? DEFAULT_TIMEOUT
    this.keyPrefix = randomPrefix()
  }

  get state(): ConnectionState {
    return this._state
  }

  /** The server's id for the current (or last) connection. */
  /** The name of the transport of the current connection ('websocket', 'sse'…), once it connected. */
  get transport(): string | undefined {
    return this.link?.connected === true ? this.link.transportName : undefined
  }

  get clientId(): string | undefined {
    return this._clientId
  }

  /** Calls waiting for a connection: count and serialised bytes. */
  get queued(): { count: number; bytes: number } {
    return { count: this.queue.length, bytes: this.queuedBytes }
  }

  // ------------------------------------------------------------------ public API

  /** Starts connecting (and keeps reconnecting until close()). Idempotent. */
  connect(): void {
    if (this._state === 'connecting' || this._state === 'connected') return
    if (this._state === 'disconnected' && this.reconnectTimer !== undefined) {
      this.reconnectNow()
      return
    }
    this.attempt = 0
    this.retriedWithFreshToken = false
    this.listenToBrowser()
    this.startAttempt()
  }

  /**
   * Stops for good: closes the connection, rejects every waiting call (`closed`). Subscriptions
   * are kept and resubscribed (with recovery) if connect() is called again.
   */
  close(): void {
    this.stop({ code: 1000, reason: 'client closed', reconnect: false }, 'close() was called')
  }

  /**
   * The subscription to a channel, created and subscribed on first use; the same object
   * afterwards (its options are those of the first call).
   */
  channel<Name extends ChannelName<SchemaOf<Schema>>>(
    name: Name,
    options?: SubscriptionOptions,
  ): Subscription<ChannelData<SchemaOf<Schema>, Name>> {
    let subscription = this.subscriptions.get(name)
    if (subscription === undefined) {
      subscription = new Subscription<unknown>(this.host, name, options)
      this.subscriptions.set(name, subscription)
      subscription.subscribe()
    }
    return subscription as Subscription<ChannelData<SchemaOf<Schema>, Name>>
  }

  /** The existing subscription to a channel, if any. */
  getChannel<Name extends ChannelName<SchemaOf<Schema>>>(
    name: Name,
  ): Subscription<ChannelData<SchemaOf<Schema>, Name>> | undefined {
    return this.subscriptions.get(name) as Subscription<ChannelData<SchemaOf<Schema>, Name>> | undefined
  }

  /** Publishes to a channel (no subscription needed); resolves with the offset and epoch. */
  publish<Name extends ChannelName<SchemaOf<Schema>>>(
    channel: Name,
    data: ChannelData<SchemaOf<Schema>, Name>,
    options?: CallOptions,
  ): Promise<PublishResult> {
    return this.host.publish(channel, data, options)
  }

  /** Calls a server RPC method; resolves with its result. */
  rpc<Method extends RpcMethod<SchemaOf<Schema>>>(
    method: Method,
    data: RpcParams<SchemaOf<Schema>, Method>,
    options?: CallOptions,
  ): Promise<RpcResultOf<SchemaOf<Schema>, Method>> {
    const body: Record<string, unknown> = { cmd: 'rpc', method }
    if (data !== undefined) body.data = data
    return this.call<RpcResult>('rpc', body, options).then(
      (result) => result.data as RpcResultOf<SchemaOf<Schema>, Method>,
    )
  }

  // ------------------------------------------------------------------ the subscriptions' view

  private readonly host: SubscriptionHost = {
    isConnected: () => this.link?.connected === true,
    sendSubscribe: (subscription) => this.sendSubscribe(subscription),
    sendUnsubscribe: (channel) => {
      this.clearSubscribeRetry(channel)
      this.sendInternal({ cmd: 'unsubscribe', channel }, () => {})
    },
    resync: (subscription) => {
      if (this.link?.connected !== true) return
      this.sendInternal({ cmd: 'unsubscribe', channel: subscription.channel }, () => {})
      this.sendSubscribe(subscription)
    },
    retrySubscribeLater: (subscription) => this.retrySubscribeLater(subscription),
    forget: (subscription) => {
      this.clearSubscribeRetry(subscription.channel)
      if (this.subscriptions.get(subscription.channel) === subscription) {
        this.subscriptions.delete(subscription.channel)
      }
    },
    publish: (channel, data, options) =>
      this.call<PublishResult>('publish', { cmd: 'publish', channel, data, key: this.nextKey() }, options),
    read: <Result>(body: Record<string, unknown>, options?: CallOptions) =>
      this.call<Result>('read', body, options),
  }

  private nextKey(): string {
    this.keyCounter++
    return `${this.keyPrefix}-${this.keyCounter.toString(36)}`
  }

  // ------------------------------------------------------------------ connecting

  private startAttempt(): void {
    this.clearReconnectTimer()
    const generation = ++this.generation
    this.setState('connecting')
    this.emit('connecting', { attempt: this.attempt })
    if (this.token === undefined && this.options.getToken !== undefined) {
      void this.fetchToken().then(
        (token) => {
          if (generation !== this.generation || this._state !== 'connecting') return
          this.token = token
          this.openTransport()
        },
        (error: unknown) => {
          if (generation !== this.generation || this._state !== 'connecting') return
          const message = error instanceof Error ? error.message : String(error)
          this.emit('error', { error: new Error(`getToken failed: ${message}`) })
          this.connectionEnded({
            code: ABNORMAL_CLOSURE,
            reason: `getToken failed: ${message}`,
            reconnect: true,
          })
        },
      )
      return
    }
    this.openTransport()
  }

  private async fetchToken(): Promise<string> {
    const token = await this.options.getToken!()
    if (typeof token !== 'string') throw new TypeError('getToken must return a string')
    return token
  }

  private openTransport(): void {
    const factory = this.transports[this.transportIndex]!
    const link: Link = {
      transport: undefined as unknown as Transport,
      transportName: factory.name,
      nextId: 1,
      connected: false,
      replies: new Map(),
      silenceTimer: undefined,
      silenceLimit: 0,
      lastMessageAt: 0,
      connectTimer: undefined,
      refreshTimer: undefined,
      advice: undefined,
      opened: false,
      heard: false,
    }
    this.link = link
    const connectTimeout = this.options.connectTimeout ?? DEFAULT_CONNECT_TIMEOUT
    link.connectTimer = setTimeout(() => {
      if (this.link !== link) return
      this.dropLink({
        code: ABNORMAL_CLOSURE,
        reason: `no connect reply within ${connectTimeout} ms`,
        reconnect: true,
      })
    }, connectTimeout)
    ;(link as { transport: Transport }).transport = factory.open(this.url, {
      onOpen: () => {
        if (this.link !== link) return
        link.opened = true
        this.sendConnect(link)
      },
      onMessage: (text) => {
        if (this.link === link) this.receive(link, text)
      },
      onClose: (info) => {
        if (this.link === link) this.transportClosed(link, info)
      },
    })
  }

  private sendConnect(link: Link): void {
    const command: Record<string, unknown> = { cmd: 'connect', version: PROTOCOL_VERSION }
    if (this.token !== undefined) command.token = this.token
    if (this._clientId !== undefined) command.session = this._clientId
    this.sendOn(link, command, (reply) => {
      if ('error' in reply) {
        this.connectRefused(reply.error)
        return
      }
      this.connected(link, reply.result as ConnectResult)
    })
  }

  private connected(link: Link, result: ConnectResult): void {
    clearTimer(link.connectTimer)
    link.connectTimer = undefined
    link.connected = true
    // The first connection over a fallback probes the preferred transport at once: the fallback
    // may have been reached through a stale remembered transport, or through a WebSocket attempt
    // made while the server was restarting, and a path that works should not wait probeInterval.
    // Not after a probe's move failed, though: a path that lets probes through and then fails
    // would otherwise make the client flap between transports.
    const probeNow = this.workingTransport === undefined && !this.movedByProbe
    if (this.transportIndex === 0) this.movedByProbe = false
    this.workingTransport = this.transportIndex
    if (this.transports.length > 1) rememberTransport(this.url, link.transportName)
    if (this.transportIndex > 0) this.scheduleProbe(link, probeNow)
    this._clientId = result.client
    this.connectedAt = this.now()
    this.retriedWithFreshToken = false
    const ping = typeof result.ping === 'number' && result.ping > 0 ? result.ping : 25_000
    link.silenceLimit = (this.options.silenceLimit ?? defaultSilenceLimit)(ping)
    link.lastMessageAt = Date.now()
    this.armSilenceTimer(link, link.silenceLimit)
    if (typeof result.expires === 'number' && this.options.getToken !== undefined) {
      this.scheduleTokenRefresh(link, result.expires)
    }
    this.setState('connected')
    this.emit('connected', { client: result.client, transport: link.transportName, ping })
    // Subscriptions first, so that their recovery starts before queued publishes add to channels.
    for (const subscription of this.subscriptions.values()) {
      if (this.link !== link) return
      if (subscription.isWanted) this.sendSubscribe(subscription)
    }
    this.flushQueue()
  }

  private connectRefused(error: ErrorBody): void {
    const reason = `connect refused: ${error.message} (${error.code})`
    if (error.code === ErrorCode.Unauthorized) {
      this.dropLink({ code: DisconnectCode.Unauthorized, reason, reconnect: false })
    } else if (error.code === ErrorCode.TokenExpired) {
      this.dropLink({ code: DisconnectCode.TokenExpired, reason, reconnect: true })
    } else if (error.code === ErrorCode.UnsupportedVersion) {
      this.dropLink({ code: DisconnectCode.UnsupportedVersion, reason, reconnect: false })
    } else if (error.code === ErrorCode.BadRequest) {
      // The server found our connect malformed: retrying the same command cannot help.
      this.dropLink({ code: DisconnectCode.BadRequest, reason, reconnect: false })
    } else {
      this.dropLink({ code: ABNORMAL_CLOSURE, reason, reconnect: true })
    }
  }

  private scheduleTokenRefresh(link: Link, expiresIn: number): void {
    const ahead = Math.min(TOKEN_REFRESH_AHEAD, expiresIn / 2)
    link.refreshTimer = setTimeout(
      () => {
        if (this.link !== link || !link.connected) return
        this.fetchToken().then(
          (token) => {
            if (this.link !== link || !link.connected) return
            this.token = token
            this.sendOn(link, { cmd: 'refresh', token }, (reply) => {
              if ('error' in reply) {
                // The server will not take the new token on this connection: reconnect with it.
                this.dropLink({
                  code: DisconnectCode.TokenExpired,
                  reason: 'token refresh refused',
                  reconnect: true,
                })
                return
              }
              const expires = (reply.result as { expires?: number }).expires
              if (typeof expires === 'number') this.scheduleTokenRefresh(link, expires)
            })
          },
          (error: unknown) => {
            const message = error instanceof Error ? error.message : String(error)
            this.emit('error', { error: new Error(`getToken failed: ${message}`) })
          },
        )
      },
      Math.max(0, expiresIn - ahead),
    )
  }

  // ------------------------------------------------------------------ receiving

  private receive(link: Link, text: string): void {
    // Any message proves the path alive, not only pings. Only the time is noted here (no timer
    // churn per message); the timer, when it fires, measures from the last message.
    link.lastMessageAt = Date.now()
    link.heard = true
    const decoded = decodeServerMessage(text)
    if (!decoded.ok) {
      this.emit('error', { error: new Error(`ignored a malformed server message: ${decoded.error.message}`) })
      return
    }
    const message = decoded.value
    if (isReply(message)) {
      const handler = link.replies.get(message.id)
      if (handler === undefined) return
      link.replies.delete(message.id)
      handler(message)
      return
    }
    this.handlePush(link, message as Push)
  }

  private handlePush(link: Link, push: Push): void {
    switch (push.push) {
      case 'ping':
        link.transport.send(encodeCommand({ cmd: 'pong' }))
        return
      case 'pub':
        this.subscriptions.get(push.channel)?.publication(push)
        return
      case 'join':
        this.subscriptions.get(push.channel)?.join(push)
        return
      case 'leave':
        this.subscriptions.get(push.channel)?.leave(push)
        return
      case 'unsubscribed':
        this.subscriptions.get(push.channel)?.serverUnsubscribed(push)
        return
      case 'disconnect':
        // The server is closing this connection and says whether to come back: act now rather
        // than wait for a close that a broken path might never deliver.
        link.advice = { code: push.code, reason: push.reason, reconnect: push.reconnect }
        this.dropLink(link.advice)
        return
    }
  }

  private armSilenceTimer(link: Link, delay: number): void {
    link.silenceTimer = setTimeout(() => {
      if (this.link !== link) return
      const silent = Date.now() - link.lastMessageAt
      if (silent < link.silenceLimit) {
        this.armSilenceTimer(link, link.silenceLimit - silent)
        return
      }
      this.dropLink({
        code: DisconnectCode.HeartbeatTimeout,
        reason: `no message from the server for ${link.silenceLimit} ms`,
        reconnect: true,
      })
    }, delay)
  }

  // ------------------------------------------------------------------ losing the connection

  /**
   * A transport that never worked for this client and failed before opening (a proxy that
   * refuses WebSockets, a runtime without it) gives way to the next one in `transports` for the
   * next attempt; one that has connected once is kept, since its later failures are the network's.
   */
  private chooseNextTransport(link: Link): void {
    // Opened without a connect reply counts as a failure too: a buffering proxy lets a socket
    // open and then holds back its frames. A reply, even a refusal (an expired token), proves the
    // path: moving on would strand the client on a fallback until the next probe.
    if (link.connected || link.heard || this.transports.length < 2 || this.workingTransport !== undefined)
      return
    this.transportIndex = (this.transportIndex + 1) % this.transports.length
  }

  private transportClosed(link: Link, info: TransportClose): void {
    this.chooseNextTransport(link)
    const reason: DisconnectReason = link.advice ?? {
      code: info.code,
      reason: info.reason || (info.failedToOpen ? 'could not connect' : 'connection closed'),
      reconnect: mayReconnect(info.code),
    }
    this.teardownLink(link)
    this.connectionEnded(reason)
  }

  /** Drops the current connection at once (dead path, refusal, timeout) and decides what next. */
  private dropLink(reason: DisconnectReason): void {
    const link = this.link
    if (link === undefined) return
    this.chooseNextTransport(link)
    this.teardownLink(link)
    link.transport.close(reason.code >= 4000 && reason.code <= 4999 ? reason.code : 1000)
    this.connectionEnded(reason)
  }

  /** Forgets a connection: timers, awaited replies; calls in flight are put back or rejected. */
  /** On a fallback: try the preferred transport now and then, and move back when it works. */
  private scheduleProbe(link: Link, now = false): void {
    const interval = this.options.probeInterval ?? DEFAULT_PROBE_INTERVAL
    if (interval === false) return
    const delay = now ? 0 : interval
    link.probeTimer = setTimeout(() => {
      if (this.link !== link) return
      const timeout = this.options.connectTimeout ?? DEFAULT_CONNECT_TIMEOUT
      const probe = probeTransport(this.transports[0]!, this.url, timeout, this.token)
      link.probe = probe
      void probe.result.then((works) => {
        link.probe = undefined
        if (this.link !== link) return
        // An RPC in flight would be lost with the connection (it may or may not have run):
        // switch only between them, so that the app sees nothing but a recovered resubscribe.
        const rpcInFlight = [...this.inFlight.values()].some((call) => call.kind === 'rpc')
        if (!works || rpcInFlight) {
          this.scheduleProbe(link)
          return
        }
        this.transportIndex = 0
        this.workingTransport = undefined
        this.movedByProbe = true
        this.dropLink({
          code: 1000,
          reason: `moving to ${this.transports[0]!.name}, which works again`,
          reconnect: true,
        })
      })
    }, delay)
  }

  private teardownLink(link: Link): void {
    if (this.link === link) this.link = undefined
    clearTimer(link.silenceTimer)
    clearTimer(link.connectTimer)
    clearTimer(link.refreshTimer)
    clearTimer(link.probeTimer)
    link.probe?.cancel()
    link.replies.clear()
    const lost = [...this.inFlight.values()].sort((a, b) => b.sequence - a.sequence)
    this.inFlight.clear()
    for (const call of lost) {
      call.id = undefined
      if (call.kind === 'rpc') {
        this.settle(
          call,
          new RallyClientError(
            'connection_lost',
            'the connection dropped before the RPC reply arrived: it may or may not have run',
          ),
        )
      } else {
        // Publishes carry their key (the server drops a repeat) and reads are harmless to
        // repeat: back to the front of the queue, in their original order.
        this.queue.unshift(call)
        this.queuedBytes += call.bytes
      }
    }
    for (const timer of this.subscribeRetryTimers.values()) clearTimer(timer)
    this.subscribeRetryTimers.clear()
    for (const subscription of this.subscriptions.values()) subscription.connectionLost('disconnected')
  }

  /** After a connection ended (or an attempt failed): reconnect with backoff, or stop. */
  private connectionEnded(ended: DisconnectReason): void {
    let reason = ended
    if (this._state === 'closed') return
    if (this.connectedAt !== undefined && this.backoff !== undefined) {
      // A connection that lasted counts as stable: the next attempts start from the shortest delay.
      if (this.now() - this.connectedAt >= this.backoff.stableAfter) this.attempt = 0
    }
    this.connectedAt = undefined
    const tokenProblem =
      reason.code === DisconnectCode.Unauthorized || reason.code === DisconnectCode.TokenExpired
    if (tokenProblem) {
      if (this.options.getToken !== undefined && !this.retriedWithFreshToken) {
        // Ask the app for a new token and try once more at once; a second refusal is terminal.
        this.retriedWithFreshToken = true
        this.token = undefined
        this.scheduleReconnect({ ...reason, reconnect: true }, 0)
        return
      }
      // Without a way to get another token, the same one would be refused again and again.
      reason = { ...reason, reconnect: false }
    }
    if (!reason.reconnect || this.backoff === undefined) {
      this.stop({ ...reason, reconnect: false }, `the client stopped: ${reason.reason} (${reason.code})`)
      return
    }
    const delay = backoffDelay(this.attempt, this.backoff)
    this.attempt++
    this.scheduleReconnect(reason, delay)
  }

  private scheduleReconnect(reason: DisconnectReason, delay: number): void {
    this.setState('disconnected', reason)
    this.emit('disconnected', { ...reason, delay })
    this.clearReconnectTimer()
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined
      this.startAttempt()
    }, delay)
  }

  private reconnectNow(): void {
    if (this._state !== 'disconnected' || this.reconnectTimer === undefined) return
    this.clearReconnectTimer()
    this.startAttempt()
  }

  private stop(reason: DisconnectReason, callMessage: string): void {
    if (this._state === 'closed') return
    this.generation++
    this.clearReconnectTimer()
    const link = this.link
    if (link !== undefined) {
      this.teardownLink(link)
      link.transport.close(1000)
    }
    this.connectedAt = undefined
    for (const call of [...this.queue]) this.settle(call, new RallyClientError('closed', callMessage))
    this.queue.length = 0
    this.queuedBytes = 0
    this.unlistenToBrowser()
    this.setState('closed', reason)
    this.emit('closed', reason)
  }

  private clearReconnectTimer(): void {
    clearTimer(this.reconnectTimer)
    this.reconnectTimer = undefined
  }

  private setState(state: ConnectionState, reason?: DisconnectReason): void {
    if (this._state === state) return
    const previous = this._state
    this._state = state
    this.emit('state', reason === undefined ? { state, previous } : { state, previous, reason })
  }

  // ------------------------------------------------------------------ subscriptions

  private sendSubscribe(subscription: Subscription<unknown>): void {
    const link = this.link
    if (link === undefined || !link.connected) return
    this.clearSubscribeRetry(subscription.channel)
    const fields = subscription.subscribeCommand()
    const attempt = subscription.subscribeAttempts
    this.sendOn(link, { cmd: 'subscribe', ...fields }, (reply) => {
      if (this.subscriptions.get(subscription.channel) !== subscription) return
      if (subscription.subscribeAttempts !== attempt) return
      if ('error' in reply) subscription.refused(new RallyError(reply.error))
      else
        subscription.subscribed(reply.result as SubscribeResult, fields.since as StreamPosition | undefined)
    })
  }

  private retrySubscribeLater(subscription: Subscription<unknown>): void {
    const channel = subscription.channel
    this.clearSubscribeRetry(channel)
    const delay = this.backoff === undefined ? 1000 : backoffDelay(1, this.backoff)
    this.subscribeRetryTimers.set(
      channel,
      setTimeout(() => {
        this.subscribeRetryTimers.delete(channel)
        if (this.subscriptions.get(channel) === subscription && subscription.isWanted) {
          this.sendSubscribe(subscription)
        }
      }, delay),
    )
  }

  private clearSubscribeRetry(channel: string): void {
    const timer = this.subscribeRetryTimers.get(channel)
    if (timer === undefined) return
    clearTimer(timer)
    this.subscribeRetryTimers.delete(channel)
  }

  // ------------------------------------------------------------------ calls

  private call<Result>(
    kind: CallKind,
    body: Record<string, unknown>,
    options?: CallOptions,
  ): Promise<Result> {
    return new Promise<Result>((resolve, reject) => {
      if (this._state === 'closed') {
        reject(new RallyClientError('closed', 'the client is closed: call connect() first'))
        return
      }
      let json: string
      try {
        json = JSON.stringify(body)
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error)
        reject(new RallyClientError('invalid', `data is not JSON-serialisable: ${message}`))
        return
      }
      const timeout = options?.timeout ?? this.defaultTimeout
      const call: Call = {
        kind,
        sequence: ++this.callSequence,
        json,
        bytes: utf8Length(json),
        resolve: resolve as (result: unknown) => void,
        reject,
        timeout,
        timer: undefined,
        id: undefined,
        done: false,
      }
      if (this.link?.connected === true && this.queue.length === 0) {
        this.armCallTimer(call)
        if (this.sendCall(call)) return
        // The transport is closing (its close event has not arrived yet): wait for the next one.
        this.queue.push(call)
        this.queuedBytes += call.bytes
        return
      }
      if (call.bytes > this.maxQueueBytes) {
        reject(
          new RallyClientError(
            'invalid',
            `the call is ${call.bytes} bytes, more than the whole queue holds (${this.maxQueueBytes})`,
          ),
        )
        return
      }
      if (this.queue.length >= this.maxQueueCount || this.queuedBytes + call.bytes > this.maxQueueBytes) {
        reject(
          new RallyClientError(
            'queue_full',
            `the queue of calls waiting for a connection is full (${this.queue.length} calls, ${this.queuedBytes} bytes; limits ${this.maxQueueCount} calls, ${this.maxQueueBytes} bytes)`,
          ),
        )
        return
      }
      this.armCallTimer(call)
      this.queue.push(call)
      this.queuedBytes += call.bytes
    })
  }

  private armCallTimer(call: Call): void {
    call.timer = setTimeout(() => {
      call.timer = undefined
      if (call.done) return
      const queuedAt = this.queue.indexOf(call)
      if (queuedAt >= 0) {
        this.queue.splice(queuedAt, 1)
        this.queuedBytes -= call.bytes
        this.settle(
          call,
          new RallyClientError(
            'timeout',
            `no connection within ${call.timeout} ms: the ${call.kind} was not sent`,
          ),
        )
        return
      }
      if (call.id !== undefined) {
        this.inFlight.delete(call.id)
        this.link?.replies.delete(call.id)
      }
      this.settle(
        call,
        new RallyClientError(
          'timeout',
          `no reply within ${call.timeout} ms: the ${call.kind} was sent and may still have been applied`,
        ),
      )
    }, call.timeout)
  }

  private flushQueue(): void {
    while (this.queue.length > 0) {
      const link = this.link
      if (link === undefined || !link.connected) return
      const call = this.queue[0]!
      // A transport that is closing takes nothing: the call stays first in line for the next one.
      if (!this.sendCall(call)) return
      this.queue.shift()
      this.queuedBytes -= call.bytes
    }
  }

  /** Sends a call on the current connection; false (nothing sent) when the transport is closing. */
  private sendCall(call: Call): boolean {
    const link = this.link!
    const id = link.nextId++
    if (!link.transport.send(withId(id, call.json))) return false
    call.id = id
    this.inFlight.set(id, call)
    link.replies.set(id, (reply) => {
      this.inFlight.delete(id)
      if ('error' in reply) this.settle(call, new RallyError(reply.error))
      else this.settle(call, undefined, reply.result)
    })
    return true
  }

  private settle(call: Call, error: Error | undefined, result?: unknown): void {
    if (call.done) return
    call.done = true
    clearTimer(call.timer)
    call.timer = undefined
    if (error !== undefined) call.reject(error)
    else call.resolve(result)
  }

  /** Sends a command of the client's own (subscribe, unsubscribe) on the current connection. */
  private sendInternal(body: Record<string, unknown>, onReply: (reply: Reply) => void): void {
    const link = this.link
    if (link === undefined || !link.connected) return
    this.sendOn(link, body, onReply)
  }

  private sendOn(link: Link, body: Record<string, unknown>, onReply: (reply: Reply) => void): void {
    const id = link.nextId++
    link.replies.set(id, onReply)
    link.transport.send(withId(id, JSON.stringify(body)))
  }

  // ------------------------------------------------------------------ browser hints

  /** `online` and page visibility regained cut a backoff short (browsers only). */
  private listenToBrowser(): void {
    if (this.browserListeners !== undefined) return
    const target = globalThis as {
      addEventListener?: (type: string, listener: () => void) => void
      removeEventListener?: (type: string, listener: () => void) => void
      document?: { visibilityState?: string; addEventListener?: Function; removeEventListener?: Function }
    }
    if (typeof target.addEventListener !== 'function' || typeof target.removeEventListener !== 'function')
      return
    const onOnline = (): void => this.reconnectNow()
    const onVisibility = (): void => {
      if (target.document?.visibilityState === 'visible') this.reconnectNow()
    }
    target.addEventListener('online', onOnline)
    const documentTarget = target.document
    if (documentTarget !== undefined && typeof documentTarget.addEventListener === 'function') {
      documentTarget.addEventListener('visibilitychange', onVisibility)
    }
    this.browserListeners = () => {
      target.removeEventListener!('online', onOnline)
      if (documentTarget !== undefined && typeof documentTarget.removeEventListener === 'function') {
        documentTarget.removeEventListener('visibilitychange', onVisibility)
      }
    }
  }

  private unlistenToBrowser(): void {
    this.browserListeners?.()
    this.browserListeners = undefined
  }
}

/** Puts a per-connection id at the front of a serialised command (`{"cmd":…}` → `{"id":7,"cmd":…}`). */
function withId(id: number, json: string): string {
  return `{"id":${id},${json.slice(1)}`
}

function clearTimer(timer: ReturnType<typeof setTimeout> | undefined): void {
  if (timer !== undefined) clearTimeout(timer)
}

/** UTF-8 length of a string without encoding it. */
function utf8Length(text: string): number {
  let bytes = 0
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i)
    if (code < 0x80) bytes += 1
    else if (code < 0x800) bytes += 2
    else if (code >= 0xd800 && code <= 0xdbff && i + 1 < text.length) {
      // A surrogate pair is one 4-byte character.
      bytes += 4
      i++
    } else bytes += 3
  }
  return bytes
}

/** A prefix for publish keys, unique per client instance (crypto where available). */
function randomPrefix(): string {
  const crypto = (globalThis as { crypto?: { getRandomValues?: (array: Uint32Array) => Uint32Array } }).crypto
  const words = new Uint32Array(3)
  if (crypto?.getRandomValues !== undefined) crypto.getRandomValues(words)
  else for (let i = 0; i < words.length; i++) words[i] = Math.floor(Math.random() * 2 ** 32)
  instanceCounter++
  return `${Array.from(words, (word) => word.toString(36)).join('')}${instanceCounter.toString(36)}`
}

export type { CommandResults }
