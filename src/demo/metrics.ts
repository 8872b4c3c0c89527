/**
 * The demo's figures, for the live dashboard (a sample per second on a realtime channel) and for
 * `GET /metrics` (Prometheus text format, through prom-client when it is installed).
 *
 * Where each figure comes from, so that none is a guess:
 * - sessions by transport: the realtime layer's connected clients, by their transport's kind;
 * - publications: every publish that goes through this node's bus (client and server publishes);
 * - deliveries: publications sent to subscribers on this node — a WebSocket broadcast counts
 *   the topic's sockets (the Rally server frames it once for all of them), the other transports
 *   count each publication envelope they are handed;
 * - bytes: read and written on every TCP connection of the HTTP server (pages, WebSockets,
 *   SSE streams and polls alike), as the kernel was handed them, TLS or not;
 * - event-loop lag (mean and max over the sample) and utilisation: node:perf_hooks;
 * - per-channel subscribers: the subscriptions of this node's sessions, sampled each second.
 */
import type { Server } from 'node:http'
import type { Socket } from 'node:net'
import { monitorEventLoopDelay, performance } from 'node:perf_hooks'
import type { Bus, BusPublication, PublishRequest } from '../pubsub/bus.js'
import type { Realtime } from '../realtime/index.js'
import type { RealtimeSession, SessionTransport } from '../realtime/session.js'
import type { RallyServer } from '../server/server.js'

/** Channels listed one by one in a sample and in /metrics; the rest are summed as "(other)". */
export const MAX_LISTED_CHANNELS = 20

/** The per-second view the dashboard charts. */
export interface MetricsSample {
  /** Milliseconds since the Unix epoch, at the end of the sample. */
  at: number
  /** This node (the bus's node id). */
  node: string
  /** Connected realtime sessions by transport kind ('websocket', 'sse', 'long-polling'). */
  sessions: Record<string, number>
  /** Open TCP connections to the HTTP server (pages, WebSockets, streams). */
  connections: number
  publicationsPerSecond: number
  deliveriesPerSecond: number
  bytesInPerSecond: number
  bytesOutPerSecond: number
  /** Event-loop delay beyond the monitor's own resolution, over the sample: mean and max (ms). */
  eventLoopLagMs: number
  eventLoopLagMaxMs: number
  /** Share of the sample the event loop was busy, 0 to 1. */
  eventLoopUtilization: number
  rssBytes: number
  heapUsedBytes: number
  /** Subscribers on this node by channel, most first (MAX_LISTED_CHANNELS, then "(other)"). */
  channels: { channel: string; subscribers: number }[]
}

/** Running totals since the demo started (Prometheus counters). */
export interface MetricsTotals {
  publications: number
  busDeliveries: number
  deliveries: Record<string, number>
  bytesIn: number
  bytesOut: number
  connectionsTotal: number
  sessionsTotal: Record<string, number>
}

const PUB_PUSH_PREFIX = '{"push":"pub"'
/** monitorEventLoopDelay's sampling period: a delay below it is the monitor itself. */
const LAG_RESOLUTION_MS = 20

function add(record: Record<string, number>, key: string, amount: number): void {
  record[key] = (record[key] ?? 0) + amount
}

/**
 * A bus that counts: every method goes to `bus` (bound to it: RedisBus and NatsBus keep private
 * fields), `publish` and `subscribe` are counted on the way. Whatever else the bus offers
 * (presenceTtl, status listeners) is reached unchanged.
 */
function countingBus(bus: Bus, totals: MetricsTotals): Bus {
  return new Proxy(bus, {
    get(target, property) {
      if (property === 'publish')
        return async (channel: string, request: PublishRequest) => {
          const position = await target.publish(channel, request)
          totals.publications++
          return position
        }
      if (property === 'subscribe')
        return (channel: string, deliver: (publication: BusPublication) => void) =>
          target.subscribe(channel, (publication) => {
            totals.busDeliveries++
            deliver(publication)
          })
      const value: unknown = Reflect.get(target, property, target)
      return typeof value === 'function' ? value.bind(target) : value
    },
  })
}

export class DemoMetrics {
  readonly totals: MetricsTotals = {
    publications: 0,
    busDeliveries: 0,
    deliveries: {},
    bytesIn: 0,
    bytesOut: 0,
    connectionsTotal: 0,
    sessionsTotal: {},
  }
  /** The last complete sample (undefined until the first interval ends). */
  latest: MetricsSample | undefined
  readonly bus: Bus

  readonly #node: string
  readonly #sockets = new Set<Socket>()
  /** Bytes of sockets already closed (live ones are read from the sockets themselves). */
  #closedBytesIn = 0
  #closedBytesOut = 0
  readonly #lag = monitorEventLoopDelay({ resolution: LAG_RESOLUTION_MS })
  #utilization = performance.eventLoopUtilization()
  #previous: { at: number; publications: number; deliveries: number; bytesIn: number; bytesOut: number }
  #realtime: Realtime | undefined

  constructor(bus: Bus) {
    this.bus = countingBus(bus, this.totals)
    this.#node = bus.nodeId
    this.#lag.enable()
    this.#previous = { at: Date.now(), publications: 0, deliveries: 0, bytesIn: 0, bytesOut: 0 }
  }

