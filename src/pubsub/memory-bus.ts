/**
 * MemoryBus: the embedded cluster bus for one process — the default of `createRealtime`.
 *
 * Everything lives in this object: offsets, history, presence. Its epoch is a random id made
 * when the bus is created, so a restarted process (a new MemoryBus) has a new epoch, and a client
 * resubscribing with a position from before the restart is told `recovered: false` instead of
 * being handed offsets that mean something else now.
 *
 * Deliveries are synchronous, in offset order, through one queue: a listener that publishes
 * from inside a delivery has its publication delivered after the current one has reached every
 * listener, so every listener sees offsets in order. There is no broker connection to lose, so
 * `onGap` never fires and `status` is always `up`.
 *
 * Idempotency ids (`PublishRequest.id`) are remembered in a window bounded in time (`dedupTtl`)
 * and in count (`dedupKeys`, the oldest forgotten first), so that no publisher can grow it.
 */
import type {
  Bus,
  BusEvent,
  BusPublication,
  HistoryPolicy,
  HistoryQuery,
  HistoryResult,
  PresenceMember,
  PublishRequest,
  StreamPosition,
  Unsubscribe,
} from './bus.js'
import { BusSignals, DEFAULT_DEDUP_TTL_MS } from './bus-support.js'

export interface MemoryBusOptions {
  /** Ms a presence entry lives unless `join` refreshes it. Default 60000. */
  presenceTtl?: number
  /**
   * Most publications kept per channel whatever the channel's policy asks, so that a
   * misconfigured rule cannot grow memory without bound. Default 10000.
   */
  historyCap?: number
  /** Ms a publication's idempotency id is remembered. Default 120000. */
  dedupTtl?: number
  /** Most idempotency ids remembered at once (every channel together). Default 10000. */
  dedupKeys?: number
  /** The clock (ms since the Unix epoch); tests pass their own. Default Date.now. */
  now?: () => number
}

const DEFAULT_PRESENCE_TTL = 60_000
const DEFAULT_HISTORY_CAP = 10_000
const DEFAULT_DEDUP_KEYS = 10_000

interface ChannelState {
  /** The last offset assigned in this bus's epoch (0 before the first publication). */
  offset: number
  /** Kept publications, oldest first, from index `start` (a queue without O(n) shifts). */
  history: BusPublication[]
  start: number
  policy: HistoryPolicy | undefined
  subscribers: Set<(publication: BusPublication) => void>
  listeners: Set<(event: BusEvent) => void>
}

interface PresenceEntry {
  member: PresenceMember
  expires: number
}

export class MemoryBus extends BusSignals implements Bus {
  readonly nodeId: string
  /** This bus's history generation: a new one per instance. */
  readonly epoch: string
  private readonly presenceTtl: number
  private readonly historyCap: number
  private readonly dedupTtl: number
  private readonly dedupKeys: number
  private readonly now: () => number
  private readonly channels = new Map<string, ChannelState>()
  private readonly presence = new Map<string, Map<string, PresenceEntry>>()
  /** Positions by channel and idempotency id, oldest first (a Map keeps insertion order). */
  private readonly published = new Map<string, { position: StreamPosition; at: number }>()
  /** Deliveries waiting their turn (see the module comment). */
  private readonly queue: (() => void)[] = []
  private draining = false
  private closed = false

  constructor(options: MemoryBusOptions = {}) {
    super()
    this.presenceTtl = positive(options.presenceTtl, DEFAULT_PRESENCE_TTL, 'presenceTtl')
    this.historyCap = positive(options.historyCap, DEFAULT_HISTORY_CAP, 'historyCap')
    this.dedupTtl = positive(options.dedupTtl, DEFAULT_DEDUP_TTL_MS, 'dedupTtl')
    this.dedupKeys = positive(options.dedupKeys, DEFAULT_DEDUP_KEYS, 'dedupKeys')
    this.now = options.now ?? Date.now
    this.nodeId = randomId()
    this.epoch = randomId()
  }

