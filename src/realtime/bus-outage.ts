/**
 * A node cut off from its broker moves its clients away instead of keeping them on a node that
 * can neither deliver other nodes' publications nor store theirs.
 *
 * While the bus is `down` (bus.ts: `status`, `onStatus`), a short outage is waited out: a broker
 * restart or a reconnect of the bus's client takes a second or two, and the bus then reports
 * the gap, after which subscribers recover what they missed. Once the bus has been down for
 * `grace` ms, the node:
 * - disconnects every session with 4001 (going away: reconnect), whose reason says why, so that
 *   the clients reconnect — through the load balancer, to another node — and recover there from
 *   their last offsets;
 * - refuses new sessions until the bus is `up` again: `503 Service Unavailable` with
 *   `Retry-After` before a WebSocket upgrade and on `POST …/open` of the HTTP transports (a load
 *   balancer that retries on 503, as nginx with `proxy_next_upstream http_503`, sends the request
 *   to the next node at once), and an immediate 4001 for sessions other transports open.
 * When the bus comes back the node accepts sessions again; the clients it moved stay where they
 * went.
 *
 * Every node cut off at once (the broker itself is down) refuses everyone: clients retry with
 * their backoff until the broker is back, which is all they could do anyway, since no node
 * could serve them.
 */
import type { Bus } from '../pubsub/bus.js'

/** Ms a bus may stay down before the node moves its clients away, unless `busOutageGrace` says otherwise. */
export const DEFAULT_BUS_OUTAGE_GRACE = 10_000

/** The reason of the 4001 disconnect, and of the 503 answers, while the node is cut off. */
export const BUS_OUTAGE_REASON = 'this node lost its broker: reconnect to another node'

/** Seconds a refused client is told to wait (`Retry-After`): a retry goes to another node anyway. */
export const BUS_OUTAGE_RETRY_AFTER = '1'

export class BusOutage {
  readonly grace: number
  readonly #moveAway: () => void
  readonly #stopListening: () => void
  #timer: ReturnType<typeof setTimeout> | undefined
  #refusing = false

  /**
   * Watches `bus`; `moveAway` disconnects the node's sessions (called once per outage, when the
   * grace has passed).
   */
  constructor(bus: Bus, grace: number, moveAway: () => void) {
    if (!(grace >= 0)) throw new RangeError('createRealtime: busOutageGrace must be 0 or more (ms)')
    this.grace = grace
    this.#moveAway = moveAway
    this.#stopListening = bus.onStatus((status) => (status === 'up' ? this.#up() : this.#down()))
    if (bus.status === 'down') this.#down()
  }

  /** True while the node refuses sessions: its bus has been down for longer than the grace. */
  get refusing(): boolean {
    return this.#refusing
  }

  /** Stops watching the bus (the realtime is closing). */
  close(): void {
    this.#stopListening()
    clearTimeout(this.#timer)
    this.#timer = undefined
  }

  #down(): void {
    if (this.#timer !== undefined || this.#refusing || !Number.isFinite(this.grace)) return
    this.#timer = setTimeout(() => {
      this.#timer = undefined
      this.#refusing = true
      this.#moveAway()
    }, this.grace)
    // An outage alone must not keep a process alive.
    this.#timer.unref?.()
  }

  #up(): void {
    clearTimeout(this.#timer)
    this.#timer = undefined
    this.#refusing = false
  }
}