  /** Counts WebSocket deliveries: registered as one more "server" of the realtime layer's topics. */
  observeRealtime(realtime: Realtime, rally: RallyServer<unknown>): void {
    this.#realtime = realtime
    const totals = this.totals
    realtime.addServer({
      publish(topic: string) {
        // Called once per publication with WebSocket subscribers, beside the real server's own
        // broadcast: this one sends nothing, it reads how many sockets that broadcast reaches.
        const sockets = rally.subscriberCount(topic)
        add(totals.deliveries, 'websocket', sockets)
        return sockets
      },
    })
  }

  /** Wraps a session's transport so that publications sent one by one are counted. */
  countTransport(transport: SessionTransport): SessionTransport {
    const totals = this.totals
    const kind = transport.kind
    add(totals.sessionsTotal, kind, 1)
    const counted: SessionTransport = {
      kind,
      send(envelope) {
        if (envelope.startsWith(PUB_PUSH_PREFIX)) add(totals.deliveries, kind, 1)
        transport.send(envelope)
      },
      close: (code, reason) => transport.close(code, reason),
    }
    // Only transports that broadcast may look as if they do: the realtime layer picks the path by
    // whether joinBroadcast exists.
    if (transport.joinBroadcast !== undefined) {
      counted.joinBroadcast = (channel) => transport.joinBroadcast!(channel)
      counted.leaveBroadcast = (channel) => transport.leaveBroadcast?.(channel)
    }
    return counted
  }

  /** Counts the HTTP server's TCP connections and their bytes. */
  observeServer(server: Server): void {
    server.on('connection', (socket: Socket) => {
      this.totals.connectionsTotal++
      this.#sockets.add(socket)
      socket.once('close', () => {
        this.#sockets.delete(socket)
        this.#closedBytesIn += socket.bytesRead
        this.#closedBytesOut += socket.bytesWritten
      })
    })
  }

  /** Brings the byte totals up to now (live sockets are read where they stand). */
  #readBytes(): void {
    let bytesIn = this.#closedBytesIn
    let bytesOut = this.#closedBytesOut
    for (const socket of this.#sockets) {
      bytesIn += socket.bytesRead
      bytesOut += socket.bytesWritten
    }
    this.totals.bytesIn = bytesIn
    this.totals.bytesOut = bytesOut
  }

  /** Open TCP connections to the HTTP server. */
  get openConnections(): number {
    return this.#sockets.size
  }

  /** Connected sessions by transport, and subscribers by channel, on this node now. */
  sessionsNow(): { sessions: Record<string, number>; channels: Map<string, number> } {
    const sessions: Record<string, number> = {}
    const channels = new Map<string, number>()
    for (const session of this.#realtime?.clients.values() ?? ([] as RealtimeSession[])) {
      add(sessions, session.transport.kind, 1)
      for (const channel of session.subscriptions.keys())
        channels.set(channel, (channels.get(channel) ?? 0) + 1)
    }
    return { sessions, channels }
  }

  /** Reads the live figures now (byte totals included): for /metrics. */
  refresh(): ReturnType<DemoMetrics['sessionsNow']> {
    this.#readBytes()
    return this.sessionsNow()
  }

  /** Ends the current sample: rates over the time since the previous one. */
  sample(): MetricsSample {
    const now = Date.now()
    const { sessions, channels } = this.refresh()
    const seconds = Math.max(0.001, (now - this.#previous.at) / 1000)
    const deliveries = Object.values(this.totals.deliveries).reduce((sum, n) => sum + n, 0)
    const utilization = performance.eventLoopUtilization(this.#utilization)
    this.#utilization = performance.eventLoopUtilization()
    // The histogram has no sample until a full resolution period passed: NaN then, shown as 0.
    const lagMean = Number.isFinite(this.#lag.mean) ? this.#lag.mean / 1e6 : LAG_RESOLUTION_MS
    const lagMax = this.#lag.max > 0 ? this.#lag.max / 1e6 : LAG_RESOLUTION_MS
    this.#lag.reset()
    const sample: MetricsSample = {
      at: now,
      node: this.#node,
      sessions,
      connections: this.#sockets.size,
      publicationsPerSecond: (this.totals.publications - this.#previous.publications) / seconds,
      deliveriesPerSecond: (deliveries - this.#previous.deliveries) / seconds,
      bytesInPerSecond: (this.totals.bytesIn - this.#previous.bytesIn) / seconds,
      bytesOutPerSecond: (this.totals.bytesOut - this.#previous.bytesOut) / seconds,
      eventLoopLagMs: Math.max(0, lagMean - LAG_RESOLUTION_MS),
      eventLoopLagMaxMs: Math.max(0, lagMax - LAG_RESOLUTION_MS),
      eventLoopUtilization: utilization.utilization,
      rssBytes: process.memoryUsage.rss(),
      heapUsedBytes: process.memoryUsage().heapUsed,
      channels: listChannels(channels),
    }
    this.#previous = {
      at: now,
      publications: this.totals.publications,
      deliveries,
      bytesIn: this.totals.bytesIn,
      bytesOut: this.totals.bytesOut,
    }
    this.latest = sample
    return sample
  }

  close(): void {
    this.#lag.disable()
  }
}

/** The most subscribed channels, then one "(other)" entry for the rest (bounded labels). */
export function listChannels(
  channels: ReadonlyMap<string, number>,
): { channel: string; subscribers: number }[] {
  const sorted = [...channels].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
  const listed = sorted
    .slice(0, MAX_LISTED_CHANNELS)
    .map(([channel, subscribers]) => ({ channel, subscribers }))
  const rest = sorted.slice(MAX_LISTED_CHANNELS).reduce((sum, [, n]) => sum + n, 0)
  if (rest > 0) listed.push({ channel: '(other)', subscribers: rest })
  return listed
}
