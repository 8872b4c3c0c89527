/**
 * One client's realtime session, sans-I/O: envelopes in (`receive`), replies and pushes out
 * (through its transport's `send`), time passed in by the caller (`receive(text, now)`,
 * `tick(now)`). It knows nothing of WebSockets: a WebSocket, an SSE stream with POSTs, or long
 * polling only move envelopes, so each of them drives the same session.
 *
 * The session owns what is per connection: the connect-first rule, the protocol version, rate
 * limits and counts, the heartbeat, its subscriptions' states. What spans connections (channels,
 * the bus, presence, publish deduplication) is the core's (hub.ts), reached through `SessionCore`.
 */
import { RealtimeError } from './channels.js'
import {
  type ConnectCommand,
  type ConnectResult,
  DisconnectCode,
  decodeCommand,
  disconnectPush,
  type ErrorBody,
  ErrorCode,
  encodeServerMessage,
  errorReply,
  PROTOCOL_VERSION,
  type RefreshResult,
  type Reply,
  type RequestCommand,
  type StreamPosition,
  type SubscribeResult,
} from './protocol.js'

/** What carries envelopes to one client. */
export interface SessionTransport {
  /** 'websocket', 'sse', 'long-polling'… (for the app's hooks and logs). */
  readonly kind: string
  /** Sends one envelope (JSON text) to this client, in order with every other. */
  send(envelope: string): void
  /** Ends the connection with a disconnect code (4000–4999) and reason. */
  close(code: number, reason: string): void
  /**
   * Optional: receive a channel's publications through a broadcast prepared once for every
   * subscriber (a WebSocket topic: one frame for all). Transports without it get each
   * publication through `send`. Called in the same synchronous step as the subscribe reply.
   */
  joinBroadcast?(channel: string): void
  leaveBroadcast?(channel: string): void
}

/** Every limit, on by default (docs/realtime.md lists them with their error codes). */
export interface RealtimeLimits {
  /** Subscriptions per connection (including those being set up). 106 beyond. Default 128. */
  channelsPerConnection: number
  /** RPCs in flight per connection. 106 beyond. Default 16. */
  pendingRpcs: number
  /** Commands awaiting their reply per connection. 111 beyond. Default 256. */
  pendingCommands: number
  /** Largest incoming envelope, in UTF-8 bytes. 113 (or disconnect 4504 without an id). Default 65536. */
  maxMessageSize: number
  /** Client publishes per second per connection (bursts of twice that). 111 beyond. Default 20. */
  publishRate: number
  /** Subscribes per second per connection (bursts of `channelsPerConnection`). 111 beyond. Default 32. */
  subscribeRate: number
  /** All commands per second per connection (bursts of twice that). 111 beyond. Default 200. */
  commandRate: number
  /** Rate-refused commands in a row before the connection is closed with 4007. Default 50. */
  floodDisconnect: number
  /** Ms from the transport opening to the `connect` command. 4004 after. Default 10000. */
  connectTimeout: number
  /** Most publications in one history reply or recovery. Default 1000. */
  historyLimit: number
  /** Ms an RPC handler may take before the client gets 114. Default 30000. */
  rpcTimeout: number
  /** Idempotency keys remembered per client, and for how long (ms). Default 1000 keys, 120000 ms. */
  dedupKeys: number
  dedupTtl: number
}

export const DEFAULT_REALTIME_LIMITS: Readonly<RealtimeLimits> = Object.freeze({
  channelsPerConnection: 128,
  pendingRpcs: 16,
  pendingCommands: 256,
  maxMessageSize: 64 * 1024,
  publishRate: 20,
  subscribeRate: 32,
  commandRate: 200,
  floodDisconnect: 50,
  connectTimeout: 10_000,
  historyLimit: 1000,
  rpcTimeout: 30_000,
  dedupKeys: 1000,
  dedupTtl: 120_000,
})

/** The application heartbeat: a `ping` push every `interval` ms; no answer within `timeout` ms → 4002. */
export interface HeartbeatOptions {
  interval: number
  timeout: number
}

export const DEFAULT_HEARTBEAT: Readonly<HeartbeatOptions> = Object.freeze({
  interval: 25_000,
  timeout: 10_000,
})

/** What the authenticate hook decided. */
export type Authentication =
  | { user: string; info?: unknown; expiresAt?: number }
  | { refuse: string; code?: 'unauthorized' | 'token expired' }

