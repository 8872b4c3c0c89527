/**
 * `rallyjs/nats`: the cluster bus on NATS with JetStream (nats-server 2.9 or later), with
 * `@nats-io/transport-node`, `@nats-io/jetstream` and `@nats-io/kv` (optional peer dependencies
 * imported only here).
 *
 * - **One JetStream stream per channel** keeps its history; the stream's sequence is the
 *   channel's offset, so offsets are 1, 2, 3… per channel with nothing to coordinate (JetStream
 *   assigns sequences one at a time), and trimming by size (`max_msgs`) and age (`max_age`)
 *   never renumbers anything. A shared stream with a per-channel counter (expected last subject
 *   sequence, retried on conflict) would need a read before every write and a counter that
 *   survives trimming; one stream per channel costs a stream per channel instead, which suits
 *   up to some thousands of channels with history.
 * - **Epoch**: the stream's creation time. A stream deleted and created again (a wiped server,
 *   memory storage after a restart) is a new epoch; a restarted server with its file store keeps
 *   the streams, their sequences and their epochs, so recovery then works across the restart.
 * - **Fan-out** over core NATS: after JetStream acknowledges a publication (with its sequence),
 *   the publisher sends it, with offset and epoch, on the channel's core subject, subscribed
 *   per channel with reference counts. Two publishers' core messages can overtake each other, so
 *   each node puts a channel's publications back in offset order, and fetches from the stream
 *   any that core NATS did not bring (a publisher that died between the two steps) after a short
 *   wait; one trimmed away meanwhile is reported as a gap.
 * - **Presence** in a KV bucket: one entry per channel and node holding that node's members,
 *   rewritten on every join and leave and refreshed on a timer; an entry not refreshed within
 *   its time to live (a dead node) is ignored by readers and expires from the bucket.
 * - **Restarts of the NATS server**: the client reconnects and resubscribes; this bus then reads
 *   each subscribed channel's position again and calls the gap listeners with those channels.
 *   `status` is `down` from the client's disconnection until that is done.
 * - **Idempotent publishes** use JetStream's own duplicate detection: a publication's id becomes
 *   its message id (`Nats-Msg-Id`), and within the stream's duplicate window JetStream stores a
 *   repeat once and acknowledges it with the first one's sequence.
 */
import { createHash, randomBytes } from 'node:crypto'
import type { JetStreamClient, JetStreamManager, StreamConfig, StreamInfo } from '@nats-io/jetstream'
import {
  DiscardPolicy,
  JetStreamApiError,
  jetstream,
  jetstreamManager,
  StorageType,
} from '@nats-io/jetstream'
import { type KV, Kvm } from '@nats-io/kv'
import { connect, type NatsConnection, type Subscription } from '@nats-io/transport-node'
import type * as contract from '../../pubsub/bus.js'
import { BrokerBusBase, type BrokerBusOptions, handToAll, joinFeed } from '../../pubsub/bus-support.js'

export interface NatsBusOptions extends BrokerBusOptions {
  /** Server URL(s). Default `nats://127.0.0.1:4222`. Ignored when `connection` is given. */
  readonly servers?: string | string[]
  /** A connection of your own (it is not closed by `close`). */
  readonly connection?: NatsConnection
  /** Prefix of subjects, stream names and the presence bucket. Default `rally`. */
  readonly prefix?: string
  /** Where streams keep history: `file` survives server restarts. Default `file`. */
  readonly storage?: 'file' | 'memory'
  /** Stream replicas in a JetStream cluster. Default 1. */
  readonly replicas?: number
  /**
   * Milliseconds a node waits for a publication that core NATS has not brought (while later ones
   * wait behind it) before reading it from the stream. Default 250.
   */
  readonly fillDelay?: number
  /**
   * Milliseconds between the client's pings to the server; two unanswered ones close the
   * connection (then it reconnects), so a path that went silent without closing is noticed
   * within about three intervals and `status` goes `down`. Default 10 000 (the client's own
   * default is 2 minutes). Ignored when `connection` is given.
   */
  readonly pingInterval?: number
}

