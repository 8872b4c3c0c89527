/**
 * The realtime core of one node: channels on the bus, fan-out to sessions, the recovery seam,
 * presence, publish deduplication, RPC. Sessions (session.ts) reach it through `SessionCore`;
 * transports reach it through the sessions they drive and the broadcasters they register.
 *
 * Fan-out. The node subscribes to the bus once per channel. Each publication is turned into its
 * `pub` envelope once (the data is already JSON text from the bus), handed once to every
 * broadcaster (a Rally server publishing a topic: framed once for all its WebSocket subscribers)
 * and sent to sessions whose transport cannot share a frame.
 *
 * The recovery seam. A subscribing session first *holds* the live publications that arrive while
 * its history is read; then, in one synchronous step, its reply goes out (with the missed
 * publications), the held ones newer than the history follow, and the session joins the live
 * fan-out. When the history read saw publications the node has not been delivered yet, the
 * session waits in *catch-up*: deliveries up to the last offset it already has are skipped for
 * it, and it joins the fan-out right after that offset. Either way each offset reaches it once.
 */
import type { Bus, BusPublication, HistoryPolicy, PresenceMember, StreamPosition } from '../pubsub/bus.js'
import { ChannelRules, isStandardSchema, RealtimeError, type StandardSchema, validate } from './channels.js'
import {
  DisconnectCode,
  ErrorCode,
  encodePubPush,
  type HistoryResult,
  type Member,
  type PresenceCountResult,
  type PresenceResult,
  type Pub,
  type PublishResult,
  type SubscribeResult,
  UnsubscribeCode,
} from './protocol.js'
import type {
  Authentication,
  HeartbeatOptions,
  RealtimeLimits,
  RealtimeSession,
  SessionCore,
} from './session.js'

/** What the app decides per channel name pattern. */
export interface ChannelRule<Data = unknown> {
  /** Who may subscribe (and read presence and history). Default: every connected client. */
  subscribe?: (session: RealtimeSession, channel: string) => boolean | Promise<boolean>
  /**
   * Client publishes: false (default: only the server publishes), true (any subscriber or not),
   * or a function deciding per publication (after schema validation).
   */
  publish?: boolean | ((session: RealtimeSession, channel: string, data: Data) => boolean | Promise<boolean>)
  /** Keep history for recovery and `history` queries: most publications and ms kept. Default none. */
  history?: HistoryPolicy
  /** Track who is subscribed; allows `presence`, `presence_count` and join/leave pushes. Default false. */
  presence?: boolean
  /** Validates client (and server) publications; invalid ones are refused with 112 and the field. */
  schema?: StandardSchema<unknown, Data>
}

/** An RPC handler, or a handler with a schema for its parameters. */
export type RpcHandler<Params = unknown, Result = unknown> =
  | ((session: RealtimeSession, data: Params) => Result | Promise<Result>)
  | {
      schema: StandardSchema<unknown, Params>
      handler: (session: RealtimeSession, data: Params) => Result | Promise<Result>
    }

/** Something that can send one envelope to every WebSocket session of a channel at once. */
export interface Broadcaster {
  broadcast(channel: string, envelope: string): void
}

export interface CoreOptions {
  bus: Bus
  channels: Readonly<Record<string, ChannelRule<never>>>
  rpc: Readonly<Record<string, RpcHandler<never, unknown>>>
  authenticate:
    | ((
        request: unknown,
        token: string | undefined,
        session: RealtimeSession,
      ) => Authentication | Promise<Authentication>)
    | undefined
  limits: RealtimeLimits
  heartbeat: HeartbeatOptions
  /** Ms between presence refreshes on the bus (its entries expire unless refreshed). */
  presenceRefresh: number
  onError: (error: unknown, session?: RealtimeSession) => void
}

/** A held publication, with its envelope when it has been built. */
interface Held {
  publication: BusPublication
  envelope: string
}