/** What a session needs from the realtime core. Every method may throw RealtimeError. */
export interface SessionCore {
  readonly limits: RealtimeLimits
  readonly heartbeat: HeartbeatOptions
  authenticate(session: RealtimeSession, token: string | undefined): Promise<Authentication>
  /** The session's identity is settled (after connect): presence and dedup state attach here. */
  connected(session: RealtimeSession, previous: string | undefined): void
  /**
   * Subscribes, and calls `ready` with the result in the same synchronous step as the session
   * starts receiving live publications (no gap, no duplicate at the seam).
   */
  subscribe(
    session: RealtimeSession,
    channel: string,
    since: StreamPosition | undefined,
    joinLeave: boolean,
    ready: (result: SubscribeResult) => void,
  ): Promise<void>
  unsubscribe(session: RealtimeSession, channel: string): void
  publish(session: RealtimeSession, channel: string, data: unknown, key: string | undefined): Promise<unknown>
  rpc(session: RealtimeSession, method: string, data: unknown): Promise<unknown>
  presence(session: RealtimeSession, channel: string): Promise<unknown>
  presenceCount(session: RealtimeSession, channel: string): Promise<unknown>
  history(
    session: RealtimeSession,
    channel: string,
    since: StreamPosition | undefined,
    limit: number | undefined,
  ): Promise<unknown>
  /** The session is over (closed by either side, connected or not): leave everything. */
  closed(session: RealtimeSession): void
  /** An unexpected error (a bug in a hook, the bus failing): logged, never sent to the client. */
  reportError(error: unknown, session: RealtimeSession): void
}

type SessionState = 'connecting' | 'authenticating' | 'connected' | 'closed'

/** A subscription as its session sees it. */
export interface SessionSubscription {
  /** 'pending' until the subscribe reply is sent, then 'live'. */
  state: 'pending' | 'live'
  joinLeave: boolean
  /** Settles when the subscribe is answered (either way). */
  settled: Promise<void>
}

/** Commands received while `connect` is being authenticated wait, up to this many. */
const MAX_QUEUED_DURING_CONNECT = 256

export class RealtimeSession {
  /** This connection's client id (128 random bits). */
  readonly client: string
  readonly transport: SessionTransport
  /**
   * What the transport knew of the opening request (headers, cookies, URL), for authenticate.
   * Dropped once connected, so that an idle session does not keep its handshake alive.
   */
  request: unknown
  /** The user id the authenticate hook returned ('' until connected, or for anonymous users). */
  user = ''
  /** What the authenticate hook attached. */
  info: unknown
  /** App state for this connection (free to use in hooks). */
  get data(): Record<string, unknown> {
    this.appData ??= {}
    return this.appData
  }
  set data(value: Record<string, unknown>) {
    this.appData = value
  }
  // Made on first use, like the others below: an idle session should cost little memory.
  private appData: Record<string, unknown> | undefined
  /** This session's channels. */
  readonly subscriptions = new Map<string, SessionSubscription>()
  private state: SessionState = 'connecting'
  private readonly core: SessionCore
  private readonly openedAt: number
  private lastPing: number
  private awaitingPongSince: number | undefined
  private expiresAt: number | undefined
  private queued: RequestCommand[] | undefined
  private pendingCommands = 0
  private pendingRpcs = 0
  /** RPC ids in flight and when each times out. */
  private rpcDeadlines: Map<number, number> | undefined
  private rateStrikes = 0
  /** The rate limits' buckets: made by the first command, dropped by tick() once full again. */
  private rates: RateBuckets | undefined

  constructor(core: SessionCore, transport: SessionTransport, request: unknown, now: number) {
    this.core = core
    this.transport = transport
    this.request = request
    this.client = randomClientId()
    this.openedAt = now
    this.lastPing = now
  }

  get isConnected(): boolean {
    return this.state === 'connected'
  }

  get isClosed(): boolean {
    return this.state === 'closed'
  }

