/**
 * The demo app, `rally demo`: a Hono app on Rally with a chat, a live dashboard and the primer's
 * `/realtime` echo. Pages and assets are served by the app itself (no CDN), from demo/public.
 */
import type { Server } from 'node:http'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { serve } from '@hono/node-server'
import { serveStatic } from '@hono/node-server/serve-static'
import { Hono } from 'hono'
import { createNodeWebSocket } from '../adapters/hono/index.js'
import type { ServerStats } from '../server/types.js'
import { installLive, type Live } from './live.js'

/** demo/public, from src/demo (tsx) and dist/demo (built) alike. */
const PUBLIC_DIR = fileURLToPath(new URL('../../demo/public/', import.meta.url))

export interface DemoOptions {
  port?: number
  host?: string
  /** How often the dashboard figures are pushed (ms). Default 1000. */
  statsInterval?: number
  /** Bearer token for POST /api/notify; default RALLY_NOTIFY_TOKEN, else a random one. */
  notifyToken?: string
}

export interface Demo {
  server: Server
  port: number
  /** The realtime layer (chat, notifications) and the notify endpoint's token. */
  live: Live
  close(): Promise<void>
}

/** Figures pushed to the dashboard every interval. */
export interface DashboardSample {
  at: number
  connections: number
  messagesInPerSecond: number
  messagesOutPerSecond: number
  bytesInPerSecond: number
  bytesOutPerSecond: number
  eventLoopLagMs: number
  rssBytes: number
}

export async function startDemo(options: DemoOptions = {}): Promise<Demo> {
  const app = new Hono()
  const nodeWebSocket = createNodeWebSocket({
    app,
    perMessageDeflate: true,
    error(error) {
      // Peers breaking the protocol or vanishing (a closed tab resets its TCP connection) are
      // routine; anything else is printed.
      const code = (error as NodeJS.ErrnoException | undefined)?.code
      if (code === 'ECONNRESET' || code === 'EPIPE') return
      if (!(error instanceof Error) || error.name !== 'ProtocolError') console.error(error)
    },
  })
  const { upgradeWebSocket, injectWebSocket, rally } = nodeWebSocket

  app.get(
    '/realtime',
    upgradeWebSocket(() => ({
      onMessage(event, ws) {
        ws.send(typeof event.data === 'string' ? `echo: ${event.data}` : (event.data as ArrayBuffer))
      },
    })),
  )

  const history: DashboardSample[] = []
  app.get(
    '/ws/dashboard',
    upgradeWebSocket(() => ({
      onOpen(_event, ws) {
        ws.raw!.subscribe('dashboard')
        ws.send(JSON.stringify({ type: 'history', samples: history }))
      },
    })),
  )

  // The realtime layer at /rt, POST /api/notify and /rally/client/*.js, before the static files.
  const live = installLive(app, nodeWebSocket, { notifyToken: options.notifyToken })

  app.get('/', (c) => c.redirect('/index.html'))
  app.get('/chat', (c) => c.redirect('/chat.html'))
  app.get('/dashboard', (c) => c.redirect('/dashboard.html'))
  // Content types come from hono's table (favicon.ico, which browsers ask for by themselves, is
  // image/x-icon); paths with `..` or encoded separators are refused by serveStatic and end as 404.
  app.use('/*', serveStatic({ root: PUBLIC_DIR }))
  app.notFound((c) => c.text('Not found', 404))

  // Dashboard figures: rates from the difference of two snapshots of server.stats().
  const lag = monitorEventLoopDelay({ resolution: 20 })
  lag.enable()
  const interval = options.statsInterval ?? 1000
  let previous: ServerStats = rally.stats()
  let previousAt = Date.now()
  const timer = setInterval(() => {
    const now = Date.now()
    const stats = rally.stats()
    const seconds = Math.max(0.001, (now - previousAt) / 1000)
    const sample: DashboardSample = {
      at: now,
      connections: stats.connections,
      messagesInPerSecond: (stats.messagesIn - previous.messagesIn) / seconds,
      messagesOutPerSecond: (stats.messagesOut - previous.messagesOut) / seconds,
      bytesInPerSecond: (stats.bytesIn - previous.bytesIn) / seconds,
      bytesOutPerSecond: (stats.bytesOut - previous.bytesOut) / seconds,
      eventLoopLagMs: Math.max(0, lag.mean / 1e6 - 20),
      rssBytes: process.memoryUsage.rss(),
    }
    lag.reset()
    previous = stats
    previousAt = now
    history.push(sample)
    if (history.length > 120) history.shift()
    rally.publish('dashboard', JSON.stringify({ type: 'sample', sample }))
  }, interval)
  timer.unref()

  const server = await new Promise<Server>((resolve, reject) => {
    const created = serve({ fetch: app.fetch, port: options.port ?? 3000, hostname: options.host }, () =>
      resolve(created as Server),
    ) as Server
    created.once('error', reject)
  })
  injectWebSocket(server)
  const address = server.address()
  const port = typeof address === 'object' && address !== null ? address.port : (options.port ?? 3000)

  return {
    server,
    port,
    live,
    async close() {
      clearInterval(timer)
      lag.disable()
      await live.close()
      await rally.close()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}