/** One channel on this node. */
class ChannelHub {
  readonly name: string
  readonly rule: ChannelRule
  /** Settles once the bus subscription and the baseline position are in place. */
  ready: Promise<void> | undefined
  /** The last offset this node passed on (or knew to be covered by history). */
  delivered = 0
  epoch = ''
  /** Deliveries that arrived before the baseline was known. */
  stash: BusPublication[] | undefined = []
  /** Every session subscribed or subscribing (reference count of the bus subscription). */
  readonly sessions = new Set<RealtimeSession>()
  /** Live sessions on a broadcaster. */
  readonly broadcast = new Set<RealtimeSession>()
  /** Live sessions whose transport gets each envelope through `send`. */
  readonly direct = new Set<RealtimeSession>()
  /** Subscribing sessions holding live publications while their history is read. */
  readonly holders = new Set<Held[]>()
  /** Sessions that already have every offset up to the value, waiting to join the fan-out. */
  readonly catchingUp = new Map<RealtimeSession, number>()
  /** Subscribing sessions a gap came upon: reset as soon as their subscribe has its reply. */
  readonly resetOnReply = new Map<RealtimeSession, string>()
  /** Sessions in this channel's presence (joined on the bus by this node). */
  readonly present = new Set<RealtimeSession>()
  /** Live sessions that asked for join and leave pushes. */
  readonly joinLeave = new Set<RealtimeSession>()
  stopBus: (() => Promise<void>) | undefined
  stopEvents: (() => Promise<void>) | undefined
  closed = false

  constructor(name: string, rule: ChannelRule) {
    this.name = name
    this.rule = rule
  }
}

const encoder = new TextEncoder()

/** Idempotency windows kept for clients gone (until they reconnect or the window expires). */
const MAX_DETACHED_DEDUP = 10_000

export class RealtimeCore implements SessionCore {
  readonly limits: RealtimeLimits
  readonly heartbeat: HeartbeatOptions
  readonly bus: Bus
  readonly sessions = new Set<RealtimeSession>()
  /** Connected sessions by client id. */
  readonly clients = new Map<string, RealtimeSession>()
  readonly broadcasters = new Set<Broadcaster>()
  private readonly rules: ChannelRules<ChannelRule>
  private readonly rpcHandlers: Map<string, RpcHandler>
  private readonly options: CoreOptions
  private readonly channels = new Map<string, ChannelHub>()
  /** Idempotency windows of connected clients, and of clients gone within the window. */
  private readonly dedup = new Map<string, DedupWindow>()
  private readonly detachedDedup = new Map<string, { window: DedupWindow; user: string; at: number }>()
  /** The `info` JSON of each connected client's publications, built once. */
  private readonly publisherInfo = new WeakMap<RealtimeSession, string>()
  private lastPresenceRefresh = 0

  constructor(options: CoreOptions) {
    this.options = options
    this.bus = options.bus
    this.limits = options.limits
    this.heartbeat = options.heartbeat
    this.rules = new ChannelRules(options.channels as unknown as Record<string, ChannelRule>)
    this.rpcHandlers = new Map(Object.entries(options.rpc as unknown as Record<string, RpcHandler>))
    // A bus that may have missed deliveries: the channels' subscribers resubscribe from their
    // positions and recover the missed publications from history (or learn they cannot).
    this.bus.onGap((channels) => {
      for (const channel of channels) {
        const hub = this.channels.get(channel)
        if (hub !== undefined) this.resetChannel(hub, 'deliveries may have been missed')
      }
    })
    for (const [method, handler] of this.rpcHandlers) {
      if (
        typeof handler !== 'function' &&
        !(isStandardSchema(handler.schema) && typeof handler.handler === 'function')
      )
        throw new TypeError(`createRealtime: rpc.${method} must be a function or { schema, handler }`)
    }
  }

  /** The rule for a channel name (undefined: UnknownChannel). */
  rule(channel: string): ChannelRule | undefined {
    return this.rules.match(channel)
  }

  // --- SessionCore ------------------------------------------------------------------------

  async authenticate(session: RealtimeSession, token: string | undefined): Promise<Authentication> {
    const hook = this.options.authenticate
    if (hook === undefined) return { user: '' }
    const outcome = await hook(session.request, token, session)
    if (outcome === null || typeof outcome !== 'object')
      throw new TypeError('authenticate must return an object')
    if (!('refuse' in outcome) && typeof outcome.user !== 'string')
      throw new TypeError('authenticate must return { user: string, info? } or { refuse: reason }')
    return outcome
  }