  /** One envelope from the client (JSON text). */
  receive(text: string, now: number): void {
    if (this.state === 'closed') return
    // Anything from the client proves the path works: the heartbeat stops waiting.
    this.awaitingPongSince = undefined
    const tooBig = exceedsUtf8(text, this.core.limits.maxMessageSize)
    const decoded = decodeCommand(text)
    if (!decoded.ok) {
      if (tooBig) this.refuseTooBig(decoded.id)
      else this.refuseMalformed(decoded.id, decoded.error)
      return
    }
    const command = decoded.value
    if (tooBig) {
      this.refuseTooBig(command.cmd === 'pong' ? undefined : command.id)
      return
    }
    if (command.cmd === 'pong') return
    if (this.state === 'connecting') {
      if (command.cmd === 'connect') this.connect(command, now)
      else {
        // The first command must be connect (docs/protocol.md): anything else is a client bug.
        this.reply(errorReply(command.id, ErrorCode.BadRequest, 'the first command must be connect'))
        this.disconnect(DisconnectCode.BadRequest, 'the first command must be connect')
      }
      return
    }
    if (this.state === 'authenticating') {
      // A client may send its subscribes right after connect, without waiting: keep them.
      this.queued ??= []
      if (this.queued.length < MAX_QUEUED_DURING_CONNECT) this.queued.push(command)
      else this.disconnect(DisconnectCode.TooManyRequests, 'too many commands before connect finished')
      return
    }
    this.dispatch(command, now)
  }

  /**
   * The passage of time: pings, the heartbeat and connect timeouts, token expiry, RPC
   * deadlines. Call it at least every `min(interval, timeout) / 4` ms.
   */
  tick(now: number): void {
    if (this.state === 'closed') return
    if (this.state !== 'connected') {
      if (now - this.openedAt >= this.core.limits.connectTimeout)
        this.disconnect(DisconnectCode.ConnectTimeout)
      return
    }
    // A session that has been quiet long enough for every bucket to fill up again holds none:
    // a full bucket and no bucket mean the same thing.
    if (this.rates?.full(this.core.limits, now) === true) this.rates = undefined
    if (this.expiresAt !== undefined && now >= this.expiresAt) {
      this.disconnect(DisconnectCode.TokenExpired)
      return
    }
    const { interval, timeout } = this.core.heartbeat
    if (this.awaitingPongSince !== undefined && now - this.awaitingPongSince >= timeout) {
      this.disconnect(DisconnectCode.HeartbeatTimeout)
      return
    }
    if (now - this.lastPing >= interval) {
      this.lastPing = now
      // Anything the client sends clears the wait (receive), so only a silent path times out.
      this.awaitingPongSince ??= now
      this.transport.send('{"push":"ping"}')
    }
    if (this.rpcDeadlines !== undefined && this.rpcDeadlines.size > 0) {
      for (const [id, deadline] of this.rpcDeadlines) {
        if (now < deadline) continue
        this.rpcDeadlines.delete(id)
        // The call no longer counts against either limit: a handler that never settles must not
        // use up the connection's allowance for good.
        this.pendingRpcs--
        this.pendingCommands--
        this.reply(errorReply(id, ErrorCode.Timeout, `no result within ${this.core.limits.rpcTimeout} ms`))
      }
    }
  }

  /** Sends one envelope built elsewhere (a publication, a join) to this client. */
  send(envelope: string): void {
    if (this.state !== 'closed') this.transport.send(envelope)
  }

  /**
   * Ends the session from the server's side: the `disconnect` push, then the transport closes
   * with the same code (docs/protocol.md, "Disconnects").
   */
  disconnect(code: DisconnectCode, reason?: string): void {
    if (this.state === 'closed') return
    const push = disconnectPush(code, reason)
    this.transport.send(encodeServerMessage(push))
    this.finish()
    this.transport.close(push.code, push.reason)
  }

  /** The transport went away on its own (the peer closed, the socket broke). */
  transportClosed(): void {
    this.finish()
  }

  private finish(): void {
    if (this.state === 'closed') return
    this.state = 'closed'
    this.queued = undefined
    this.rpcDeadlines = undefined
    this.core.closed(this)
  }

