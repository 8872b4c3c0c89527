/**
 * The live dashboard's server side: each node publishes its figures (metrics.ts) once per
 * interval on its own channel, `metrics:<node>`, which keeps the last two minutes as history so
 * that a page opened now draws them at once. A page asks the node it is connected to for that
 * channel (RPC `dashboard.channel`): behind a load balancer it charts the node that serves it,
 * and after a reconnect to another node, that one.
 */
import type { DemoPage } from './server.js'

/** Samples kept for a page that opens: two minutes at the default interval. */
export const DASHBOARD_HISTORY = 120

export const dashboardPage: DemoPage = {
  name: 'dashboard',
  channels: {
    // Only the server publishes; anyone connected (no nickname needed) may watch.
    'metrics:*': { history: { size: DASHBOARD_HISTORY, ttl: 10 * 60_000 } },
  },
  rpc: ({ metrics }) => ({
    'dashboard.channel': () => ({ channel: `metrics:${metrics.bus.nodeId}`, node: metrics.bus.nodeId }),
  }),
  install({ realtime, metrics, log, options }) {
    const channel = `metrics:${metrics.bus.nodeId}`
    const interval = options.statsInterval ?? 1000
    const timer = setInterval(() => {
      realtime.publish(channel, metrics.sample()).catch((error: unknown) => {
        // A bus outage: the sample is lost (the next one follows), the failure is logged once per
        // sample at debug level since the bus reports the outage itself.
        log.debug('metrics-publish-failed', { error: String(error) })
      })
    }, interval)
    timer.unref()
    return () => clearInterval(timer)
  },
}
