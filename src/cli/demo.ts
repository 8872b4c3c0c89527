/**
 * `rally demo`: the demo app (chat, live dashboard, the primer's /realtime echo) on an
 * in-memory bus. Needs the optional peer dependencies `hono` and `@hono/node-server`.
 */
import { exitOnSignal, parseFlags, parsePort, UsageError } from './args.js'

export const DEMO_HELP = `Usage: rally demo [--port 3000] [--host 127.0.0.1]

The demo app: a chat with rooms and history, a live dashboard of the server's figures, and the
primer's /realtime echo endpoint. Open http://localhost:3000. SIGINT or SIGTERM closes every
connection with 1001 and exits 0.

The chat (/chat.html) and notifications (/notify.html) run on the realtime layer.
POST /api/notify {"user", "title", "body"?} with "Authorization: Bearer <token>" notifies a user;
the token is RALLY_NOTIFY_TOKEN, or a random one printed at start.

The demo runs as one process on in-memory topics: REDIS_URL and NATS_URL are not used by it yet
(createRealtime with RedisBus or NatsBus runs as a cluster node: see docs/cluster.md).`

export async function runDemo(argv: string[]): Promise<void> {
  const { values } = parseFlags(argv, {
    host: { type: 'string' },
    port: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  })
  if (values.help) {
    console.log(DEMO_HELP)
    return
  }
  const port = parsePort(values.port as string | undefined, 3000)
  const host = (values.host as string | undefined) ?? '127.0.0.1'
  let startDemo: typeof import('../demo/server.js').startDemo
  try {
    ;({ startDemo } = await import('../demo/server.js'))
  } catch (error) {
    throw new UsageError(
      `the demo needs hono and @hono/node-server installed (${(error as Error).message.split('\n')[0]})`,
    )
  }
  let close: (() => Promise<void>) | undefined
  exitOnSignal(() => close?.() ?? Promise.resolve())
  const demo = await startDemo({ port, host })
  close = () => demo.close()
  const shown = host.includes(':') ? `[${host}]` : host === '127.0.0.1' ? 'localhost' : host
  console.log(`listening on http://${shown}:${demo.port}`)
  // The token is the only way to use POST /api/notify: a generated one is useless unless shown.
  if (demo.live.notifyTokenGenerated)
    console.log(`POST /api/notify token: ${demo.live.notifyToken} (set RALLY_NOTIFY_TOKEN to choose it)`)
  // Said plainly rather than ignored in silence: someone setting these expects a cluster node.
  for (const name of ['REDIS_URL', 'NATS_URL'] as const) {
    if (process.env[name])
      console.error(
        `rally demo: ${name} is set but not used — the demo runs on one process's in-memory topics (see docs/cluster.md for createRealtime on a broker)`,
      )
  }
}
