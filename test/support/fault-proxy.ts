/**
 * A fault-injecting TCP proxy for tests: clients connect to `proxy.port` on 127.0.0.1 and the
 * proxy relays bytes to the target, while a test breaks the path in the ways real networks do —
 * so that reconnection, heartbeats and recovery are proved without an external tool.
 *
 * Faults (each applies to every connection, present and future, until healed):
 * - `cutAll()`: every relayed connection is reset at once (both ends see it close).
 * - `delay(ms, direction)`: each chunk is held `ms` before it is forwarded (order kept).
 * - `blackHole(direction)`: bytes in that direction are swallowed silently and the connection is
 *   kept, as when a cable is pulled: no end sees a close, only an application heartbeat can
 *   notice. New connections fall into it too (their handshakes are swallowed).
 * - `blackHoleEstablished(direction)`: the same for the connections open now only, as when a NAT
 *   entry expires: those paths are dead, while new connections work.
 * - `halfOpen(direction)`: the proxy ends that direction (a FIN to its receiver) on the current
 *   connections and swallows what is sent that way afterwards; the other direction still flows.
 * - `slowDrip(bytes, tickMs, direction)`: at most `bytes` are forwarded per tick.
 * - `refuse()`: new connections are reset as soon as they are accepted.
 * - `cutAfter(ms)`: each connection is reset once it is `ms` old, as a proxy or load balancer
 *   that ends any response at a fixed age (however busy it is) does.
 * `heal()` removes every standing fault. Counters say what happened; a 'forwarded' event
 * (direction, bytes) marks each write the proxy makes.
 *
 * Directions: 'upstream' is client → target, 'downstream' is target → client.
 */
import { EventEmitter } from 'node:events'
import net from 'node:net'

export type Direction = 'upstream' | 'downstream'
export type Directions = Direction | 'both'

export interface FaultProxyCounters {
  /** Connections accepted and relayed. */
  accepted: number
  /** Connections reset on accept while refusing. */
  refused: number
  /** Connections relayed right now. */
  active: number
  /** Connections reset by cutAll(). */
  cut: number
  /** Bytes forwarded, per direction. */
  forwarded: Record<Direction, number>
  /** Bytes swallowed by a black hole or a half-open direction, per direction. */
  swallowed: Record<Direction, number>
}

interface DirectionFaults {
  delayMs: number
  blackHole: boolean
  drip: { bytes: number; tickMs: number } | undefined
}

/** Bytes queued in a lane beyond which its source is paused (TCP backpressure kept end to end). */
const LANE_HIGH_WATER = 256 * 1024

const DIRECTIONS: readonly Direction[] = ['upstream', 'downstream']

function directionsOf(which: Directions): readonly Direction[] {
  return which === 'both' ? DIRECTIONS : [which]
}

/** One direction of one relayed connection: a queue between a source socket and a destination. */
class Lane {
  private readonly queue: { chunk: Buffer; readyAt: number }[] = []
  private queuedBytes = 0
  private timer: NodeJS.Timeout | undefined
  private waitingForDrain = false
  private paused = false
  /** The source sent its FIN: end the destination once the queue is empty. */
  private sourceEnded = false
  /** This direction is finished (ended or half-opened): later bytes are swallowed. */
  private closed = false
  /** Black-holed on its own (blackHoleEstablished), apart from the proxy-wide faults. */
  ownBlackHole = false

  constructor(
    private readonly proxy: FaultProxy,
    private readonly direction: Direction,
    private readonly source: net.Socket,
    private readonly destination: net.Socket,
  ) {
    source.on('data', (chunk: Buffer) => this.receive(chunk))
    source.on('end', () => {
      // A FIN swallowed by a black hole is never seen by the other end, as on a dead path.
      if (this.blackHoled || this.closed) return
      this.sourceEnded = true
      this.pump()
    })
  }

  private get faults(): DirectionFaults {
    return this.proxy.faultsFor(this.direction)
  }

