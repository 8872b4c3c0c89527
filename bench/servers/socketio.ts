/**
 * Socket.IO 4 under test, websocket transport only (no polling, no upgrade dance) unless
 * `--polling` (Engine.IO's long-polling transport only, issue 13's comparison): subscribers
 * connect to `/socket.io/?EIO=4&transport=websocket`, connect the main namespace and emit
 * `join` with a room name and an ack; the server joins them to the room and acks. The load
 * generator's publisher, a plain WebSocket on `/pub` (a Rally socket, outside Socket.IO), has each
 * message broadcast with Socket.IO's room broadcast, `io.to(room).emit('m', text)`.
 *
 * `--redis URL`: one node of a cluster through `@socket.io/redis-adapter` (issue 14), the adapter
 * Socket.IO documents for several nodes (a broadcast is published to Redis and every node emits
 * it to its own members of the room).
 */
import { createServer as createHttpServer } from 'node:http'
import { Server } from 'socket.io'
import { createServer } from '../../src/server/server.js'
import { announce, parseServerArgs, TOPIC } from './common.js'

const argv = process.argv.slice(2)
const polling = argv.includes('--polling')
const redisAt = argv.indexOf('--redis')
const redisUrl = redisAt === -1 ? undefined : argv[redisAt + 1]
parseServerArgs(argv.filter((arg, i) => arg !== '--polling' && i !== redisAt && i !== redisAt + 1))

const http = createHttpServer()
const io = new Server(http, {
  transports: polling ? ['polling'] : ['websocket'],
  serveClient: false,
  perMessageDeflate: false,
  httpCompression: false,
})
if (redisUrl !== undefined) {
  const { createClient } = await import('redis')
  const { createAdapter } = await import('@socket.io/redis-adapter')
  const pub = createClient({ url: redisUrl })
  const sub = pub.duplicate()
  await Promise.all([pub.connect(), sub.connect()])
  io.adapter(createAdapter(pub, sub))
}
io.on('connection', (socket) => {
  socket.on('join', (room: unknown, ack: unknown) => {
    if (typeof room === 'string') void socket.join(room)
    if (typeof ack === 'function') ack()
  })
})

const publisher = createServer({
  heartbeat: false,
  message(_ws, data) {
    io.to(TOPIC).emit('m', typeof data === 'string' ? data : data.toString('latin1'))
  },
  error() {
    // Resets from the load generator are expected.
  },
})
http.on('upgrade', (request, socket, head) => {
  // Engine.IO handles its own path; /pub is ours (it has written the 101 before Engine.IO would
  // end an upgrade nobody answered).
  if ((request.url ?? '/').split('?')[0] === '/pub') publisher.handleUpgrade(request, socket, head)
})

http.listen(0, '127.0.0.1', () => {
  const address = http.address()
  announce(typeof address === 'object' && address !== null ? address.port : 0, () => {
    io.close()
    process.exit(0)
  })
})