  private connect(command: ConnectCommand, now: number): void {
    if (command.version !== PROTOCOL_VERSION) {
      // docs/protocol.md, "Versions": an unknown version is refused with 110, then 4503.
      const message = `unsupported protocol version ${command.version}; this server speaks ${PROTOCOL_VERSION}`
      this.reply(errorReply(command.id, ErrorCode.UnsupportedVersion, message))
      this.disconnect(DisconnectCode.UnsupportedVersion)
      return
    }
    this.state = 'authenticating'
    this.core.authenticate(this, command.token).then(
      (outcome) => {
        if (this.state !== 'authenticating') return
        if ('refuse' in outcome) {
          const expired = outcome.code === 'token expired'
          const code = expired ? ErrorCode.TokenExpired : ErrorCode.Unauthorized
          this.reply(errorReply(command.id, code, outcome.refuse))
          this.disconnect(expired ? DisconnectCode.TokenExpired : DisconnectCode.Unauthorized, outcome.refuse)
          return
        }
        this.user = outcome.user
        this.info = outcome.info
        this.request = undefined
        this.expiresAt = outcome.expiresAt
        this.state = 'connected'
        this.core.connected(this, command.session)
        const result: ConnectResult = {
          client: this.client,
          version: PROTOCOL_VERSION,
          ping: this.core.heartbeat.interval,
        }
        if (outcome.expiresAt !== undefined) result.expires = Math.max(0, outcome.expiresAt - now)
        this.reply({ id: command.id, result })
        const queued = this.queued ?? []
        this.queued = undefined
        for (const next of queued) {
          if (this.state !== 'connected') break
          this.dispatch(next, now)
        }
      },
      (error: unknown) => {
        if (this.state !== 'authenticating') return
        this.core.reportError(error, this)
        this.reply(errorReply(command.id, ErrorCode.Internal))
        this.disconnect(DisconnectCode.InternalError)
      },
    )
  }

  private dispatch(command: RequestCommand, now: number): void {
    const id = command.id
    const limits = this.core.limits
    this.rates ??= new RateBuckets(limits, now)
    if (!this.rates.take('command', limits, now)) {
      this.rateRefused(id, 'command rate limit')
      return
    }
    if (this.pendingCommands >= limits.pendingCommands) {
      this.reply(errorReply(id, ErrorCode.TooManyRequests, 'too many commands awaiting a reply'))
      return
    }
    switch (command.cmd) {
      case 'connect':
        this.reply(errorReply(id, ErrorCode.BadRequest, 'already connected'))
        break
      case 'refresh':
        this.rateStrikes = 0
        this.run(id, this.refresh(command.token, now))
        break
      case 'subscribe':
        this.subscribe(id, command.channel, command.since, command.joinLeave === true, now)
        break
      case 'unsubscribe':
        this.rateStrikes = 0
        if (!this.subscriptions.has(command.channel)) {
          this.reply(errorReply(id, ErrorCode.NotSubscribed))
          break
        }
        this.subscriptions.delete(command.channel)
        this.core.unsubscribe(this, command.channel)
        this.reply({ id, result: {} })
        break
      case 'publish':
        if (!this.rates.take('publish', limits, now)) {
          this.rateRefused(id, 'publish rate limit')
          break
        }
        this.rateStrikes = 0
        this.run(id, this.publish(command.channel, command.data, command.key))
        break
      case 'rpc':
        this.rateStrikes = 0
        this.rpc(id, command.method, command.data, now)
        break
      case 'presence':
        this.rateStrikes = 0
        this.run(id, this.core.presence(this, command.channel))
        break
      case 'presence_count':
        this.rateStrikes = 0
        this.run(id, this.core.presenceCount(this, command.channel))
        break
      case 'history':
        this.rateStrikes = 0
        this.run(id, this.core.history(this, command.channel, command.since, command.limit))
        break
    }
  }

  /**
   * A publish sent after a subscribe to the same channel waits for that subscribe: the client
   * then sees its own publication, as the order of its commands says.
   */
  private async publish(channel: string, data: unknown, key: string | undefined): Promise<unknown> {
    const pending = this.subscriptions.get(channel)
    if (pending?.state === 'pending') await pending.settled
    return this.core.publish(this, channel, data, key)
  }

  private async refresh(token: string, now: number): Promise<RefreshResult> {
    const outcome = await this.core.authenticate(this, token)
    if ('refuse' in outcome) {
      const code = outcome.code === 'token expired' ? ErrorCode.TokenExpired : ErrorCode.Unauthorized
      throw new RealtimeError(code, outcome.refuse)
    }
    if (outcome.user !== this.user)
      throw new RealtimeError(ErrorCode.Unauthorized, 'the new token is for another user')
    if (outcome.info !== undefined) this.info = outcome.info
    this.expiresAt = outcome.expiresAt
    return outcome.expiresAt === undefined ? {} : { expires: Math.max(0, outcome.expiresAt - now) }
  }