  private get blackHoled(): boolean {
    return this.ownBlackHole || this.faults.blackHole
  }

  private receive(chunk: Buffer): void {
    if (this.closed || this.blackHoled) {
      this.proxy.counters.swallowed[this.direction] += chunk.length
      return
    }
    this.queue.push({ chunk, readyAt: Date.now() + this.faults.delayMs })
    this.queuedBytes += chunk.length
    if (this.queuedBytes > LANE_HIGH_WATER && !this.paused) {
      this.paused = true
      this.source.pause()
    }
    this.pump()
  }

  /** Swallows what is queued: a black hole that starts also eats bytes still in flight. */
  discard(): void {
    for (const { chunk } of this.queue) this.proxy.counters.swallowed[this.direction] += chunk.length
    this.queue.length = 0
    this.queuedBytes = 0
    this.resumeSource()
  }

  /** Ends this direction now (half-open): a FIN to the destination, later bytes swallowed. */
  endNow(): void {
    if (this.closed) return
    this.discard()
    this.closed = true
    this.clearTimer()
    if (!this.destination.destroyed) this.destination.end()
  }

  /** Forwards what the current faults allow, then schedules the rest. */
  pump(): void {
    this.clearTimer()
    if (this.closed || this.waitingForDrain || this.destination.destroyed) return
    const faults = this.faults
    if (this.blackHoled) {
      this.discard()
      return
    }
    let budget = faults.drip === undefined ? Number.POSITIVE_INFINITY : faults.drip.bytes
    const now = Date.now()
    while (this.queue.length > 0 && budget > 0) {
      const head = this.queue[0]!
      if (head.readyAt > now) {
        this.schedule(head.readyAt - now)
        return
      }
      const take = Math.min(budget, head.chunk.length)
      const piece = take === head.chunk.length ? head.chunk : head.chunk.subarray(0, take)
      if (take === head.chunk.length) this.queue.shift()
      else head.chunk = head.chunk.subarray(take)
      budget -= take
      this.queuedBytes -= take
      this.proxy.counters.forwarded[this.direction] += take
      this.proxy.emit('forwarded', this.direction, take)
      if (!this.destination.write(piece)) {
        this.waitingForDrain = true
        this.destination.once('drain', () => {
          this.waitingForDrain = false
          this.pump()
        })
        return
      }
    }
    if (this.queuedBytes <= LANE_HIGH_WATER / 2) this.resumeSource()
    if (this.queue.length > 0) {
      this.schedule(faults.drip?.tickMs ?? 0)
    } else if (this.sourceEnded) {
      this.closed = true
      this.destination.end()
    }
  }

  private schedule(ms: number): void {
    this.clearTimer()
    this.timer = setTimeout(() => this.pump(), ms)
  }

  private clearTimer(): void {
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timer = undefined
  }

  private resumeSource(): void {
    if (!this.paused) return
    this.paused = false
    this.source.resume()
  }

  dispose(): void {
    this.clearTimer()
    this.queue.length = 0
    this.queuedBytes = 0
  }
}

/** A client socket, its socket to the target, and the two lanes between them. */
class Relay {
  readonly lanes: Record<Direction, Lane>
  private disposed = false
  readonly openedAt = Date.now()
  /** Set by cutAfter: resets this relay at its maximum age. */
  ageTimer: NodeJS.Timeout | undefined

  constructor(
    private readonly proxy: FaultProxy,
    readonly client: net.Socket,
    readonly upstream: net.Socket,
  ) {
    this.lanes = {
      upstream: new Lane(proxy, 'upstream', client, upstream),
      downstream: new Lane(proxy, 'downstream', upstream, client),
    }
    // Either side failing or fully closing ends the relay: nothing is left to carry.
    for (const socket of [client, upstream]) {
      socket.on('error', () => this.destroy(false))
      socket.on('close', () => this.destroy(false))
    }
  }