  /** A transport opened a session: it must connect within the connect timeout. */
  opened(session: RealtimeSession): void {
    this.pendingSessions.add(session)
  }

  connected(session: RealtimeSession, previous: string | undefined): void {
    this.pendingSessions.delete(session)
    this.sessions.add(session)
    this.clients.set(session.client, session)
    // A client reconnecting names its previous client id: its publish keys carry over, so a
    // retried publish is not published twice — for the same user only.
    let window: DedupWindow | undefined
    if (previous !== undefined) {
      const detached = this.detachedDedup.get(previous)
      if (detached !== undefined && detached.user === session.user) {
        this.detachedDedup.delete(previous)
        window = detached.window
      } else {
        // The previous connection may not have been noticed dead yet: share its window.
        const owner = this.clients.get(previous)
        if (owner !== undefined && owner.user === session.user) window = this.dedup.get(previous)
      }
    }
    // Otherwise the window is made on the first keyed publish.
    if (window !== undefined) this.dedup.set(session.client, window)
  }

  async subscribe(
    session: RealtimeSession,
    channel: string,
    since: StreamPosition | undefined,
    joinLeave: boolean,
    ready: (result: SubscribeResult) => void,
  ): Promise<void> {
    const rule = this.ruleOrThrow(channel)
    // This subscription, as the session holds it: an unsubscribe (and a new subscribe) while
    // this one awaits replaces it, and this one must then leave no trace.
    const mine = session.subscriptions.get(channel)
    const wanted = () => !session.isClosed && session.subscriptions.get(channel) === mine
    await this.checkSubscribe(session, channel, rule)
    if (joinLeave && rule.presence !== true)
      throw new RealtimeError(ErrorCode.NotAvailable, 'join and leave need presence on this channel')
    if (!wanted()) return
    const hub = this.hubFor(channel, rule)
    hub.sessions.add(session)
    const held: Held[] = []
    hub.holders.add(held)
    let joined = false
    let history: Awaited<ReturnType<Bus['history']>>
    try {
      await hub.ready
      if (rule.presence === true && wanted()) {
        await this.join(hub, session)
        joined = true
      }
      history = await this.bus.history(
        channel,
        since === undefined ? { limit: 0 } : { since, limit: this.limits.historyLimit },
      )
    } catch (error) {
      hub.holders.delete(held)
      if (wanted()) this.release(hub, session)
      throw error
    }
    hub.holders.delete(held)
    if (!wanted()) {
      // Released meanwhile; a presence entry made after that release would be a ghost.
      if (joined) this.leave(hub, session)
      return
    }
    // From here to the end: one synchronous step (see the module comment).
    const latest = history.latest
    const result: SubscribeResult = { offset: latest.offset, epoch: latest.epoch }
    if (since !== undefined) {
      const recovered = history.complete && since.epoch === latest.epoch
      result.recovered = recovered
      result.publications = recovered ? history.publications.map(toPub) : []
    }
    ready(result)
    let have = latest.offset
    for (const item of held) {
      if (item.publication.offset <= have) continue
      session.send(item.envelope)
      have = item.publication.offset
    }
    if (joinLeave) hub.joinLeave.add(session)
    if (have <= hub.delivered) this.attachLive(hub, session)
    else hub.catchingUp.set(session, have)
    const reset = hub.resetOnReply.get(session)
    if (reset !== undefined) {
      hub.resetOnReply.delete(session)
      session.send(reset)
      this.release(hub, session)
      session.subscriptions.delete(hub.name)
    }
  }

  unsubscribe(session: RealtimeSession, channel: string): void {
    const hub = this.channels.get(channel)
    if (hub?.sessions.has(session)) this.release(hub, session)
  }