  private subscribe(
    id: number,
    channel: string,
    since: StreamPosition | undefined,
    joinLeave: boolean,
    now: number,
  ): void {
    const limits = this.core.limits
    // The rate first: a flood is refused before any work, whatever the commands say.
    this.rates ??= new RateBuckets(limits, now)
    if (!this.rates.take('subscribe', limits, now)) {
      this.rateRefused(id, 'subscribe rate limit')
      return
    }
    this.rateStrikes = 0
    if (this.subscriptions.has(channel)) {
      this.reply(errorReply(id, ErrorCode.AlreadySubscribed))
      return
    }
    if (this.subscriptions.size >= limits.channelsPerConnection) {
      const message = `more than ${limits.channelsPerConnection} channels on one connection`
      this.reply(errorReply(id, ErrorCode.LimitExceeded, message))
      return
    }
    let settle = () => {}
    const settled = new Promise<void>((resolve) => {
      settle = resolve
    })
    const subscription: SessionSubscription = { state: 'pending', joinLeave, settled }
    this.subscriptions.set(channel, subscription)
    this.pendingCommands++
    let replied = false
    this.core
      .subscribe(this, channel, since, joinLeave, (result) => {
        replied = true
        subscription.state = 'live'
        this.reply({ id, result })
      })
      .then(
        () => {
          // Finished without a reply: the client unsubscribed (or left) meanwhile.
          if (!replied) this.reply(errorReply(id, ErrorCode.NotSubscribed, 'unsubscribed while subscribing'))
        },
        (error: unknown) => {
          if (this.subscriptions.get(channel) === subscription) this.subscriptions.delete(channel)
          if (!replied) this.replyError(id, error)
        },
      )
      .finally(() => {
        this.pendingCommands--
        settle()
        // The promise and its resolver are done with; a long-lived subscription keeps neither.
        subscription.settled = SETTLED
      })
  }

  private rpc(id: number, method: string, data: unknown, now: number): void {
    const limits = this.core.limits
    if (this.pendingRpcs >= limits.pendingRpcs) {
      this.reply(errorReply(id, ErrorCode.LimitExceeded, `more than ${limits.pendingRpcs} RPCs in flight`))
      return
    }
    this.pendingRpcs++
    this.pendingCommands++
    // The deadline is kept here and checked by tick(): a handler that never settles costs the
    // client a Timeout reply, and its late result is dropped.
    this.rpcDeadlines ??= new Map()
    this.rpcDeadlines.set(id, now + limits.rpcTimeout)
    this.core.rpc(this, method, data).then(
      (result) => {
        if (this.rpcSettled(id)) this.reply({ id, result: { data: result ?? null } })
      },
      (error: unknown) => {
        if (this.rpcSettled(id)) this.replyError(id, error)
      },
    )
  }

  /** Whether the RPC still waits for its answer (it has not timed out). */
  private rpcSettled(id: number): boolean {
    // Already answered with a timeout (and uncounted then), or the session is over.
    if (this.rpcDeadlines?.delete(id) !== true) return false
    this.pendingRpcs--
    this.pendingCommands--
    return true
  }

  private run(id: number, work: Promise<unknown>): void {
    this.pendingCommands++
    work.then(
      (result) => {
        this.pendingCommands--
        this.reply({ id, result: result ?? {} })
      },
      (error: unknown) => {
        this.pendingCommands--
        this.replyError(id, error)
      },
    )
  }

  private replyError(id: number, error: unknown): void {
    if (error instanceof RealtimeError) {
      this.reply(errorReply(id, error.code, error.message, error.field))
      return
    }
    // No internals on the wire: the app's error goes to its error hook, the client gets 100.
    this.core.reportError(error, this)
    this.reply(errorReply(id, ErrorCode.Internal))
  }

  private reply(message: Reply): void {
    if (this.state !== 'closed') this.transport.send(encodeServerMessage(message))
  }

  private rateRefused(id: number, what: string): void {
    this.reply(errorReply(id, ErrorCode.TooManyRequests, what))
    // A client that keeps going after being told to slow down will not stop on its own.
    if (++this.rateStrikes >= this.core.limits.floodDisconnect)
      this.disconnect(DisconnectCode.TooManyRequests)
  }