const DEFAULT_FILL_DELAY_MS = 250
/** A silent path costs at most about three of these before the bus reports `down`. */
const DEFAULT_PING_INTERVAL_MS = 10_000
/** Stream reads in flight at once for one history request. */
const READ_CONCURRENCY = 64
/** How long, after a reconnect, JetStream may take to serve stream requests again. */
const JETSTREAM_RECOVERY_MS = 15_000
/** Publications a channel may hold back while it waits for an earlier one. */
const MAX_HELD_BACK = 10_000

/**
 * A channel name as one token of subjects, stream names and KV keys: letters, digits, `_` and
 * `-` as they are, every other byte as `=XX` (so `.`, `*`, `>`, spaces and `=` itself never reach
 * NATS, and two names never share a token).
 */
export function channelToken(channel: string): string {
  let token = ''
  for (const byte of Buffer.from(channel, 'utf8')) {
    const isPlain =
      (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a)
    token +=
      isPlain || byte === 0x5f || byte === 0x2d
        ? String.fromCharCode(byte)
        : `=${byte.toString(16).padStart(2, '0')}`
  }
  return token
}

interface StreamState {
  readonly name: string
  epoch: string
  policy: string
  /** The highest sequence this node has seen acknowledged: a lower one means a new stream. */
  lastAcked: number
}

interface Feed {
  readonly receivers: Set<(publication: contract.BusPublication) => void>
  readonly subscription: Subscription
  ready: Promise<void>
  /** False until the channel's position at subscription time is known. */
  positioned: boolean
  early: contract.BusPublication[]
  epoch: string
  /** The next offset to deliver. */
  next: number
  /** Publications that arrived ahead of `next`, by offset. */
  readonly held: Map<number, contract.BusPublication>
  fillTimer: NodeJS.Timeout | undefined
}

interface EventFeed {
  readonly receivers: Set<(event: contract.BusEvent) => void>
  readonly subscription: Subscription
  readonly ready: Promise<void>
}

interface PresenceEntry {
  readonly ttl: number
  readonly members: Record<string, contract.PresenceMember>
}

const encoder = new TextEncoder()

/** The stream's creation time (nanoseconds) as the epoch: digits only, unique per stream. */
function epochOf(info: StreamInfo): string {
  return info.created.replace(/\D/g, '')
}

function policyKey(policy: contract.HistoryPolicy): string {
  return JSON.stringify({
    size: Math.max(0, Math.floor(policy.size)),
    ttl: Math.max(0, Math.floor(policy.ttl)),
  })
}

/** The history size in a stream's description (0 when it is not one of this bus's policies). */
function policySize(description: string): number {
  try {
    const size = (JSON.parse(description) as Partial<contract.HistoryPolicy>).size
    return typeof size === 'number' ? size : 0
  } catch {
    return 0
  }
}

function isNotFound(error: unknown): boolean {
  return error instanceof JetStreamApiError && (error.code === 10059 || error.status === 404)
}

/** The stream's info, or undefined when there is no such stream (other errors are thrown). */
async function streamInfoOrNone(jsm: JetStreamManager, name: string): Promise<StreamInfo | undefined> {
  try {
    return await jsm.streams.info(name)
  } catch (error) {
    if (!isNotFound(error)) throw error
    return undefined
  }
}

/** The Rally cluster bus on NATS. Create it with `await NatsBus.connect({ servers })`. */
export class NatsBus extends BrokerBusBase implements contract.Bus {
  readonly nodeId = randomBytes(9).toString('base64url')

  readonly #nc: NatsConnection
  readonly #ownsConnection: boolean
  readonly #js: JetStreamClient
  readonly #jsm: Promise<JetStreamManager>
  readonly #prefix: string
  readonly #storage: StorageType
  readonly #replicas: number
  readonly #fillDelay: number
  readonly #streams = new Map<string, Promise<StreamState>>()
  readonly #feeds = new Map<string, Feed>()
  readonly #events = new Map<string, EventFeed>()
  /** This node's presence members per channel. */
  readonly #members = new Map<string, Map<string, contract.PresenceMember>>()
  /** Presence writes per channel, one after another so that the last write holds the last state. */
  readonly #presenceWrites = new Map<string, Promise<void>>()
  #kv: Promise<KV> | undefined
  /**
   * Resolved while connected. A request sent while the client is reconnecting is lost (it times
   * out after 5 s), so JetStream and KV calls wait for the connection first.
   */
  #online: Promise<void> = Promise.resolve()
  #goOnline: (() => void) | undefined
  #closed = false