  async publish(
    session: RealtimeSession,
    channel: string,
    data: unknown,
    key: string | undefined,
  ): Promise<PublishResult> {
    if (key !== undefined) {
      let window = this.dedup.get(session.client)
      if (window === undefined) {
        window = new DedupWindow(this.limits.dedupKeys, this.limits.dedupTtl)
        this.dedup.set(session.client, window)
      }
      const keys = window
      const earlier = keys.get(key, Date.now())
      if (earlier !== undefined) return earlier
      const attempt = this.clientPublish(session, channel, data, key)
      keys.set(key, attempt, Date.now())
      // A refused or failed publish did not happen: a retry with the same key may try again.
      attempt.catch(() => keys.delete(key, attempt))
      return attempt
    }
    return this.clientPublish(session, channel, data)
  }

  async rpc(session: RealtimeSession, method: string, data: unknown): Promise<unknown> {
    const handler = this.rpcHandlers.get(method)
    if (handler === undefined)
      throw new RealtimeError(ErrorCode.MethodNotFound, `method not found: ${method}`)
    if (typeof handler === 'function') return handler(session, data)
    return handler.handler(session, await validate(handler.schema, data))
  }

  async presence(session: RealtimeSession, channel: string): Promise<PresenceResult> {
    await this.checkPresence(session, channel)
    const members = await this.bus.members(channel)
    return { members: members.map(toMember) }
  }

  async presenceCount(session: RealtimeSession, channel: string): Promise<PresenceCountResult> {
    await this.checkPresence(session, channel)
    return { count: await this.bus.memberCount(channel) }
  }

  async history(
    session: RealtimeSession,
    channel: string,
    since: StreamPosition | undefined,
    limit: number | undefined,
  ): Promise<HistoryResult> {
    const rule = this.ruleOrThrow(channel)
    if (rule.history === undefined || rule.history.size <= 0)
      throw new RealtimeError(ErrorCode.NotAvailable, 'this channel keeps no history')
    if (session.subscriptions.get(channel)?.state !== 'live')
      await this.checkSubscribe(session, channel, rule)
    return this.readHistory(channel, since, limit)
  }

  closed(session: RealtimeSession): void {
    this.pendingSessions.delete(session)
    if (!this.sessions.delete(session)) return
    if (this.clients.get(session.client) === session) this.clients.delete(session.client)
    for (const channel of session.subscriptions.keys()) {
      const hub = this.channels.get(channel)
      if (hub?.sessions.has(session)) this.release(hub, session)
    }
    session.subscriptions.clear()
    const window = this.dedup.get(session.client)
    this.dedup.delete(session.client)
    if (window !== undefined && window.size > 0) {
      this.detachedDedup.set(session.client, { window, user: session.user, at: Date.now() })
      // Bounded in count as well as in time: connections churning faster than the window
      // expires cannot grow it without limit (the oldest go first).
      if (this.detachedDedup.size > MAX_DETACHED_DEDUP) {
        const oldest = this.detachedDedup.keys().next().value
        if (oldest !== undefined) this.detachedDedup.delete(oldest)
      }
    }
  }

  /** The app ends a client's subscription: an `unsubscribed` push, then nothing more. */
  serverUnsubscribe(session: RealtimeSession, channel: string, reason: string): boolean {
    if (!session.subscriptions.has(channel)) return false
    const hub = this.channels.get(channel)
    if (hub?.sessions.has(session)) this.release(hub, session)
    session.subscriptions.delete(channel)
    session.send(
      JSON.stringify({
        push: 'unsubscribed',
        channel,
        code: UnsubscribeCode.Server,
        reason,
        resubscribe: false,
      }),
    )
    return true
  }

  reportError(error: unknown, session?: RealtimeSession): void {
    this.options.onError(error, session)
  }

  // --- for the server API -------------------------------------------------------------------

  /** A server publish: validated like a client's when the channel has a schema. */
  async serverPublish(channel: string, data: unknown): Promise<PublishResult> {
    const rule = this.rule(channel)
    let value = data
    if (rule?.schema !== undefined) value = await validate(rule.schema, data)
    const text = JSON.stringify(value)
    if (text === undefined) throw new TypeError('realtime.publish: data must be JSON-serialisable')
    const request = rule?.history === undefined ? { data: text } : { data: text, history: rule.history }
    const position = await this.bus.publish(channel, request)
    return { offset: position.offset, epoch: position.epoch }
  }