  /** Resets both sockets (RST where the platform allows: an abrupt cut, not a polite close). */
  destroy(reset: boolean): void {
    if (this.disposed) return
    this.disposed = true
    if (this.ageTimer !== undefined) clearTimeout(this.ageTimer)
    this.lanes.upstream.dispose()
    this.lanes.downstream.dispose()
    for (const socket of [this.client, this.upstream]) {
      if (reset && !socket.destroyed && typeof socket.resetAndDestroy === 'function') {
        socket.resetAndDestroy()
      } else {
        socket.destroy()
      }
    }
    this.proxy.forget(this)
  }
}

export interface FaultProxyOptions {
  /** The target's port, on `targetHost`. */
  targetPort: number
  /** Default 127.0.0.1. */
  targetHost?: string
}

/**
 * Events: 'connection' (a relay opened, after the target accepted), 'closed' (a relay ended),
 * 'refused' (a connection was reset on accept), 'cut' (a relay reset at its maximum age).
 */
export class FaultProxy extends EventEmitter {
  readonly counters: FaultProxyCounters = {
    accepted: 0,
    refused: 0,
    active: 0,
    cut: 0,
    forwarded: { upstream: 0, downstream: 0 },
    swallowed: { upstream: 0, downstream: 0 },
  }
  private readonly faults: Record<Direction, DirectionFaults> = {
    upstream: { delayMs: 0, blackHole: false, drip: undefined },
    downstream: { delayMs: 0, blackHole: false, drip: undefined },
  }
  private refusing = false
  private maxAgeMs: number | undefined
  private readonly relays = new Set<Relay>()
  private readonly server: net.Server
  private readonly targetHost: string
  private readonly targetPort: number

  private constructor(options: FaultProxyOptions) {
    super()
    this.targetHost = options.targetHost ?? '127.0.0.1'
    this.targetPort = options.targetPort
    this.server = net.createServer({ allowHalfOpen: true, noDelay: true }, (socket) => this.accept(socket))
  }

  /** Starts a proxy on 127.0.0.1, on a free port, relaying to the target. */
  static async start(options: FaultProxyOptions): Promise<FaultProxy> {
    const proxy = new FaultProxy(options)
    await new Promise<void>((resolve, reject) => {
      proxy.server.once('error', reject)
      proxy.server.listen(0, '127.0.0.1', () => {
        proxy.server.off('error', reject)
        resolve()
      })
    })
    return proxy
  }

  get port(): number {
    const address = this.server.address()
    if (address === null || typeof address === 'string') throw new Error('fault proxy is not listening')
    return address.port
  }

  /** The faults standing in a direction (read by each lane on every chunk). */
  faultsFor(direction: Direction): Readonly<DirectionFaults> {
    return this.faults[direction]
  }

  // ------------------------------------------------------------------ faults

  /** Resets every relayed connection now. Returns how many were cut. */
  cutAll(): number {
    const relays = [...this.relays]
    for (const relay of relays) relay.destroy(true)
    this.counters.cut += relays.length
    return relays.length
  }

  /** Holds each chunk `ms` milliseconds before forwarding it (0 removes the delay). */
  delay(ms: number, which: Directions = 'both'): void {
    if (!(ms >= 0)) throw new RangeError(`delay must be >= 0 ms, got ${ms}`)
    for (const direction of directionsOf(which)) this.faults[direction].delayMs = ms
  }

  /** Swallows every byte in a direction, silently, on every connection (false lifts it). */
  blackHole(which: Directions = 'both', on = true): void {
    for (const direction of directionsOf(which)) {
      this.faults[direction].blackHole = on
      for (const relay of this.relays) {
        if (on) relay.lanes[direction].discard()
        else relay.lanes[direction].pump()
      }
    }
  }

  /** Swallows every byte in a direction on the connections open now; new ones are not affected. */
  blackHoleEstablished(which: Directions = 'both'): number {
    for (const relay of this.relays) {
      for (const direction of directionsOf(which)) {
        relay.lanes[direction].ownBlackHole = true
        relay.lanes[direction].discard()
      }
    }
    return this.relays.size
  }

