/**
 * The cluster bus: what the real-time layer needs from whatever carries publications between
 * nodes and keeps their history. `MemoryBus` (one process) is the embedded default; `RedisBus`
 * (`rallyjs/redis`) and `NatsBus` (`rallyjs/nats`) are the real brokers. One conformance suite
 * (test/bus) runs against every implementation.
 *
 * The contract, in the words every implementation is tested against:
 * - **Offsets.** The bus assigns each publication in a channel the next offset (1, 2, 3… — a
 *   safe integer) and the channel's current epoch, atomically with appending it to the history,
 *   so that every node sees the same offset for the same publication.
 * - **Epochs.** An epoch names the history that offsets belong to. It changes whenever that
 *   history may have been lost (a restarted in-memory bus, a flushed broker, a stream deleted),
 *   so that a client holding `{offset, epoch}` from before can tell that its position means
 *   nothing any more, instead of silently missing publications.
 * - **Delivery.** `subscribe` delivers, in offset order, every publication made after the
 *   subscription's promise resolved, to every node subscribed (its own included, once). Fan-out
 *   is per channel, reference-counted by the implementation: never one subscription to everything.
 * - **Gaps.** When the bus may have missed deliveries (its connection to the broker dropped), it
 *   calls the `gap` listeners with the channels concerned once it is delivering again; the
 *   real-time layer then recovers those channels from history (or reports `recovered: false`).
 * - **Presence** is kept by the bus too, so that it spans nodes; each node's entries expire when
 *   the node stops refreshing them.
 * - **Status.** A bus says whether it reaches its broker (`status`, `onStatus`), so that a node
 *   cut off from it can send its clients to nodes that are not (src/realtime/bus-outage.ts).
 * - **Idempotent publishes.** A publication carrying an `id` that the bus already stored in the
 *   same channel within its window is not published again, whichever node it came through.
 */

/** A position in a channel's stream: the last offset seen and the epoch it belongs to. */
export interface StreamPosition {
  readonly offset: number
  readonly epoch: string
}

/** A publication as the bus stores and delivers it. */
export interface BusPublication {
  readonly channel: string
  /** 1 for the channel's first publication in this epoch, then +1 each. */
  readonly offset: number
  readonly epoch: string
  /** The publication's data, JSON text, exactly as published (serialised once, by the publisher). */
  readonly data: string
  /** JSON text of the publishing client's info (`{ client, user, info }`), for client publishes. */
  readonly info?: string
  /** Milliseconds since the Unix epoch, when the bus accepted the publication. */
  readonly time: number
}

/** How a channel keeps its history. `size: 0` keeps none (offsets are still assigned). */
export interface HistoryPolicy {
  /** Most publications kept. */
  readonly size: number
  /** Milliseconds a publication is kept. */
  readonly ttl: number
}

export interface PublishRequest {
  readonly data: string
  readonly info?: string
  /**
   * Without it, the channel's policy from its last publication that gave one (none at first).
   * A broker bus keeps that policy next to the channel's offset, so every node applies the same.
   */
  readonly history?: HistoryPolicy
  /**
   * Idempotency id: when a publication with the same id was stored in this channel within the
   * bus's window (its `dedupTtl`), `publish` resolves with that publication's position and
   * publishes nothing, on whichever node of the cluster it is called. The real-time layer sets it
   * for client publishes that carry a key, so that a retry after reconnecting to another node is
   * not published twice.
   */
  readonly id?: string
}

export interface HistoryQuery {
  /** Publications after this position; without it, the latest `limit` publications. */
  readonly since?: StreamPosition
  /** Most publications returned (the oldest first); the implementation caps it too. */
  readonly limit?: number
}

export interface HistoryResult {
  /** Publications after `since` (or the latest ones), oldest first. */
  readonly publications: readonly BusPublication[]
  /** The channel's current position (offset 0 when it has had no publication in this epoch). */
  readonly latest: StreamPosition
  /**
   * With `since`: true when `publications` are exactly every publication after `since.offset`
   * up to `latest.offset` in the same epoch (nothing trimmed away, epoch unchanged, not cut by
   * `limit`). Without `since`: always true.
   */
  readonly complete: boolean
}

/** One connected client's presence in a channel. */
export interface PresenceMember {
  /** The connection's client id (unique per session). */
  readonly client: string
  /** The authenticated user id (several clients may share it). */
  readonly user: string
  /** What the app attached to the connection at authentication. */
  readonly info?: unknown
}

/** An ephemeral message between nodes: not stored, no offset (presence joins and leaves…). */
export interface BusEvent {
  readonly channel: string
  /** JSON text. */
  readonly data: string
}

export type Unsubscribe = () => Promise<void>

/**
 * `up` while the bus reaches its broker and delivers; `down` from the moment it lost the
 * connection until it is delivering again (after which it reports the gap).
 */
export type BusStatus = 'up' | 'down'

export interface Bus {
  /** This node's id: unique per bus instance, used to suppress a node's own echoes. */
  readonly nodeId: string

  /** Appends to the channel's history and fans out; resolves with the offset and epoch given. */
  publish(channel: string, request: PublishRequest): Promise<StreamPosition>

  /**
   * Starts delivering the channel's publications to `deliver`, in offset order. Resolves once
   * delivery is in place (a publication made after that is delivered). Several subscriptions to
   * one channel on one node share one broker subscription.
   */
  subscribe(channel: string, deliver: (publication: BusPublication) => void): Promise<Unsubscribe>

  /** Reads the channel's history. */
  history(channel: string, query: HistoryQuery): Promise<HistoryResult>

  /** Sends an ephemeral event to every node subscribed to `channel`'s events (this one included). */
  emit(event: BusEvent): Promise<void>
  /** Receives the channel's ephemeral events; reference-counted like `subscribe`. */
  listen(channel: string, receive: (event: BusEvent) => void): Promise<Unsubscribe>

  /**
   * Adds or refreshes a member (expires unless refreshed; see the implementation's options).
   * Broker buses refresh the members joined through them on a timer while they are open, so that
   * only a dead (or closed) node's members expire; MemoryBus expires a member `presenceTtl` after
   * its last `join`. A caller that re-joins its live members within the ttl works with both.
   */
  join(channel: string, member: PresenceMember): Promise<void>
  leave(channel: string, client: string): Promise<void>
  members(channel: string): Promise<readonly PresenceMember[]>
  memberCount(channel: string): Promise<number>

  /**
   * Called when deliveries may have been missed (a broker connection dropped and came back): the
   * channels subscribed at the time. The real-time layer recovers them from history.
   */
  onGap(listener: (channels: readonly string[]) => void): () => void

  /** Whether the bus reaches its broker now. An in-process bus is always `up`. */
  readonly status: BusStatus
  /** Called on every change of `status`; returns the function that stops it. */
  onStatus(listener: (status: BusStatus) => void): () => void

  /** Releases every subscription and connection the bus holds. */
  close(): Promise<void>
}
