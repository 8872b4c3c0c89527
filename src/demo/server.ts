/**
 * The demo app, `rally demo`: a Hono app on Rally's realtime layer. Each page's server side is a
 * DemoPage in its own module (channel rules, RPC methods, routes), registered in PAGES below;
 * every page shares one realtime layer at /rt (WebSocket, with SSE and long polling as
 * fallbacks), on the in-memory bus or, given a bus URL, as one node of a cluster. Beside the
 * pages: GET /healthz, GET /metrics (Prometheus), structured logs, and the primer's /realtime
 * echo. Pages and assets are served by the app itself (no CDN), from demo/public.
 */
import type { Server } from 'node:http'
import { createRequire } from 'node:module'
import { dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { serve } from '@hono/node-server'
import { serveStatic } from '@hono/node-server/serve-static'
import { Hono } from 'hono'
import { createNodeWebSocket, type NodeWebSocket } from '../adapters/hono/index.js'
import { busFromUrl } from '../pubsub/from-url.js'
import { MemoryBus } from '../pubsub/memory-bus.js'
import { mountRealtime } from '../realtime/hono.js'
import type { ChannelRule, RpcHandler } from '../realtime/hub.js'
import { createRealtime, type Realtime } from '../realtime/index.js'
import { mountTransports } from '../realtime/transports/hono.js'
import { HttpTransports } from '../realtime/transports/http.js'
import { comparePage } from './alternatives.js'
import { chatReceiptsPage } from './chat-receipts.js'
import { serveClientModule } from './client-module.js'
import { dashboardPage } from './dashboard.js'
import { gamePage } from './game.js'
import { authenticateNick, chatPage, LIVE_PATH, type Live, notifyPage, notifyTokenFor } from './live.js'
import { createLogger, errorFields, type Logger, type LogLevel } from './logging.js'
import { DemoMetrics } from './metrics.js'
import { type PromClient, prometheusExposition } from './prometheus.js'
import { redactUrl } from './settings.js'
import { signalingPage } from './signaling.js'

/** demo/public, from src/demo (tsx) and dist/demo (built) alike. */
const PUBLIC_DIR = fileURLToPath(new URL('../../demo/public/', import.meta.url))
/**
 * uPlot's files (the dashboard's charts), served at /vendor/uplot/ from wherever npm installed the
 * package (no CDN); undefined when it is not installed — the dashboard then says so.
 */
const UPLOT_DIR = uplotDirectory()

function uplotDirectory(): string | undefined {
  try {
    // Its `main` is dist/uPlot.cjs.js: the directory holds the ES module and the CSS too.
    return dirname(createRequire(import.meta.url).resolve('uplot'))
  } catch {
    return undefined
  }
}

export interface DemoOptions {
  port?: number
  host?: string
  /** redis://, rediss://, nats:// or tls:// — one node of a cluster. Default: one process's in-memory bus. */
  busUrl?: string
  /** The structured logs' level. Default 'error' (the CLI passes its setting, default 'info'). */
  logLevel?: LogLevel
  /** Where log lines go (without their newline). Default stdout. */
  logWrite?: (line: string) => void
  /** How often the dashboard's figures are sampled and published (ms). Default 1000. */
  statsInterval?: number
  /** Bearer token for POST /api/notify; default RALLY_NOTIFY_TOKEN, else a random one. */
  notifyToken?: string
  /** How /metrics loads prom-client (tests replace it to see the 501). Default `import('prom-client')`. */
  loadPromClient?: () => Promise<PromClient>
}

/** What a page may use before the realtime layer exists (to build its RPC methods). */
export interface DemoSetup {
  options: DemoOptions
  log: Logger
  metrics: DemoMetrics
}

/** What a page's install step receives. */
export interface DemoContext extends DemoSetup {
  app: Hono
  nodeWebSocket: NodeWebSocket
  realtime: Realtime
  live: Live
}

/** One page's server side. */
export interface DemoPage {
  /** For logs and errors. */
  readonly name: string
  /** Channel rules it adds to the shared realtime layer (patterns must not clash with others'). */
  // biome-ignore lint/suspicious/noExplicitAny: each page types its channels' data its own way
  readonly channels?: Record<string, ChannelRule<any>>
  /** RPC methods it adds, or a function making them from the demo's setup. */
  readonly rpc?: // biome-ignore lint/suspicious/noExplicitAny: each page types its RPC parameters its own way
    | Record<string, RpcHandler<any, any>>
    // biome-ignore lint/suspicious/noExplicitAny: each page types its RPC parameters its own way
    | ((setup: DemoSetup) => Record<string, RpcHandler<any, any>>)
  /** Mounts its routes (before the static files) and starts what it runs; returns its stop. */
  install?(demo: DemoContext): void | (() => void | Promise<void>)
}

/**
 * The pages, one line each. Their routes are mounted in this order, after the realtime layer,
 * /healthz and /metrics, and before the static files of demo/public.
 */
const PAGES: readonly DemoPage[] = [
  chatPage,
  notifyPage,
  dashboardPage,
  chatReceiptsPage,
  gamePage,
  signalingPage,
  comparePage,
]

export interface Demo {
  server: Server
  port: number
  /** The realtime layer and the notify endpoint's token. */
  live: Live
  metrics: DemoMetrics
  log: Logger
  close(): Promise<void>
}

/** Merges the pages' channel rules and RPC methods; a name two pages claim is a programming error. */
function collect<T>(pages: readonly DemoPage[], pick: (page: DemoPage) => Record<string, T> | undefined) {
  const merged: Record<string, T> = {}
  const owner = new Map<string, string>()
  for (const page of pages) {
    for (const [name, value] of Object.entries(pick(page) ?? {})) {
      const previous = owner.get(name)
      if (previous !== undefined)
        throw new Error(`demo pages ${previous} and ${page.name} both define "${name}"`)
      owner.set(name, page.name)
      merged[name] = value
    }
  }
  return merged
}

/** Bounds the bus check of /healthz: a broker that does not answer within it is down. */
const HEALTH_TIMEOUT_MS = 2000

export async function startDemo(options: DemoOptions = {}): Promise<Demo> {
  const log = createLogger({ level: options.logLevel ?? 'error', write: options.logWrite })
  const bus = options.busUrl ? await busFromUrl(options.busUrl) : new MemoryBus()
  // A broker lost and found again: the two moments an operator looks for in the logs.
  bus.onStatus((status) => (status === 'down' ? log.warn('bus-down') : log.info('bus-up')))
  const metrics = new DemoMetrics(bus)
  const setup: DemoSetup = { options, log, metrics }

  const app = new Hono()
  const nodeWebSocket = createNodeWebSocket({
    app,
    perMessageDeflate: true,
    error(error) {
      // Peers vanishing (a closed tab resets its TCP connection) and peers breaking the protocol
      // are routine: debug. Anything else is an error.
      const code = (error as NodeJS.ErrnoException | undefined)?.code
      const routine =
        code === 'ECONNRESET' ||
        code === 'EPIPE' ||
        (error instanceof Error && error.name === 'ProtocolError')
      log[routine ? 'debug' : 'error']('websocket-error', errorFields(error))
    },
  })
  const { upgradeWebSocket, injectWebSocket, rally } = nodeWebSocket

  const realtime = createRealtime({
    bus: metrics.bus,
    authenticate(request, token, session) {
      const outcome = authenticateNick(request, token)
      if ('refuse' in outcome)
        log.info('refuse', {
          client: session.client,
          transport: session.transport.kind,
          reason: outcome.refuse,
        })
      else
        log.info('connect', { client: session.client, transport: session.transport.kind, user: outcome.user })
      return outcome
    },
    channels: collect(PAGES, (page) => page.channels),
    rpc: collect(PAGES, (page) => (typeof page.rpc === 'function' ? page.rpc(setup) : page.rpc)),
    onError(error, session) {
      log.error('realtime-error', { ...errorFields(error), client: session?.client })
    },
  })
  observeSessions(realtime, metrics, log)
  metrics.observeRealtime(realtime, rally)

  // The primer's endpoint: an echo on a plain WebSocket.
  app.get(
    '/realtime',
    upgradeWebSocket(() => ({
      onMessage(event, ws) {
        ws.send(typeof event.data === 'string' ? `echo: ${event.data}` : (event.data as ArrayBuffer))
      },
    })),
  )

  // The realtime layer at /rt: WebSocket, then SSE and long polling for networks that block it.
  const transports = new HttpTransports(realtime, { path: LIVE_PATH })
  mountTransports(app, transports)
  mountRealtime(app, realtime, nodeWebSocket, LIVE_PATH)
  serveClientModule(app)

  app.get('/healthz', async (c) => {
    const bus = await busHealth(realtime)
    const body = {
      status: bus.up ? 'ok' : 'unavailable',
      node: metrics.bus.nodeId,
      bus: { kind: busKind(options.busUrl), up: bus.up, ...(bus.error ? { error: bus.error } : {}) },
      sessions: realtime.clients.size,
      uptimeSeconds: Math.round(process.uptime()),
    }
    // 503 takes the node out of a load balancer's rotation while its broker is unreachable.
    return c.json(body, bus.up ? 200 : 503, { 'Cache-Control': 'no-store' })
  })
  const expose = prometheusExposition(metrics, rally, options.loadPromClient)
  app.get('/metrics', async (c) => {
    const result = await expose()
    return c.body(result.body, result.status, {
      'Content-Type': result.contentType,
      'Cache-Control': 'no-store',
    })
  })

  const { token: notifyToken, generated } = notifyTokenFor(options.notifyToken)
  const live: Live = { realtime, notifyToken, notifyTokenGenerated: generated }
  const context: DemoContext = { ...setup, app, nodeWebSocket, realtime, live }
  const stops: (() => void | Promise<void>)[] = []
  for (const page of PAGES) {
    const stop = page.install?.(context)
    if (stop) stops.push(stop)
  }

  app.get('/', (c) => c.redirect('/index.html'))
  app.get('/chat', (c) => c.redirect('/chat.html'))
  app.get('/dashboard', (c) => c.redirect('/dashboard.html'))
  if (UPLOT_DIR !== undefined)
    app.use(
      '/vendor/uplot/*',
      serveStatic({ root: UPLOT_DIR, rewriteRequestPath: (path) => path.slice('/vendor/uplot'.length) }),
    )
  else app.get('/vendor/uplot/*', (c) => c.text('uPlot is not installed here: npm install uplot\n', 404))
  // Content types come from hono's table (favicon.ico, which browsers ask for by themselves, is
  // image/x-icon); paths with `..` or encoded separators are refused by serveStatic and end as 404.
  app.use('/*', serveStatic({ root: PUBLIC_DIR }))
  app.notFound((c) => c.text('Not found', 404))
  // A route that throws: logged with its stack, and the client gets a plain 500 without it.
  app.onError((error, c) => {
    log.error('http-error', { ...errorFields(error), method: c.req.method, path: c.req.path })
    return c.text('Internal Server Error', 500)
  })

  let server: Server
  try {
    server = await new Promise<Server>((resolve, reject) => {
      const created = serve({ fetch: app.fetch, port: options.port ?? 3000, hostname: options.host }, () =>
        resolve(created as Server),
      ) as Server
      created.once('error', reject)
    })
  } catch (error) {
    // The port is taken (or the host wrong): release what started, then fail.
    for (const stop of stops) await stop()
    transports.close()
    await realtime.close()
    await bus.close()
    metrics.close()
    throw error
  }
  injectWebSocket(server)
  metrics.observeServer(server)
  const address = server.address()
  const port = typeof address === 'object' && address !== null ? address.port : (options.port ?? 3000)
  log.info('listening', {
    host: options.host ?? '0.0.0.0',
    port,
    bus: options.busUrl === undefined ? 'memory' : redactUrl(options.busUrl),
    node: metrics.bus.nodeId,
  })

  let closing: Promise<void> | undefined
  return {
    server,
    port,
    live,
    metrics,
    log,
    close() {
      closing ??= (async () => {
        for (const stop of stops) await stop()
        transports.close()
        await realtime.close()
        await rally.close()
        await new Promise<void>((resolve) => server.close(() => resolve()))
        // createRealtime closes only a bus it made: this one is the demo's.
        await bus.close()
        metrics.close()
        log.info('closed', { port })
      })()
      return closing
    },
  }
}

function busKind(url: string | undefined): string {
  if (url === undefined) return 'memory'
  const scheme = new URL(url).protocol
  return scheme === 'redis:' || scheme === 'rediss:' ? 'redis' : scheme.slice(0, -1)
}

/**
 * Whether the bus works: down when it says so itself (a broker bus reports losing its
 * connection), else when a history read of no publication fails or takes over HEALTH_TIMEOUT_MS.
 */
async function busHealth(realtime: Realtime): Promise<{ up: boolean; error?: string }> {
  if (realtime.bus.status === 'down')
    return { up: false, error: 'the bus reports its broker connection down' }
  let timer: ReturnType<typeof setTimeout> | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${HEALTH_TIMEOUT_MS} ms`)), HEALTH_TIMEOUT_MS)
  })
  try {
    await Promise.race([realtime.bus.history('rally-demo:healthz', { limit: 0 }), timeout])
    return { up: true }
  } catch (error) {
    return { up: false, error: error instanceof Error ? error.message : String(error) }
  } finally {
    clearTimeout(timer)
  }
}

/**
 * Counts each session's publications (metrics) and logs how it ends. The realtime layer has no
 * session-end hook, so the demo wraps what it can see: the transport it is given (a server-side
 * disconnect closes it with a code and reason) and the session's `transportClosed` (the peer or
 * the network ended it). Both wrappers live on the demo's own sessions only.
 */
function observeSessions(realtime: Realtime, metrics: DemoMetrics, log: Logger): void {
  const open = realtime.openSession.bind(realtime)
  realtime.openSession = (transport, request) => {
    let ended = false
    const counted = metrics.countTransport(transport)
    const close = counted.close
    const session = open(
      Object.assign(counted, {
        close(code: number, reason: string) {
          if (!ended) {
            ended = true
            log.info('disconnect', {
              client: session.client,
              transport: transport.kind,
              user: session.user,
              code,
              reason,
              by: 'server',
            })
          }
          close(code, reason)
        },
      }),
      request,
    )
    const transportClosed = session.transportClosed.bind(session)
    session.transportClosed = () => {
      if (!ended && !session.isClosed) {
        ended = true
        log.info('disconnect', {
          client: session.client,
          transport: transport.kind,
          user: session.user,
          reason: 'the connection closed (the client left, or the network dropped it)',
          by: 'client',
        })
      }
      transportClosed()
    }
    return session
  }
}