  static async connect(options: NatsBusOptions = {}): Promise<NatsBus> {
    if (options.connection) return new NatsBus(options, options.connection, false)
    const nc = await connect({
      servers: options.servers ?? 'nats://127.0.0.1:4222',
      // Keep trying for as long as the bus lives: a broker restart is an outage, not the end.
      maxReconnectAttempts: -1,
      reconnectTimeWait: 100,
      pingInterval: options.pingInterval ?? DEFAULT_PING_INTERVAL_MS,
      maxPingOut: 2,
    })
    return new NatsBus(options, nc, true)
  }

  private constructor(options: NatsBusOptions, nc: NatsConnection, ownsConnection: boolean) {
    super(options)
    this.#nc = nc
    this.#ownsConnection = ownsConnection
    this.#js = jetstream(nc)
    // No API check: it would be a request before the first use, failing while JetStream recovers.
    this.#jsm = jetstreamManager(nc, { checkAPI: false })
    this.#prefix = options.prefix ?? 'rally'
    this.#storage = options.storage === 'memory' ? StorageType.Memory : StorageType.File
    this.#replicas = options.replicas ?? 1
    this.#fillDelay = options.fillDelay ?? DEFAULT_FILL_DELAY_MS
    void this.#watchStatus()
  }

  #manager(): Promise<JetStreamManager> {
    return this.#jsm
  }

  async #watchStatus(): Promise<void> {
    for await (const status of this.#nc.status()) {
      if (status.type === 'disconnect' && this.#goOnline === undefined) {
        this.signalStatus('down')
        this.#online = new Promise((resolve) => {
          this.#goOnline = resolve
        })
      } else if (status.type === 'reconnect') {
        this.#goOnline?.()
        this.#goOnline = undefined
        void this.#afterReconnect()
      }
    }
  }

  /**
   * After a reconnect the client has resubscribed every core subject. Streams may have been lost
   * (a wiped server), so every cached stream is forgotten, each subscribed channel's position is
   * read again, and the gap listeners learn which channels may have missed publications.
   */
  async #afterReconnect(): Promise<void> {
    if (this.#closed) return
    this.#streams.clear()
    // The presence bucket may be gone too (a wiped server): bind or create it again on next use.
    this.#kv = undefined
    try {
      await this.#nc.flush()
    } catch {
      return // disconnected again: the next reconnect does this
    }
    const channels = [...this.#feeds.keys()]
    await Promise.allSettled(
      channels.map(async (channel) => {
        const feed = this.#feeds.get(channel)
        if (feed === undefined) return
        const position = await this.#retryWhileRecovering(() => this.#position(channel))
        // Deliveries go on while the position is read; never go back to an offset delivered.
        const sameEpoch = feed.epoch === position.epoch
        feed.epoch = position.epoch
        feed.next = sameEpoch ? Math.max(feed.next, position.offset + 1) : position.offset + 1
        for (const offset of feed.held.keys()) if (offset < feed.next) feed.held.delete(offset)
        this.#drain(channel, feed)
      }),
    )
    this.refreshPresence()
    if (this.#closed || this.#goOnline !== undefined) return
    this.signalGap(channels)
    this.signalStatus('up')
  }

  /** JetStream answers "unavailable" for a while after the server restarts; wait it out. */
  async #retryWhileRecovering<T>(action: () => Promise<T>): Promise<T> {
    const deadline = Date.now() + JETSTREAM_RECOVERY_MS
    for (let pause = 50; ; pause = Math.min(pause * 2, 500)) {
      try {
        return await action()
      } catch (error) {
        if (this.#closed || Date.now() > deadline) throw error
        await new Promise((resolve) => setTimeout(resolve, pause))
      }
    }
  }

  #streamName(channel: string): string {
    return `${this.#prefix.toUpperCase()}_${channelToken(channel)}`
  }

  #subject(kind: 'h' | 'p' | 'e', channel: string): string {
    return `${this.#prefix}.${kind}.${channelToken(channel)}`
  }

  #streamConfig(channel: string, policy: contract.HistoryPolicy): Partial<StreamConfig> & { name: string } {
    const size = Math.max(0, Math.floor(policy.size))
    const maxAgeNs = Math.max(0, Math.floor(policy.ttl)) * 1e6
    return {
      name: this.#streamName(channel),
      subjects: [this.#subject('h', channel)],
      storage: this.#storage,
      num_replicas: this.#replicas,
      discard: DiscardPolicy.Old,
      // Size 0 keeps no history but needs a stream for the offsets: it keeps one message, and
      // history reads return none (the policy is in the description).
      max_msgs: Math.max(1, size),
      max_age: maxAgeNs,
      // JetStream refuses a duplicate window longer than the messages live.
      duplicate_window: maxAgeNs > 0 ? Math.min(maxAgeNs, this.dedupTtl * 1e6) : this.dedupTtl * 1e6,
      allow_direct: true,
      description: policyKey(policy),
    }
  }

  /**
   * The channel's stream, created when missing (with `policy`, or no history), updated when
   * `policy` differs from the one it has.
   */
  #stream(channel: string, policy: contract.HistoryPolicy | undefined): Promise<StreamState> {
    let known = this.#streams.get(channel)
    if (known === undefined) {
      known = this.#openStream(channel, policy)
      this.#streams.set(channel, known)
      known.catch(() => {
        if (this.#streams.get(channel) === known) this.#streams.delete(channel)
      })
      return known
    }
    if (policy === undefined) return known
    return known.then(async (state) => {
      const wanted = policyKey(policy)
      if (state.policy === wanted) return state
      const jsm = await this.#manager()
      const info = await jsm.streams.update(state.name, this.#streamConfig(channel, policy))
      state.policy = info.config.description ?? wanted
      return state
    })
  }

  async #openStream(channel: string, policy: contract.HistoryPolicy | undefined): Promise<StreamState> {
    const jsm = await this.#manager()
    const name = this.#streamName(channel)
    let info = await streamInfoOrNone(jsm, name)
    if (info === undefined) {
      try {
        info = await jsm.streams.add(this.#streamConfig(channel, policy ?? { size: 0, ttl: 0 }))
      } catch (addError) {
        // Another node created it first (with another policy): use theirs.
        info = await jsm.streams.info(name).catch(() => {
          throw addError
        })
      }
    }
    const state: StreamState = {
      name,
      epoch: epochOf(info),
      policy: info.config.description ?? '',
      lastAcked: info.state.last_seq,
    }
    if (policy !== undefined && state.policy !== policyKey(policy)) {
      const updated = await jsm.streams.update(name, this.#streamConfig(channel, policy))
      state.policy = updated.config.description ?? ''
    }
    return state
  }

  /** The channel's current position, read from the server (never from the cache). */
  async #position(channel: string): Promise<contract.StreamPosition & { first: number; policy: string }> {
    await this.#online
    const jsm = await this.#manager()
    const name = this.#streamName(channel)
    let info = await streamInfoOrNone(jsm, name)
    if (info === undefined) {
      // No stream yet: create it (no history until a publication brings a policy), so that the
      // epoch given now is the one the first publication gets.
      this.#streams.delete(channel)
      await this.#stream(channel, undefined)
      info = await jsm.streams.info(name)
    }
    const epoch = epochOf(info)
    const cached = this.#streams.get(channel)
    // A cached stream from another epoch was deleted and created again: forget it.
    cached?.then(
      (state) => {
        if (state.epoch !== epoch && this.#streams.get(channel) === cached) this.#streams.delete(channel)
      },
      () => {},
    )
    return {
      epoch,
      offset: info.state.last_seq,
      first: info.state.messages === 0 ? info.state.last_seq + 1 : info.state.first_seq,
      policy: info.config.description ?? '',
    }
  }

  /** `${node} ${time} ${infoBytes}\n${info}${data}`: what the stream stores. */
  #storedBody(time: number, request: contract.PublishRequest): Uint8Array {
    const info = encoder.encode(request.info ?? '')
    const data = encoder.encode(request.data)
    const head = encoder.encode(`${this.nodeId} ${time} ${info.length}\n`)
    const body = new Uint8Array(head.length + info.length + data.length)
    body.set(head, 0)
    body.set(info, head.length)
    body.set(data, head.length + info.length)
    return body
  }

  async publish(channel: string, request: contract.PublishRequest): Promise<contract.StreamPosition> {
    if (this.#closed) throw new Error('NatsBus is closed')
    const time = Date.now()
    let stored = this.#storedBody(time, request)
    // The same message id on every attempt: JetStream stores a retried publication once (within
    // its duplicate window) and acknowledges the retry with the original sequence. A caller's id
    // is that message id (hashed: any text, fixed length), so that a repeat made through another
    // node is recognised too.
    const msgID =
      request.id === undefined
        ? randomBytes(12).toString('base64url')
        : createHash('sha256').update(request.id).digest('base64url')
    let { state, offset, duplicate } = await this.#retryWhileRecovering(async () => {
      await this.#online
      const stream = await this.#stream(channel, request.history)
      try {
        const ack = await this.#js.publish(this.#subject('h', channel), stored, { msgID })
        return { state: stream, offset: ack.seq, duplicate: ack.duplicate }
      } catch (error) {
        // No stream answered (deleted, or lost by the server): the next attempt creates it.
        this.#streams.delete(channel)
        throw error
      }
    })
    if (duplicate) {
      // Stored before, by this call's lost attempt or by another node that may have died before
      // its fan-out: fan out what the stream holds (nodes that have it skip it by offset).
      const kept = await this.#manager()
        .then((jsm) => jsm.direct.getMessage(state.name, { seq: offset }))
        .catch(() => null)
      if (kept === null) return { offset, epoch: state.epoch }
      stored = kept.data
    } else if (offset <= state.lastAcked) {
      // A sequence going backwards: the stream was created again since it was cached.
      this.#streams.delete(channel)
      state = await this.#stream(channel, undefined)
    }
    state.lastAcked = Math.max(state.lastAcked, offset)
    const publication: contract.BusPublication | undefined = duplicate
      ? this.#parseStored(channel, offset, state.epoch, stored)
      : {
          channel,
          offset,
          epoch: state.epoch,
          time,
          data: request.data,
          ...(request.info !== undefined && request.info !== '' ? { info: request.info } : {}),
        }
    if (publication === undefined) return { offset, epoch: state.epoch }
    const prefix = encoder.encode(`${offset} ${state.epoch} `)
    const message = new Uint8Array(prefix.length + stored.length)
    message.set(prefix, 0)
    message.set(stored, prefix.length)
    this.#nc.publish(this.#subject('p', channel), message)
    // This node's subscribers get it now when it is the next they expect; the echo is then
    // skipped by offset (see #accept).
    const feed = this.#feeds.get(channel)
    if (feed?.positioned && feed.epoch === publication.epoch && feed.next === offset)
      this.#accept(channel, feed, publication)
    return { offset, epoch: state.epoch }
  }

  #parseStored(
    channel: string,
    offset: number,
    epoch: string,
    body: Uint8Array,
  ): contract.BusPublication | undefined {
    const bytes = Buffer.from(body.buffer, body.byteOffset, body.byteLength)
    const newline = bytes.indexOf(10)
    if (newline < 0) return undefined
    const head = bytes.toString('latin1', 0, newline).split(' ')
    if (head.length !== 3) return undefined
    const infoEnd = newline + 1 + Number(head[2])
    return {
      channel,
      offset,
      epoch,
      time: Number(head[1]),
      data: bytes.toString('utf8', infoEnd),
      ...(infoEnd > newline + 1 ? { info: bytes.toString('utf8', newline + 1, infoEnd) } : {}),
    }
  }

  #parseLive(channel: string, body: Uint8Array): contract.BusPublication | undefined {
    const bytes = Buffer.from(body.buffer, body.byteOffset, body.byteLength)
    const firstSpace = bytes.indexOf(32)
    const secondSpace = bytes.indexOf(32, firstSpace + 1)
    if (firstSpace < 0 || secondSpace < 0) return undefined
    const offset = Number(bytes.toString('latin1', 0, firstSpace))
    const epoch = bytes.toString('latin1', firstSpace + 1, secondSpace)
    return this.#parseStored(channel, offset, epoch, body.subarray(secondSpace + 1))
  }

  /** Takes a publication for a subscribed channel and delivers what is now in order. */
  #accept(channel: string, feed: Feed, publication: contract.BusPublication): void {
    if (!feed.positioned) {
      feed.early.push(publication)
      return
    }
    if (publication.epoch !== feed.epoch) {
      // The stream was created again: its offsets start at 1, and all of them came after this
      // subscription; the fill reads any that core NATS does not bring. What this node's
      // subscribers hold belongs to the old history: the gap makes the real-time layer check.
      const hadEpoch = feed.epoch !== ''
      feed.epoch = publication.epoch
      feed.next = 1
      feed.held.clear()
      if (hadEpoch) this.signalGap([channel])
    }
    if (publication.offset < feed.next) return
    if (feed.held.size >= MAX_HELD_BACK) this.#fill(channel, feed)
    feed.held.set(publication.offset, publication)
    this.#drain(channel, feed)
  }

  #drain(channel: string, feed: Feed): void {
    for (let next = feed.held.get(feed.next); next !== undefined; next = feed.held.get(feed.next)) {
      feed.held.delete(feed.next)
      feed.next++
      handToAll(feed.receivers, next)
    }
    if (feed.held.size === 0) {
      clearTimeout(feed.fillTimer)
      feed.fillTimer = undefined
    } else if (feed.fillTimer === undefined) {
      feed.fillTimer = setTimeout(() => {
        feed.fillTimer = undefined
        this.#fill(channel, feed)
      }, this.#fillDelay)
      feed.fillTimer.unref()
    }
  }

  /** Reads from the stream the publications missing before the held-back ones. */
  #fill(channel: string, feed: Feed): void {
    if (this.#closed || this.#feeds.get(channel) !== feed || feed.held.size === 0) return
    const epoch = feed.epoch
    const from = feed.next
    const until = Math.min(...feed.held.keys()) - 1
    void this.#read(channel, epoch, from, until).then(
      (found) => {
        if (this.#feeds.get(channel) !== feed || feed.epoch !== epoch || feed.next !== from) return
        for (const publication of found) feed.held.set(publication.offset, publication)
        const lost = found.length < until - from + 1
        // Skip what the stream no longer has, so that delivery goes on; the gap listeners
        // recover the channel from history (which will say it is incomplete).
        for (let offset = from; offset <= until; offset++) {
          if (!feed.held.has(offset) && offset === feed.next) feed.next++
          else break
        }
        this.#drain(channel, feed)
        if (lost) this.signalGap([channel])
      },
      () => {
        if (this.#feeds.get(channel) === feed) this.#drain(channel, feed)
      },
    )
  }

  /** Publications `from`…`until` that the stream still holds, oldest first. */
  async #read(
    channel: string,
    epoch: string,
    from: number,
    until: number,
  ): Promise<contract.BusPublication[]> {
    await this.#online
    const jsm = await this.#manager()
    const name = this.#streamName(channel)
    const found: contract.BusPublication[] = []
    for (let start = from; start <= until; start += READ_CONCURRENCY) {
      const sequences = Array.from(
        { length: Math.min(READ_CONCURRENCY, until - start + 1) },
        (_, i) => start + i,
      )
      const messages = await Promise.all(
        sequences.map((seq) => jsm.direct.getMessage(name, { seq }).catch(() => null)),
      )
      for (const message of messages) {
        if (message === null || message.seq < from) continue
        const publication = this.#parseStored(channel, message.seq, epoch, message.data)
        if (publication !== undefined) found.push(publication)
      }
    }
    return found
  }

  async subscribe(
    channel: string,
    deliver: (publication: contract.BusPublication) => void,
  ): Promise<contract.Unsubscribe> {
    if (this.#closed) throw new Error('NatsBus is closed')
    let feed = this.#feeds.get(channel)
    if (feed === undefined) {
      const subscription = this.#nc.subscribe(this.#subject('p', channel), {
        callback: (error, message) => {
          const current = this.#feeds.get(channel)
          if (error !== null || current === undefined) return
          const publication = this.#parseLive(channel, message.data)
          if (publication !== undefined) this.#accept(channel, current, publication)
        },
      })
      const created: Feed = {
        receivers: new Set(),
        subscription,
        ready: Promise.resolve(),
        positioned: false,
        early: [],
        epoch: '',
        next: 1,
        held: new Map(),
        fillTimer: undefined,
      }
      // The subscription is in place once the server has answered a flush; the position read
      // after that marks where delivery starts: anything later reaches the subscription.
      created.ready = (async () => {
        await this.#nc.flush()
        const position = await this.#position(channel)
        created.epoch = position.epoch
        created.next = position.offset + 1
        created.positioned = true
        for (const early of created.early.splice(0)) this.#accept(channel, created, early)
      })()
      created.ready.catch(() => {
        if (this.#feeds.get(channel) === created) {
          this.#feeds.delete(channel)
          subscription.unsubscribe()
        }
      })
      feed = created
      this.#feeds.set(channel, created)
    }
    return joinFeed(this.#feeds, channel, feed, deliver, async (released) => {
      clearTimeout(released.fillTimer)
      released.subscription.unsubscribe()
      if (!this.#closed) await this.#nc.flush().catch(() => {})
    })
  }

  async history(channel: string, query: contract.HistoryQuery): Promise<contract.HistoryResult> {
    if (this.#closed) throw new Error('NatsBus is closed')
    const position = await this.#retryWhileRecovering(() => this.#position(channel))
    const latest: contract.StreamPosition = { epoch: position.epoch, offset: position.offset }
    const limit = Math.max(0, Math.min(query.limit ?? this.historyCap, this.historyCap))
    const keepsHistory = policySize(position.policy) > 0
    const since = query.since
    if (since !== undefined && (since.epoch !== latest.epoch || since.offset > latest.offset))
      return { publications: [], latest, complete: false }
    const from = since !== undefined ? since.offset + 1 : Math.max(1, latest.offset - limit + 1)
    const until = since !== undefined ? Math.min(latest.offset, since.offset + limit) : latest.offset
    const publications =
      keepsHistory && limit > 0 && from <= until
        ? await this.#read(channel, latest.epoch, Math.max(from, position.first), until)
        : []
    if (since === undefined) return { publications, latest, complete: true }
    const complete =
      publications.length === latest.offset - since.offset &&
      (publications.length === 0 || publications[0]!.offset === since.offset + 1)
    return { publications, latest, complete }
  }

  async emit(event: contract.BusEvent): Promise<void> {
    if (this.#closed) throw new Error('NatsBus is closed')
    this.#nc.publish(this.#subject('e', event.channel), event.data)
  }

  async listen(channel: string, receive: (event: contract.BusEvent) => void): Promise<contract.Unsubscribe> {
    if (this.#closed) throw new Error('NatsBus is closed')
    let feed = this.#events.get(channel)
    if (feed === undefined) {
      const receivers = new Set<(event: contract.BusEvent) => void>()
      const subscription = this.#nc.subscribe(this.#subject('e', channel), {
        callback: (error, message) => {
          if (error !== null) return
          const event: contract.BusEvent = { channel, data: message.string() }
          handToAll(receivers, event)
        },
      })
      feed = { receivers, subscription, ready: this.#nc.flush() }
      this.#events.set(channel, feed)
    }
    return joinFeed(this.#events, channel, feed, receive, (released) => released.subscription.unsubscribe())
  }

  #bucket(): Promise<KV> {
    if (this.#kv === undefined) {
      // The bucket's own limit only clears entries of nodes long gone; readers go by each entry's
      // time to live, which every node writes into its entry.
      const kv = new Kvm(this.#nc).create(`${this.#prefix}_presence`, {
        ttl: Math.max(3 * this.presenceTtl, 60_000),
        history: 1,
        storage: this.#storage,
        replicas: this.#replicas,
      })
      this.#kv = kv
      kv.catch(() => {
        if (this.#kv === kv) this.#kv = undefined
      })
    }
    return this.#kv
  }

  #presenceKey(channel: string): string {
    return `${channelToken(channel)}.${this.nodeId}`
  }

  /** Writes this node's entry for the channel (after any write already under way). */
  #writePresence(channel: string): Promise<void> {
    const previous = this.#presenceWrites.get(channel) ?? Promise.resolve()
    const write = previous
      .catch(() => {})
      .then(async () => {
        await this.#online
        const kv = await this.#bucket()
        const local = this.#members.get(channel)
        if (local === undefined || local.size === 0) {
          await kv.delete(this.#presenceKey(channel))
          return
        }
        const entry: PresenceEntry = { ttl: this.presenceTtl, members: Object.fromEntries(local) }
        await kv.put(this.#presenceKey(channel), JSON.stringify(entry))
      })
    this.#presenceWrites.set(channel, write)
    const forget = () => {
      if (this.#presenceWrites.get(channel) === write) this.#presenceWrites.delete(channel)
    }
    write.then(forget, forget)
    return write
  }

  async join(channel: string, member: contract.PresenceMember): Promise<void> {
    if (this.#closed) throw new Error('NatsBus is closed')
    let local = this.#members.get(channel)
    if (local === undefined) this.#members.set(channel, (local = new Map()))
    local.set(member.client, {
      client: member.client,
      user: member.user,
      ...(member.info !== undefined ? { info: member.info } : {}),
    })
    await this.#writePresence(channel)
  }

  async leave(channel: string, client: string): Promise<void> {
    if (this.#closed) throw new Error('NatsBus is closed')
    const local = this.#members.get(channel)
    if (local === undefined || !local.delete(client)) return
    if (local.size === 0) this.#members.delete(channel)
    await this.#writePresence(channel)
  }

  /**
   * Reads the channel's entries straight from the bucket's stream: the stream lists the subjects
   * (one per node) under the channel's prefix, and a direct get reads each one's last value. No
   * consumer is created per read (the KV client's `keys()` makes one, and can wait for a
   * heartbeat when entries change while it lists them).
   */
  async members(channel: string): Promise<readonly contract.PresenceMember[]> {
    if (this.#closed) throw new Error('NatsBus is closed')
    await this.#online
    await this.#bucket()
    const jsm = await this.#manager()
    const stream = `KV_${this.#prefix}_presence`
    const info = await jsm.streams.info(stream, {
      subjects_filter: `$KV.${this.#prefix}_presence.${channelToken(channel)}.*`,
    })
    const subjects = Object.keys(info.state.subjects ?? {})
    const entries = await Promise.all(
      subjects.map((subject) => jsm.direct.getMessage(stream, { last_by_subj: subject }).catch(() => null)),
    )
    const now = Date.now()
    const members = new Map<string, contract.PresenceMember>()
    for (const entry of entries) {
      // Deleted entries (a node whose last member left) keep a marker with an operation header.
      if (entry === null || entry.header?.get('KV-Operation')) continue
      const value = entry.json<PresenceEntry>()
      // Written more than its time to live ago: its node stopped refreshing it (it died).
      if (entry.time.getTime() + value.ttl < now) continue
      for (const member of Object.values(value.members)) members.set(member.client, member)
    }
    return [...members.values()]
  }

  async memberCount(channel: string): Promise<number> {
    return (await this.members(channel)).length
  }

  protected refreshPresence(): void {
    if (this.#closed || this.#nc.isClosed()) return
    for (const channel of this.#members.keys()) {
      this.#writePresence(channel).catch(() => {
        // The next refresh tries again; an entry expires only after three missed refreshes.
      })
    }
  }

  /**
   * Stops refreshing presence and releases subscriptions and (when the bus made it) the
   * connection. This node's presence entries are left to expire, as after a crash: the
   * real-time layer makes its sessions leave on a graceful shutdown.
   */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.stopBase()
    for (const feed of this.#feeds.values()) {
      clearTimeout(feed.fillTimer)
      feed.subscription.unsubscribe()
    }
    for (const feed of this.#events.values()) feed.subscription.unsubscribe()
    this.#feeds.clear()
    this.#events.clear()
    if (this.#ownsConnection) await this.#nc.close()
  }
}