  async readHistory(
    channel: string,
    since: StreamPosition | undefined,
    limit: number | undefined,
  ): Promise<HistoryResult> {
    const max = this.limits.historyLimit
    const capped = Math.min(limit ?? max, max)
    const result = await this.bus.history(
      channel,
      since === undefined ? { limit: capped } : { since, limit: capped },
    )
    return {
      publications: result.publications.map(toPub),
      offset: result.latest.offset,
      epoch: result.latest.epoch,
      complete: result.complete,
    }
  }

  /**
   * Time passes (called by the server's timer): sessions' heartbeats and deadlines, presence
   * refreshes on the bus, forgetting idempotency windows of clients gone for long enough.
   */
  tick(now: number): void {
    for (const session of this.sessions) session.tick(now)
    for (const session of this.pendingSessions) session.tick(now)
    if (now - this.lastPresenceRefresh >= this.options.presenceRefresh) {
      this.lastPresenceRefresh = now
      this.refreshPresence()
    }
    for (const [client, detached] of this.detachedDedup) {
      if (now - detached.at < this.limits.dedupTtl) break
      this.detachedDedup.delete(client)
    }
  }

  /** Sessions not connected yet (their connect timeout still runs). */
  readonly pendingSessions = new Set<RealtimeSession>()

  /** Disconnects every session (server shutting down): 4001, reconnect elsewhere. */
  disconnectAll(code: DisconnectCode = DisconnectCode.GoingAway): void {
    for (const session of [...this.sessions, ...this.pendingSessions]) session.disconnect(code)
  }

  // --- channels -----------------------------------------------------------------------------

  private hubFor(channel: string, rule: ChannelRule): ChannelHub {
    const existing = this.channels.get(channel)
    if (existing !== undefined) return existing
    const hub = new ChannelHub(channel, rule)
    this.channels.set(channel, hub)
    hub.ready = this.startHub(hub)
    // A failure is reported to each subscriber through its own await; the hub is dropped.
    hub.ready.catch(() => {
      if (this.channels.get(channel) === hub) this.channels.delete(channel)
      hub.closed = true
    })
    return hub
  }

  private async startHub(hub: ChannelHub): Promise<void> {
    const stop = await this.bus.subscribe(hub.name, (publication) => this.deliver(hub, publication))
    hub.stopBus = stop
    if (hub.rule.presence === true) {
      hub.stopEvents = await this.bus.listen(hub.name, (event) => this.presenceEvent(hub, event.data))
    }
    // The baseline: publications up to here are history's business, later ones the bus delivers.
    const baseline = await this.bus.history(hub.name, { limit: 0 })
    hub.delivered = baseline.latest.offset
    hub.epoch = baseline.latest.epoch
    const stash = hub.stash ?? []
    hub.stash = undefined
    for (const publication of stash) this.deliver(hub, publication)
    if (hub.closed) await this.stopHub(hub)
  }

  private deliver(hub: ChannelHub, publication: BusPublication): void {
    if (hub.stash !== undefined) {
      hub.stash.push(publication)
      return
    }
    if (hub.closed || publication.offset <= hub.delivered) return
    if (publication.epoch !== hub.epoch) {
      // The bus lost this channel's history (a broker flushed): every subscriber must recover.
      this.resetChannel(hub, 'the channel history was reset')
      return
    }
    hub.delivered = publication.offset
    const envelope = encodePubPush(
      hub.name,
      publication.offset,
      publication.epoch,
      publication.data,
      publication.info,
    )
    if (hub.broadcast.size > 0)
      for (const broadcaster of this.broadcasters) broadcaster.broadcast(hub.name, envelope)
    for (const session of hub.direct) session.send(envelope)
    for (const held of hub.holders) held.push({ publication, envelope })
    for (const [session, have] of hub.catchingUp) {
      if (publication.offset < have) continue
      // Up to `have` the session has it already; past it (a publication the history read did
      // not see), it gets this one here. Either way, the next ones come with everybody's.
      if (publication.offset > have) session.send(envelope)
      hub.catchingUp.delete(session)
      this.attachLive(hub, session)
    }
  }