  private refuseTooBig(id: number | undefined): void {
    if (id === undefined || this.state !== 'connected') {
      this.disconnect(DisconnectCode.MessageTooBig)
      return
    }
    this.reply(
      errorReply(id, ErrorCode.MessageTooBig, `message larger than ${this.core.limits.maxMessageSize} bytes`),
    )
  }

  private refuseMalformed(id: number | undefined, error: ErrorBody): void {
    if (id !== undefined) this.reply({ id, error })
    // With a usable id on a connected session, the reply is enough: one bad command should not
    // cost the client every subscription. Otherwise the peer does not speak the protocol.
    if (id === undefined || this.state !== 'connected')
      this.disconnect(DisconnectCode.BadRequest, error.message.slice(0, 100))
  }
}

const SETTLED: Promise<void> = Promise.resolve()

type RateKind = 'command' | 'publish' | 'subscribe'

/**
 * A session's three rate limits as token buckets (`rate` tokens per second, at most `burst`
 * saved up), in one object with one clock: commands, publishes, subscribes. The rates are read
 * from the limits on each call rather than copied, so that a session holds no copy of them.
 */
class RateBuckets {
  private commands: number
  private publishes: number
  private subscribes: number
  private last: number

  constructor(limits: RealtimeLimits, now: number) {
    this.commands = commandBurst(limits)
    this.publishes = publishBurst(limits)
    this.subscribes = subscribeBurst(limits)
    this.last = now
  }

  take(kind: RateKind, limits: RealtimeLimits, now: number): boolean {
    this.refill(limits, now)
    if (kind === 'command') {
      if (this.commands < 1) return false
      this.commands--
    } else if (kind === 'publish') {
      if (this.publishes < 1) return false
      this.publishes--
    } else {
      if (this.subscribes < 1) return false
      this.subscribes--
    }
    return true
  }

  /** Whether every bucket is full (after refilling up to `now`). */
  full(limits: RealtimeLimits, now: number): boolean {
    this.refill(limits, now)
    return (
      this.commands >= commandBurst(limits) &&
      this.publishes >= publishBurst(limits) &&
      this.subscribes >= subscribeBurst(limits)
    )
  }

  private refill(limits: RealtimeLimits, now: number): void {
    if (now <= this.last) return
    const seconds = (now - this.last) / 1000
    this.last = now
    this.commands = Math.min(commandBurst(limits), this.commands + seconds * limits.commandRate)
    this.publishes = Math.min(publishBurst(limits), this.publishes + seconds * limits.publishRate)
    this.subscribes = Math.min(subscribeBurst(limits), this.subscribes + seconds * limits.subscribeRate)
  }
}

// Bursts: commands and publishes twice their rate; subscribes up to a full set of channels, so
// that a reconnecting client resubscribes at once.
function commandBurst(limits: RealtimeLimits): number {
  return Math.max(1, limits.commandRate * 2)
}
function publishBurst(limits: RealtimeLimits): number {
  return Math.max(1, limits.publishRate * 2)
}
function subscribeBurst(limits: RealtimeLimits): number {
  return Math.max(1, limits.subscribeRate, limits.channelsPerConnection)
}

/** Whether `text` is longer than `max` bytes in UTF-8, without encoding it when it can tell. */
function exceedsUtf8(text: string, max: number): boolean {
  // A UTF-16 code unit takes 1 to 3 UTF-8 bytes (a surrogate pair: 4 for its 2 units).
  if (text.length > max) return true
  if (text.length * 3 <= max) return false
  let bytes = 0
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i)
    if (unit < 0x80) bytes += 1
    else if (unit < 0x800) bytes += 2
    else if (unit >= 0xd800 && unit <= 0xdbff) {
      bytes += 4
      i++
    } else bytes += 3
    if (bytes > max) return true
  }
  return false
}

/**
 * A client id: 128 random bits as 32 hex digits (crypto.getRandomValues: browsers, Node, Bun,
 * Deno, Workers), written as four 32-bit words (fewer intermediate strings than byte by byte).
 */
function randomClientId(): string {
  const words = new Uint32Array(4)
  globalThis.crypto.getRandomValues(words)
  return `${hex8(words[0]!)}${hex8(words[1]!)}${hex8(words[2]!)}${hex8(words[3]!)}`
}

function hex8(word: number): string {
  return word.toString(16).padStart(8, '0')
}