  /** Ends one direction of every current connection (a FIN to its receiver); the other still flows. */
  halfOpen(which: Directions): number {
    for (const relay of this.relays)
      for (const direction of directionsOf(which)) relay.lanes[direction].endNow()
    return this.relays.size
  }

  /** Forwards at most `bytes` per `tickMs` in a direction (undefined bytes removes the drip). */
  slowDrip(bytes: number | undefined, tickMs = 10, which: Directions = 'both'): void {
    if (bytes !== undefined && !(bytes >= 1 && Number.isInteger(bytes))) {
      throw new RangeError(`slowDrip needs a positive whole number of bytes, got ${bytes}`)
    }
    for (const direction of directionsOf(which)) {
      this.faults[direction].drip = bytes === undefined ? undefined : { bytes, tickMs }
      for (const relay of this.relays) relay.lanes[direction].pump()
    }
  }

  /** Resets new connections as soon as they are accepted (false accepts them again). */
  refuse(on = true): void {
    this.refusing = on
  }

  /**
   * Resets every connection, present and future, once it is `ms` old (counted in `cut`, with a
   * 'cut' event each); undefined lifts it.
   */
  cutAfter(ms: number | undefined): void {
    if (ms !== undefined && !(ms > 0)) throw new RangeError(`cutAfter needs a positive age, got ${ms}`)
    this.maxAgeMs = ms
    for (const relay of this.relays) this.scheduleAgeCut(relay)
  }

  private scheduleAgeCut(relay: Relay): void {
    if (relay.ageTimer !== undefined) clearTimeout(relay.ageTimer)
    relay.ageTimer = undefined
    if (this.maxAgeMs === undefined) return
    relay.ageTimer = setTimeout(
      () => {
        relay.destroy(true)
        this.counters.cut++
        this.emit('cut')
      },
      Math.max(0, relay.openedAt + this.maxAgeMs - Date.now()),
    )
  }

  /** Removes every standing fault (delay, black holes, drip, refusal, age cut); cut connections stay cut. */
  heal(): void {
    this.refusing = false
    this.cutAfter(undefined)
    for (const direction of DIRECTIONS) {
      this.faults[direction] = { delayMs: 0, blackHole: false, drip: undefined }
      for (const relay of this.relays) {
        relay.lanes[direction].ownBlackHole = false
        relay.lanes[direction].pump()
      }
    }
  }

  /** Stops listening and resets every connection. */
  async close(): Promise<void> {
    for (const relay of [...this.relays]) relay.destroy(true)
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }

  // ------------------------------------------------------------------ relaying

  private accept(client: net.Socket): void {
    if (this.refusing) {
      this.counters.refused++
      client.on('error', () => {})
      client.resetAndDestroy()
      this.emit('refused')
      return
    }
    client.pause()
    const upstream = net.connect({
      host: this.targetHost,
      port: this.targetPort,
      allowHalfOpen: true,
      noDelay: true,
    })
    // Until the target answers, a failure on either side just drops both.
    const failEarly = (): void => {
      client.destroy()
      upstream.destroy()
    }
    client.once('error', failEarly)
    upstream.once('error', failEarly)
    upstream.once('connect', () => {
      client.off('error', failEarly)
      upstream.off('error', failEarly)
      if (client.destroyed) {
        upstream.destroy()
        return
      }
      const relay = new Relay(this, client, upstream)
      this.relays.add(relay)
      this.scheduleAgeCut(relay)
      this.counters.accepted++
      this.counters.active = this.relays.size
      client.resume()
      this.emit('connection')
    })
  }

  /** Called by a relay once it is destroyed. */
  forget(relay: Relay): void {
    if (!this.relays.delete(relay)) return
    this.counters.active = this.relays.size
    this.emit('closed')
  }
}