  async publish(channel: string, request: PublishRequest): Promise<StreamPosition> {
    this.checkOpen()
    const dedupKey = request.id === undefined ? undefined : `${channel}\n${request.id}`
    if (dedupKey !== undefined) {
      const earlier = this.rememberedPublish(dedupKey)
      if (earlier !== undefined) return earlier
    }
    const state = this.channel(channel)
    state.offset++
    const publication: BusPublication =
      request.info === undefined
        ? { channel, offset: state.offset, epoch: this.epoch, data: request.data, time: this.now() }
        : {
            channel,
            offset: state.offset,
            epoch: this.epoch,
            data: request.data,
            info: request.info,
            time: this.now(),
          }
    if (request.history !== undefined) state.policy = request.history
    this.append(state, publication)
    if (state.subscribers.size > 0) {
      // A copy: a subscriber added during this delivery saw the position after it.
      const subscribers = [...state.subscribers]
      this.enqueue(() => {
        for (const deliver of subscribers) deliver(publication)
      })
    }
    const position = { offset: publication.offset, epoch: this.epoch }
    if (dedupKey !== undefined) this.rememberPublish(dedupKey, position)
    return position
  }

  /** The position published under this channel and id within the window, if any. */
  private rememberedPublish(key: string): StreamPosition | undefined {
    const oldestAllowed = this.now() - this.dedupTtl
    for (const [id, entry] of this.published) {
      if (entry.at > oldestAllowed) break
      this.published.delete(id)
    }
    return this.published.get(key)?.position
  }

  private rememberPublish(key: string, position: StreamPosition): void {
    this.published.set(key, { position, at: this.now() })
    if (this.published.size > this.dedupKeys) {
      const oldest = this.published.keys().next().value
      if (oldest !== undefined) this.published.delete(oldest)
    }
  }

  async subscribe(channel: string, deliver: (publication: BusPublication) => void): Promise<Unsubscribe> {
    return this.attach(channel, (state) => state.subscribers, deliver)
  }

  async history(channel: string, query: HistoryQuery): Promise<HistoryResult> {
    this.checkOpen()
    const state = this.channels.get(channel)
    const latest: StreamPosition = { offset: state?.offset ?? 0, epoch: this.epoch }
    const limit = Math.min(query.limit ?? this.historyCap, this.historyCap)
    if (state === undefined) {
      const since = query.since
      const complete = since === undefined || (since.epoch === this.epoch && since.offset === 0)
      return { publications: [], latest, complete }
    }
    this.trimExpired(state)
    const kept = state.history
    const since = query.since
    if (since === undefined) {
      const from = Math.max(state.start, kept.length - limit)
      return { publications: kept.slice(from), latest, complete: true }
    }
    if (since.epoch !== this.epoch || since.offset > state.offset) {
      // Another bus's offsets (or a position from the future): nothing here continues them.
      return { publications: [], latest, complete: false }
    }
    const oldest = state.start < kept.length ? kept[state.start]!.offset : state.offset + 1
    // Offsets in the queue are consecutive, so the first one after `since` sits at a known index.
    const first = Math.max(state.start, state.start + (since.offset + 1 - oldest))
    const end = Math.min(kept.length, first + limit)
    const publications = kept.slice(first, end)
    const trimmed = oldest > since.offset + 1
    const cut = end < kept.length
    return { publications, latest, complete: !trimmed && !cut }
  }

  async emit(event: BusEvent): Promise<void> {
    this.checkOpen()
    const listeners = this.channels.get(event.channel)?.listeners
    if (listeners === undefined || listeners.size === 0) return
    const copy = [...listeners]
    this.enqueue(() => {
      for (const receive of copy) receive(event)
    })
  }

  async listen(channel: string, receive: (event: BusEvent) => void): Promise<Unsubscribe> {
    return this.attach(channel, (state) => state.listeners, receive)
  }

  /** Adds a receiver to one of the channel's sets (subscribers or listeners); returns its removal. */
  private attach<T>(
    channel: string,
    setOf: (state: ChannelState) => Set<(value: T) => void>,
    receive: (value: T) => void,
  ): Unsubscribe {
    this.checkOpen()
    const state = this.channel(channel)
    // A wrapper per call, so that one function added twice is removed once each.
    const receiver = (value: T) => receive(value)
    setOf(state).add(receiver)
    return async () => {
      setOf(state).delete(receiver)
      this.dropIfUnused(channel, state)
    }
  }