  /** The session receives the channel's next publications (called within the seam's step). */
  private attachLive(hub: ChannelHub, session: RealtimeSession): void {
    const transport = session.transport
    if (transport.joinBroadcast !== undefined) {
      transport.joinBroadcast(hub.name)
      hub.broadcast.add(session)
    } else {
      hub.direct.add(session)
    }
  }

  private release(hub: ChannelHub, session: RealtimeSession): void {
    hub.sessions.delete(session)
    hub.joinLeave.delete(session)
    hub.catchingUp.delete(session)
    hub.resetOnReply.delete(session)
    hub.direct.delete(session)
    if (hub.broadcast.delete(session)) session.transport.leaveBroadcast?.(hub.name)
    if (hub.rule.presence === true) this.leave(hub, session)
    if (hub.sessions.size === 0) {
      hub.closed = true
      if (this.channels.get(hub.name) === hub) this.channels.delete(hub.name)
      if (hub.stash === undefined) void this.stopHub(hub)
    }
  }

  private async stopHub(hub: ChannelHub): Promise<void> {
    try {
      await hub.stopBus?.()
      await hub.stopEvents?.()
    } catch (error) {
      this.reportError(error)
    }
  }

  /** Ends every subscription of a channel whose history was lost; clients resubscribe and recover. */
  private resetChannel(hub: ChannelHub, reason: string): void {
    const envelope = JSON.stringify({
      push: 'unsubscribed',
      channel: hub.name,
      code: UnsubscribeCode.Resubscribe,
      reason,
      resubscribe: true,
    })
    for (const session of [...hub.sessions]) {
      // A subscribe still in flight is reset once it has its reply: resetting it now would turn
      // that reply into an error the client does not retry, and its history read may predate
      // the gap.
      if (session.subscriptions.get(hub.name)?.state !== 'live') {
        hub.resetOnReply.set(session, envelope)
        continue
      }
      session.send(envelope)
      this.release(hub, session)
      session.subscriptions.delete(hub.name)
    }
  }

  // --- presence -----------------------------------------------------------------------------

  private memberOf(session: RealtimeSession): PresenceMember {
    return session.info === undefined
      ? { client: session.client, user: session.user }
      : { client: session.client, user: session.user, info: session.info }
  }

  private async join(hub: ChannelHub, session: RealtimeSession): Promise<void> {
    hub.present.add(session)
    const member = this.memberOf(session)
    await this.bus.join(hub.name, member)
    await this.bus.emit({ channel: hub.name, data: JSON.stringify({ type: 'join', member }) })
  }

  private leave(hub: ChannelHub, session: RealtimeSession): void {
    // Only a member that joined leaves: no leave push for a subscription that never got that far.
    if (!hub.present.delete(session)) return
    const member = this.memberOf(session)
    const done = this.bus
      .leave(hub.name, session.client)
      .then(() => this.bus.emit({ channel: hub.name, data: JSON.stringify({ type: 'leave', member }) }))
    done.catch((error: unknown) => this.reportError(error))
  }

  private presenceEvent(hub: ChannelHub, data: string): void {
    if (hub.joinLeave.size === 0) return
    let event: { type?: unknown; member?: unknown }
    try {
      event = JSON.parse(data) as typeof event
    } catch {
      return
    }
    if ((event.type !== 'join' && event.type !== 'leave') || typeof event.member !== 'object') return
    const envelope = `{"push":${JSON.stringify(event.type)},"channel":${JSON.stringify(hub.name)},"member":${JSON.stringify(event.member)}}`
    for (const session of hub.joinLeave) session.send(envelope)
  }

  private refreshPresence(): void {
    for (const hub of this.channels.values()) {
      if (hub.rule.presence !== true) continue
      for (const session of hub.present) {
        this.bus.join(hub.name, this.memberOf(session)).catch((error: unknown) => this.reportError(error))
      }
    }
  }

  // --- checks -------------------------------------------------------------------------------

