/**
 * `GET /metrics` in the Prometheus text exposition format, written by prom-client — an optional
 * peer dependency, imported on the first request: without it the demo runs the same and
 * /metrics answers 501 saying what to install.
 *
 * Every figure is read at scrape time from DemoMetrics (the counters are running totals, never
 * reset), plus prom-client's default process and Node.js metrics (memory, CPU, GC, handles).
 */
import type { RallyServer } from '../server/server.js'
import type { DemoMetrics } from './metrics.js'
import { listChannels, MAX_LISTED_CHANNELS } from './metrics.js'

export type PromClient = typeof import('prom-client')

export type ExpositionResult =
  | { status: 200; contentType: string; body: string }
  | { status: 501; contentType: string; body: string }

/** The message /metrics answers when prom-client is not installed. */
export const PROM_CLIENT_MISSING =
  'GET /metrics needs the optional peer dependency prom-client: npm install prom-client\n'

function isModuleMissing(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code
  return code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND'
}

/** Builds the registry once prom-client is loaded; `expose()` renders it. */
export function prometheusExposition(
  metrics: DemoMetrics,
  rally: RallyServer<unknown>,
  load: () => Promise<PromClient> = () => import('prom-client'),
): () => Promise<ExpositionResult> {
  let registry: Promise<import('prom-client').Registry | undefined> | undefined

  async function build(): Promise<import('prom-client').Registry | undefined> {
    let prom: PromClient
    try {
      prom = await load()
    } catch (error) {
      if (isModuleMissing(error)) return undefined
      throw error
    }
    const register = new prom.Registry()
    const registers = [register]
    prom.collectDefaultMetrics({ register })

    // Counters from running totals: reset, then set to the total (prom-client has no set on a
    // counter; the exposed value is what matters, and it never goes down).
    const totalCounter = (name: string, help: string, read: () => number) =>
      new prom.Counter({
        name,
        help,
        registers,
        collect() {
          this.reset()
          this.inc(read())
        },
      })
    const labelledCounter = (name: string, help: string, label: string, read: () => Record<string, number>) =>
      new prom.Counter({
        name,
        help,
        labelNames: [label],
        registers,
        collect() {
          this.reset()
          for (const [value, total] of Object.entries(read())) this.inc({ [label]: value }, total)
        },
      })
    const gauge = (name: string, help: string, read: () => number) =>
      new prom.Gauge({
        name,
        help,
        registers,
        collect() {
          this.set(read())
        },
      })

    const totals = metrics.totals
    new prom.Gauge({
      name: 'rally_sessions',
      help: 'Connected realtime sessions on this node, by transport',
      labelNames: ['transport'],
      registers,
      collect() {
        this.reset()
        const { sessions } = metrics.refresh()
        for (const [transport, count] of Object.entries(sessions)) this.set({ transport }, count)
      },
    })
    labelledCounter(
      'rally_sessions_total',
      'Realtime sessions opened, by transport',
      'transport',
      () => totals.sessionsTotal,
    )
    gauge('rally_connections', 'Open TCP connections to the HTTP server', () => metrics.openConnections)
    totalCounter(
      'rally_connections_total',
      'TCP connections accepted by the HTTP server',
      () => totals.connectionsTotal,
    )
    totalCounter('rally_publications_total', 'Publications made through this node', () => totals.publications)
    totalCounter(
      'rally_bus_deliveries_total',
      "Publications the bus delivered to this node (every node's, for channels subscribed here)",
      () => totals.busDeliveries,
    )
    labelledCounter(
      'rally_deliveries_total',
      'Publications sent to subscribers on this node, by transport',
      'transport',
      () => totals.deliveries,
    )
    totalCounter('rally_received_bytes_total', 'Bytes read on the HTTP server connections', () => {
      metrics.refresh()
      return totals.bytesIn
    })
    totalCounter('rally_sent_bytes_total', 'Bytes written on the HTTP server connections', () => {
      metrics.refresh()
      return totals.bytesOut
    })
    totalCounter(
      'rally_websocket_messages_received_total',
      'WebSocket messages received',
      () => rally.stats().messagesIn,
    )
    totalCounter(
      'rally_websocket_messages_sent_total',
      'WebSocket messages sent',
      () => rally.stats().messagesOut,
    )
    new prom.Gauge({
      name: 'rally_channel_subscribers',
      help: `Subscribers on this node by channel (the ${MAX_LISTED_CHANNELS} most subscribed, then "(other)")`,
      labelNames: ['channel'],
      registers,
      collect() {
        this.reset()
        for (const { channel, subscribers } of listChannels(metrics.refresh().channels))
          this.set({ channel }, subscribers)
      },
    })
    gauge(
      'rally_event_loop_lag_seconds',
      'Mean event-loop delay over the last one-second sample',
      () => (metrics.latest?.eventLoopLagMs ?? 0) / 1000,
    )
    gauge(
      'rally_event_loop_lag_max_seconds',
      'Longest event-loop delay in the last one-second sample',
      () => (metrics.latest?.eventLoopLagMaxMs ?? 0) / 1000,
    )
    gauge(
      'rally_event_loop_utilization_ratio',
      'Share of the last one-second sample the event loop was busy',
      () => metrics.latest?.eventLoopUtilization ?? 0,
    )
    return register
  }

  return async () => {
    registry ??= build()
    const register = await registry
    if (register === undefined)
      return { status: 501, contentType: 'text/plain; charset=utf-8', body: PROM_CLIENT_MISSING }
    return { status: 200, contentType: register.contentType, body: await register.metrics() }
  }
}
