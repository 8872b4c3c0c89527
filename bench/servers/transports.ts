/**
 * Rally's real-time layer with every transport on one path (issue 13): `/rt` takes rally.v1
 * WebSockets, and its HTTP routes (`/rt/open`, `/rt/sse`, `/rt/poll`, `/rt/send`) serve SSE and
 * long polling, through `attachTransports`. Subscribers subscribe to the channel "bench"; the load
 * generator's publisher, a plain WebSocket on `/pub`, has each of its messages published with
 * `realtime.publish('bench', text)` — one envelope per publication, shared by every subscriber
 * whatever its transport.
 *
 * `--redis URL` makes it one node of a cluster on RedisBus (issue 14): a publication on one node
 * goes through Redis to the subscribers of every node. `--history N` keeps N publications of
 * "bench" (recovery on: the offset, stream append and publish are one Redis script).
 *
 * Settings that differ from the defaults, and why:
 * - no WebSocket-level heartbeat (rally.v1 has its own, on as in any app), as bench/servers/realtime.ts;
 * - `maxSessionsPerIp` raised: every subscriber of the load generator comes from 127.0.0.1, where
 *   an app would see one address per browser.
 */
import { createServer as createHttpServer } from 'node:http'
import type { Bus } from '../../src/pubsub/bus.js'
import { createRealtime } from '../../src/realtime/index.js'
import { HttpTransports } from '../../src/realtime/transports/http.js'
import { createServer } from '../../src/server/server.js'
import { announce, TOPIC } from './common.js'

process.setSourceMapsEnabled(false)

function parseArgs(argv: string[]): { redis: string | undefined; history: number } {
  const args: { redis: string | undefined; history: number } = { redis: undefined, history: 0 }
  for (let i = 0; i < argv.length; i += 2) {
    const value = argv[i + 1]
    if (argv[i] === '--redis' && value !== undefined) args.redis = value
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
  onError(error) {
    // The load generators reset their connections at the end of a run; anything else is a fault.
    const code = (error as { code?: unknown }).code
    if (code !== 'ECONNRESET' && code !== 'EPIPE') console.error('realtime:', error)
  },
})

// The SSE and long-polling routes under /rt, and WebSocket upgrades on /rt itself (attached here
// rather than by attachTransports, to turn the WebSocket-level heartbeat off).
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
  announce(typeof address === 'object' && address !== null ? address.port : 0, () => {
    transports.close()
    void realtime
      .close()
      .then(() => bus?.close())
      .finally(() => process.exit(0))
    setTimeout(() => process.exit(0), 2000).unref()
  })
})
