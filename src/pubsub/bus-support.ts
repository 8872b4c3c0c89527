/**
 * What the buses share: the gap and status listeners of every bus (BusSignals), and for the
 * broker-backed ones (Redis, NATS) their common options and defaults, the presence refresh timer
 * (BrokerBusBase), the fan-out of one broker message to a node's receivers, and the reference
 * counting of one broker subscription per channel. Kept apart from bus.ts, which is the
 * contract alone. Nothing here needs Node: MemoryBus, which builds on it, runs in browsers too.
 */
import type { BusStatus, Unsubscribe } from './bus.js'

/** Options every broker-backed bus takes. */
export interface BrokerBusOptions {
  /** Milliseconds a presence member lives without a refresh (a dead node's members). Default 30 000. */
  readonly presenceTtl?: number
  /** Most publications one history read returns. Default 1000. */
  readonly historyCap?: number
  /**
   * Milliseconds a publication's idempotency id (`PublishRequest.id`) is remembered: a publish
   * repeating it within that time is not published again. On NATS the window is also at most the
   * channel's history ttl (JetStream's duplicate window cannot outlast its messages). Default 120 000.
   */
  readonly dedupTtl?: number
}

export const DEFAULT_PRESENCE_TTL_MS = 30_000
export const DEFAULT_HISTORY_CAP = 1000
export const DEFAULT_DEDUP_TTL_MS = 120_000

/**
 * The gap and status listeners of a bus (`onGap`, `status`, `onStatus` of the Bus contract), for
 * the implementations to extend: they call `signalGap` and `signalStatus`.
 */
export abstract class BusSignals {
  readonly #gapListeners = new Set<(channels: readonly string[]) => void>()
  readonly #statusListeners = new Set<(status: BusStatus) => void>()
  #status: BusStatus = 'up'

  /** Whether the bus reaches its broker now (`up`), or lost it and is not delivering again yet (`down`). */
  get status(): BusStatus {
    return this.#status
  }

  /**
   * Called when deliveries may have been missed (a broker connection dropped and came back): the
   * channels subscribed at the time. The real-time layer recovers them from history.
   */
  onGap(listener: (channels: readonly string[]) => void): () => void {
    // A wrapper per call, so that one function added twice is removed once each.
    const call = (channels: readonly string[]) => listener(channels)
    this.#gapListeners.add(call)
    return () => this.#gapListeners.delete(call)
  }

  /** Called on every change of `status`; returns the function that stops it. */
  onStatus(listener: (status: BusStatus) => void): () => void {
    const call = (status: BusStatus) => listener(status)
    this.#statusListeners.add(call)
    return () => this.#statusListeners.delete(call)
  }

  /** Tells the gap listeners that deliveries on `channels` may have been missed. */
  protected signalGap(channels: readonly string[]): void {
    if (channels.length > 0) handToAll([...this.#gapListeners], channels)
  }

  /** Sets the status and tells the status listeners, when it changes. */
  protected signalStatus(status: BusStatus): void {
    if (status === this.#status) return
    this.#status = status
    handToAll([...this.#statusListeners], status)
  }

  /** Forgets every listener (the bus is closed). */
  protected dropListeners(): void {
    this.#gapListeners.clear()
    this.#statusListeners.clear()
  }
}

/**
 * What the broker-backed buses share besides the listeners: their options with defaults, and a
 * timer that re-sends this node's presence members a third of `presenceTtl` apart, so that two
 * refreshes may fail before a live member expires.
 */
export abstract class BrokerBusBase extends BusSignals {
  /** Milliseconds a presence member lives without a refresh (the `presenceTtl` option or its default). */
  readonly presenceTtl: number
  protected readonly historyCap: number
  protected readonly dedupTtl: number
  readonly #refreshTimer: ReturnType<typeof setInterval>

  protected constructor(options: BrokerBusOptions) {
    super()
    this.presenceTtl = options.presenceTtl ?? DEFAULT_PRESENCE_TTL_MS
    this.historyCap = options.historyCap ?? DEFAULT_HISTORY_CAP
    this.dedupTtl = options.dedupTtl ?? DEFAULT_DEDUP_TTL_MS
    for (const [name, value] of Object.entries({
      presenceTtl: this.presenceTtl,
      historyCap: this.historyCap,
      dedupTtl: this.dedupTtl,
    })) {
      if (!(value > 0) || !Number.isFinite(value))
        throw new RangeError(`${new.target.name}: ${name} must be a positive number`)
    }
    this.#refreshTimer = setInterval(() => this.refreshPresence(), Math.max(10, this.presenceTtl / 3))
    // The timer alone must not keep a process alive.
    ;(this.#refreshTimer as { unref?: () => void }).unref?.()
  }

  /** Re-sends this node's presence members with a fresh expiry. */
  protected abstract refreshPresence(): void

  /** Stops the presence refresh and forgets the listeners: the first step of `close`. */
  protected stopBase(): void {
    clearInterval(this.#refreshTimer)
    this.dropListeners()
  }
}

/**
 * Calls every receiver; one that throws does not keep the value from the others, nor break the
 * client's message loop: its error is rethrown on its own (an uncaught exception, as it would be
 * with no bus in between).
 */
export function handToAll<T>(receivers: Iterable<(value: T) => void>, value: T): void {
  for (const receive of receivers) {
    try {
      receive(value)
    } catch (error) {
      queueMicrotask(() => {
        throw error
      })
    }
  }
}

/** One channel's broker subscription on a node, shared by every receiver of that channel there. */
export interface SharedFeed<T> {
  readonly receivers: Set<(value: T) => void>
  /** Settles once the broker subscription is in place. */
  readonly ready: Promise<unknown>
}

/**
 * Adds `receive` to the channel's shared feed, waits until the feed is in place and returns the
 * release. Releasing twice does nothing; the last receiver's release removes the feed from
 * `feeds` (unless another feed has replaced it) and then runs `teardown` on it.
 */
export async function joinFeed<T, F extends SharedFeed<T>>(
  feeds: Map<string, F>,
  channel: string,
  feed: F,
  receive: (value: T) => void,
  teardown: (feed: F) => unknown,
): Promise<Unsubscribe> {
  // A wrapper per call, so that subscribing the same function twice needs two unsubscribes.
  const receiver = (value: T) => receive(value)
  feed.receivers.add(receiver)
  await feed.ready
  let released = false
  return async () => {
    if (released) return
    released = true
    feed.receivers.delete(receiver)
    if (feed.receivers.size > 0 || feeds.get(channel) !== feed) return
    feeds.delete(channel)
    await teardown(feed)
  }
}
