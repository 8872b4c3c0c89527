/**
 * What the broker-backed buses (Redis, NATS) share: their common options and defaults, the fan-out
 * of one broker message to a node's receivers, and the reference counting of one broker
 * subscription per channel. Kept apart from bus.ts, which is the contract alone.
 */
import type { Unsubscribe } from './bus.js'

/** Options every broker-backed bus takes. */
export interface BrokerBusOptions {
  /** Milliseconds a presence member lives without a refresh (a dead node's members). Default 30 000. */
  readonly presenceTtl?: number
  /** Most publications one history read returns. Default 1000. */
  readonly historyCap?: number
}

export const DEFAULT_PRESENCE_TTL_MS = 30_000
export const DEFAULT_HISTORY_CAP = 1000

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
