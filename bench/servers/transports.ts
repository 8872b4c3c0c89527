/**
 * Rally's real-time layer with every transport on one path (issue 13): `/rt` takes rally.v1
 * WebSockets, and its HTTP routes (`/rt/open`, `/rt/sse`, `/rt/poll`, `/rt/send`) serve SSE and
 * long polling. Subscribers subscribe to the channel "bench"; each publication is made with
 * `realtime.publish('bench', text)` — one envelope per publication, shared by every subscriber
 * whatever its transport.
 *
 * `--http rally` (default): on Rally's own port (`listenTransports`, its own HTTP/1.1 handling);
 * the load generator's publisher is a rally.v1 WebSocket calling the RPC `publish` (Rally's own
 * port serves WebSocket upgrades at `/rt` only). `--http node`: on a node:http server
 * (`attachTransports`'s way, as behind Express or Hono); the publisher is a plain WebSocket on
 * `/pub`, each of its messages published (the C load generator's cluster scenarios use it).
 *
 * `--redis URL` makes it one node of a cluster on RedisBus (issue 14): a publication on one node
 * goes through Redis to the subscribers of every node. `--history N` keeps N publications of
 * "bench" (recovery on: the offset, stream append and publish are one Redis script).
 *
 * Settings that differ from the defaults, and why:
 * - no WebSocket-level heartbeat (rally.v1 has its own, on as in any app), as bench/servers/realtime.ts;
 * - `commandRate` raised: the one publisher's RPCs come at the publication rate (hundreds a
 *   second), above the 200 commands a second allowed to one client by default;
 * - `maxSessionsPerIp` raised: every subscriber of the load generator comes from 127.0.0.1, where
 *   an app would see one address per browser.
 */
import { createServer as createHttpServer } from 'node:http'
import type { Bus } from '../../src/pubsub/bus.js'
import { createRealtime } from '../../src/realtime/index.js'
import { HttpTransports, listenTransports } from '../../src/realtime/transports/http.js'
import { createServer } from '../../src/server/server.js'
import { announce, TOPIC } from './common.js'

process.setSourceMapsEnabled(false)

interface Args {
  redis: string | undefined
  history: number
  http: 'rally' | 'node'
}

function parseArgs(argv: string[]): Args {
  const args: Args = { redis: undefined, history: 0, http: 'rally' }
  for (let i = 0; i < argv.length; i += 2) {
    const value = argv[i + 1]
    if (argv[i] === '--redis' && value !== undefined) args.redis = value
    else if (argv[i] === '--http' && (value === 'rally' || value === 'node')) args.http = value
    else if (argv[i] === '--history' && value !== undefined && /^\d+$/.test(value))
      args.history = Number(value)
    else {
      console.error(`bad argument: ${argv[i]} ${value ?? ''}`)
      process.exit(2)
    }
  }
  return args
}

const args = parseArgs(process.argv.slice(2))

let bus: Bus | undefined
if (args.redis !== undefined) {
  const { RedisBus } = await import('../../src/adapters/redis/index.js')
  bus = await RedisBus.connect({ url: args.redis })
}

const realtime = createRealtime({
  ...(bus === undefined ? {} : { bus }),
  channels: {
    [TOPIC]: args.history > 0 ? { history: { size: args.history, ttl: 600_000 } } : {},
  },
  rpc: {
    publish: async (_session, data) => {
      await realtime.publish(TOPIC, data)
      return null
    },
  },
  limits: { commandRate: 1_000_000 },
  onError(error) {
    // The load generators reset their connections at the end of a run; anything else is a fault.
    const code = (error as { code?: unknown }).code
    if (code !== 'ECONNRESET' && code !== 'EPIPE') console.error('realtime:', error)
  },
})

function onExit(close: () => void): () => void {
  return () => {
    close()
    void realtime
      .close()
      .then(() => bus?.close())
      .finally(() => process.exit(0))
    setTimeout(() => process.exit(0), 2000).unref()
  }
}

if (args.http === 'rally') {
  const served = await listenTransports(realtime, {
    port: 0,
    host: '127.0.0.1',
    path: '/rt',
    maxSessionsPerIp: 20_000,
    server: { heartbeat: false },
  })
  announce(
    served.port,
    onExit(() => void served.close()),
  )
} else {
  // The SSE and long-polling routes under /rt, and WebSocket upgrades on /rt itself (attached
  // here rather than by attachTransports, to turn the WebSocket-level heartbeat off).
  const transports = new HttpTransports(realtime, { path: '/rt', maxSessionsPerIp: 20_000 })
  const http = createHttpServer((request, response) => {
    if (!transports.handle(request, response)) response.writeHead(404).end()
  })
  realtime.attach(http, { path: '/rt', heartbeat: false })

  const publisher = createServer({
    heartbeat: false,
    message(_ws, data) {
      void realtime.publish(TOPIC, typeof data === 'string' ? data : data.toString('latin1'))
    },
    error() {
      // Resets from the load generator are expected.
    },
  })
  http.on('upgrade', (request, socket, head) => {
    const path = (request.url ?? '/').split('?')[0]
    if (path === '/pub') publisher.handleUpgrade(request, socket, head)
    else if (path !== '/rt') socket.destroy()
  })

  http.listen(0, '127.0.0.1', () => {
    const address = http.address()
    announce(
      typeof address === 'object' && address !== null ? address.port : 0,
      onExit(() => transports.close()),
    )
  })
}