  private ruleOrThrow(channel: string): ChannelRule {
    const rule = this.rules.match(channel)
    if (rule === undefined) throw new RealtimeError(ErrorCode.UnknownChannel, `unknown channel: ${channel}`)
    return rule
  }

  private async checkSubscribe(session: RealtimeSession, channel: string, rule: ChannelRule): Promise<void> {
    if (rule.subscribe === undefined) return
    if ((await rule.subscribe(session, channel)) !== true)
      throw new RealtimeError(ErrorCode.PermissionDenied, `may not subscribe to ${channel}`)
  }

  private async checkPresence(session: RealtimeSession, channel: string): Promise<void> {
    const rule = this.ruleOrThrow(channel)
    if (rule.presence !== true)
      throw new RealtimeError(ErrorCode.NotAvailable, 'this channel has no presence')
    if (session.subscriptions.get(channel)?.state !== 'live')
      await this.checkSubscribe(session, channel, rule)
  }

  private async clientPublish(
    session: RealtimeSession,
    channel: string,
    data: unknown,
    key?: string,
  ): Promise<PublishResult> {
    const rule = this.ruleOrThrow(channel)
    if (rule.publish === undefined || rule.publish === false)
      throw new RealtimeError(ErrorCode.PermissionDenied, 'client publishes are not allowed on this channel')
    let value = data
    if (rule.schema !== undefined) value = await validate(rule.schema, data)
    if (typeof rule.publish === 'function' && (await rule.publish(session, channel, value)) !== true)
      throw new RealtimeError(ErrorCode.PermissionDenied, `may not publish to ${channel}`)
    const text = JSON.stringify(value)
    if (encoder.encode(text).length > this.limits.maxMessageSize)
      throw new RealtimeError(ErrorCode.MessageTooBig, `data larger than ${this.limits.maxMessageSize} bytes`)
    let info = this.publisherInfo.get(session)
    if (info === undefined) {
      // Built on the first publish and kept: a publishing client's info is the same every time.
      info = JSON.stringify(this.memberOf(session))
      this.publisherInfo.set(session, info)
    }
    const position = await this.bus.publish(channel, {
      data: text,
      ...(info === undefined ? {} : { info }),
      // The bus keeps the key too, so that a retry through another node (whose window above
      // never saw it) is not published twice; scoped by user, as the window is.
      ...(key === undefined ? {} : { id: JSON.stringify([session.user, key]) }),
      ...(rule.history === undefined ? {} : { history: rule.history }),
    })
    return { offset: position.offset, epoch: position.epoch }
  }
}

/** Publish results by idempotency key, oldest first, bounded in count and age. */
class DedupWindow {
  private readonly entries = new Map<string, { at: number; result: Promise<PublishResult> }>()
  private readonly maxKeys: number
  private readonly ttl: number

  constructor(maxKeys: number, ttl: number) {
    this.maxKeys = maxKeys
    this.ttl = ttl
  }

  get size(): number {
    return this.entries.size
  }

  get(key: string, now: number): Promise<PublishResult> | undefined {
    this.expire(now)
    return this.entries.get(key)?.result
  }

  set(key: string, result: Promise<PublishResult>, now: number): void {
    this.entries.set(key, { at: now, result })
    while (this.entries.size > this.maxKeys) {
      const oldest = this.entries.keys().next().value
      if (oldest === undefined) break
      this.entries.delete(oldest)
    }
  }

  delete(key: string, result: Promise<PublishResult>): void {
    if (this.entries.get(key)?.result === result) this.entries.delete(key)
  }

  private expire(now: number): void {
    for (const [key, entry] of this.entries) {
      if (now - entry.at < this.ttl) break
      this.entries.delete(key)
    }
  }
}

function toPub(publication: BusPublication): Pub {
  const pub: Pub = {
    channel: publication.channel,
    offset: publication.offset,
    epoch: publication.epoch,
    data: JSON.parse(publication.data),
  }
  if (publication.info !== undefined) pub.info = JSON.parse(publication.info) as Member
  return pub
}

function toMember(member: PresenceMember): Member {
  return member.info === undefined
    ? { client: member.client, user: member.user }
    : { client: member.client, user: member.user, info: member.info }
}