  async join(channel: string, member: PresenceMember): Promise<void> {
    this.checkOpen()
    let members = this.presence.get(channel)
    if (members === undefined) {
      members = new Map()
      this.presence.set(channel, members)
    }
    members.set(member.client, { member, expires: this.now() + this.presenceTtl })
  }

  async leave(channel: string, client: string): Promise<void> {
    this.checkOpen()
    const members = this.presence.get(channel)
    if (members === undefined) return
    members.delete(client)
    if (members.size === 0) this.presence.delete(channel)
  }

  async members(channel: string): Promise<readonly PresenceMember[]> {
    this.checkOpen()
    const members = this.livePresence(channel)
    return members === undefined ? [] : [...members.values()].map((entry) => entry.member)
  }

  async memberCount(channel: string): Promise<number> {
    this.checkOpen()
    return this.livePresence(channel)?.size ?? 0
  }

  async close(): Promise<void> {
    this.closed = true
    this.channels.clear()
    this.presence.clear()
    this.published.clear()
    this.dropListeners()
    this.queue.length = 0
  }

  private checkOpen(): void {
    if (this.closed) throw new Error('MemoryBus is closed')
  }

  private channel(name: string): ChannelState {
    let state = this.channels.get(name)
    if (state === undefined) {
      state = {
        offset: 0,
        history: [],
        start: 0,
        policy: undefined,
        subscribers: new Set(),
        listeners: new Set(),
      }
      this.channels.set(name, state)
    }
    return state
  }

  /** A channel with no history, no subscriber and no listener holds nothing worth keeping... */
  private dropIfUnused(name: string, state: ChannelState): void {
    // ...except its offset: forgetting it would reuse offsets within the same epoch. Channels
    // that have published stay (a few numbers each); only never-published ones are dropped.
    if (state.offset === 0 && state.subscribers.size === 0 && state.listeners.size === 0) {
      this.channels.delete(name)
    }
  }

  private append(state: ChannelState, publication: BusPublication): void {
    const policy = state.policy
    const size = Math.min(policy?.size ?? 0, this.historyCap)
    if (size <= 0) {
      state.history = []
      state.start = 0
      return
    }
    state.history.push(publication)
    if (state.history.length - state.start > size) state.start = state.history.length - size
    this.trimExpired(state)
  }

  /** Drops publications older than the policy's ttl, and compacts the queue now and then. */
  private trimExpired(state: ChannelState): void {
    const ttl = state.policy?.ttl
    const kept = state.history
    if (ttl !== undefined && ttl > 0) {
      const oldestAllowed = this.now() - ttl
      while (state.start < kept.length && kept[state.start]!.time < oldestAllowed) state.start++
    }
    if (state.start > 64 && state.start * 2 > kept.length) {
      state.history = kept.slice(state.start)
      state.start = 0
    }
  }

  private livePresence(channel: string): Map<string, PresenceEntry> | undefined {
    const members = this.presence.get(channel)
    if (members === undefined) return undefined
    const now = this.now()
    for (const [client, entry] of members) if (entry.expires <= now) members.delete(client)
    if (members.size === 0) {
      this.presence.delete(channel)
      return undefined
    }
    return members
  }

  private enqueue(task: () => void): void {
    this.queue.push(task)
    if (this.draining) return
    this.draining = true
    try {
      // A delivery that throws must not stop the others, nor leave the queue stuck.
      for (let task = this.queue.shift(); task !== undefined; task = this.queue.shift()) {
        try {
          task()
        } catch (error) {
          queueMicrotask(() => {
            throw error
          })
        }
      }
    } finally {
      this.draining = false
    }
  }
}

function positive(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback
  if (!Number.isFinite(value) || value <= 0)
    throw new RangeError(`MemoryBus: ${name} must be a positive number`)
  return value
}

/** 128 random bits as hex: unique per bus instance (crypto.getRandomValues, in browsers too). */
function randomId(): string {
  const bytes = new Uint8Array(16)
  globalThis.crypto.getRandomValues(bytes)
  let id = ''
  for (const byte of bytes) id += byte.toString(16).padStart(2, '0')
  return id
}
