/**
 * `rally demo`: the demo app (chat, notifications, live dashboard, the primer's /realtime echo).
 * Needs the optional peer dependencies `hono` and `@hono/node-server`; a bus URL needs `redis`
 * or the `@nats-io` packages, `GET /metrics` needs `prom-client`.
 */
import { exitOnSignal, parseFlags, UsageError } from './args.js'

export const DEMO_HELP = `Usage: rally demo [--port 3000] [--host 127.0.0.1] [--bus <url>] [--log-level info]

The demo app: a chat with rooms, presence and history, push notifications, a live dashboard of
the server's figures, and the primer's /realtime echo endpoint. Open http://localhost:3000.
SIGINT or SIGTERM closes every connection and exits 0.

Settings (a flag wins over the environment):
  --port <n>          PORT             default 3000 (0 picks a free port)
  --host <address>    HOST             default 127.0.0.1 (0.0.0.0 listens on every interface)
  --bus <url>         REDIS_URL, else NATS_URL
                      redis://, rediss://, nats:// or tls://: this process is one node of a cluster,
                      sharing channels, history and presence with every node on that broker.
                      Default: one process's in-memory bus.
  --log-level <lvl>   RALLY_LOG_LEVEL, else LOG_LEVEL
                      debug, info, warn, error or silent; default info. Logs are JSON lines on
                      stdout, one per event (listening, connect, disconnect with its reason, errors).

Operations:
  GET /healthz        200 {"status":"ok",…}; 503 while the bus does not answer
  GET /metrics        Prometheus text format (needs prom-client installed; 501 without it)

POST /api/notify {"user", "title", "body"?} with "Authorization: Bearer <token>" notifies a user;
the token is RALLY_NOTIFY_TOKEN, or a random one printed at start.`

export async function runDemo(argv: string[]): Promise<void> {
  const { values } = parseFlags(argv, {
    host: { type: 'string' },
    port: { type: 'string' },
    bus: { type: 'string' },
    'log-level': { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  })
  if (values.help) {
    console.log(DEMO_HELP)
    return
  }
  let startDemo: typeof import('../demo/server.js').startDemo
  let demoSettings: typeof import('../demo/settings.js').demoSettings
  try {
    ;({ startDemo } = await import('../demo/server.js'))
    ;({ demoSettings } = await import('../demo/settings.js'))
  } catch (error) {
    throw new UsageError(
      `the demo needs hono and @hono/node-server installed (${(error as Error).message.split('\n')[0]})`,
    )
  }
  let settings: ReturnType<typeof demoSettings>
  try {
    settings = demoSettings({
      port: values.port as string | undefined,
      host: values.host as string | undefined,
      bus: values.bus as string | undefined,
      logLevel: values['log-level'] as string | undefined,
    })
  } catch (error) {
    throw new UsageError((error as Error).message)
  }
  let close: (() => Promise<void>) | undefined
  exitOnSignal(() => close?.() ?? Promise.resolve())
  const demo = await startDemo({
    port: settings.port,
    host: settings.host,
    busUrl: settings.busUrl,
    logLevel: settings.logLevel,
  })
  close = () => demo.close()
  const host = settings.host
  const shown = host.includes(':') ? `[${host}]` : host === '127.0.0.1' ? 'localhost' : host
  // For people: the JSON lines carry the same, for machines.
  console.error(`rally demo: open http://${shown}:${demo.port}`)
  // The token is the only way to use POST /api/notify: a generated one is useless unless shown.
  if (demo.live.notifyTokenGenerated)
    console.error(
      `rally demo: POST /api/notify token: ${demo.live.notifyToken} (set RALLY_NOTIFY_TOKEN to choose it)`,
    )
}
