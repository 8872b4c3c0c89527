/**
 * Rally's real-time layer under test (`rallyjs/realtime`, issue 12): subscribers speak rally.v1 on
 * `/sub` (connect, then subscribe to the channel "bench", which has presence), and the load
 * generator's publisher, a plain WebSocket on `/pub`, has each of its messages published with
 * `realtime.publish('bench', text)` — the server-side publish API, one envelope per publication,
 * framed once for every subscriber. Any other path is refused.
 *
 * `recovery:*` channels keep history (the runner's recovery measurement, bench/recovery.ts):
 * `/pub?channel=recovery:N` publishes there instead.
 *
 * Socket options as bench/servers/rally.ts: no WebSocket-level heartbeat (rally.v1 has its own,
 * on by default here as in any app).
 */
import { createServer as createHttpServer } from 'node:http'
import { createRealtime } from '../../src/realtime/index.js'
import { createServer } from '../../src/server/server.js'
import { announce, parseServerArgs, TOPIC } from './common.js'

parseServerArgs()

const realtime = createRealtime({
  channels: {
    [TOPIC]: { presence: true },
    'recovery:*': { history: { size: 2000, ttl: 600_000 } },
  },
  onError(error) {
    // The load generator resets its connections at the end of a run; anything else is a fault.
    const code = (error as { code?: unknown }).code
    if (code !== 'ECONNRESET' && code !== 'EPIPE') console.error('realtime:', error)
  },
})

const http = createHttpServer((_request, response) => {
  response.writeHead(426).end()
})
realtime.attach(http, { path: '/sub', heartbeat: false })

const publisher = createServer<{ channel: string }>({
  heartbeat: false,
  upgrade(request) {
    const channel = new URL(request.url ?? '/', 'http://bench').searchParams.get('channel')
    return { channel: channel?.startsWith('recovery:') ? channel : TOPIC }
  },
  message(ws, data) {
    void realtime.publish(ws.data.channel, typeof data === 'string' ? data : data.toString('latin1'))
  },
  error() {
    // Resets from the load generator are expected.
  },
})
http.on('upgrade', (request, socket, head) => {
  const path = (request.url ?? '/').split('?')[0]
  if (path === '/pub') publisher.handleUpgrade(request, socket, head)
  else if (path !== '/sub') socket.destroy()
})

http.listen(0, '127.0.0.1', () => {
  const address = http.address()
  announce(typeof address === 'object' && address !== null ? address.port : 0, () => {
    void realtime.close().finally(() => process.exit(0))
    setTimeout(() => process.exit(0), 2000).unref()
  })
})
