// The bus conformance suite against RedisBus on a real redis-server (no persistence) started on a
// free port; a second run of the fan-out tests uses sharded pub/sub (SSUBSCRIBE/SPUBLISH), which
// a standalone Redis 7 serves as well as a Cluster does.
import { createConnection } from 'node:net'
import { RedisBus } from '../../src/adapters/redis/index.js'
import { type Broker, startRedis } from '../support/brokers.js'
import { busConformance } from './conformance.js'

/** One command over a raw connection (RESP), for what the suite checks behind the bus's back. */
async function redisCommand(port: number, ...args: string[]): Promise<string> {
  const request = `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`
  return new Promise((resolve, reject) => {
    const socket = createConnection({ host: '127.0.0.1', port })
    let reply = ''
    socket.on('error', reject)
    socket.on('connect', () => socket.write(request))
    socket.on('data', (chunk) => {
      reply += chunk.toString()
      // Enough for the simple, integer and two-element array replies used here.
      if (/^[+:-].*\r\n$/s.test(reply) || /^\*2\r\n\$\d+\r\n.*\r\n:\d+\r\n$/s.test(reply)) {
        socket.end()
        resolve(reply)
      }
    })
  })
}

for (const sharded of [false, true]) {
  let redis: Broker | undefined
  busConformance({
    name: `RedisBus${sharded ? ' (sharded pub/sub)' : ''}`,
    shared: true,
    async setUp() {
      redis = await startRedis()
    },
    async tearDown() {
      await redis?.stop()
    },
    createBus: (options) =>
      RedisBus.connect({
        url: redis!.url,
        sharded,
        ...(options?.presenceTtl ? { presenceTtl: options.presenceTtl } : {}),
      }),
    async loseHistory() {
      await redisCommand(redis!.port, 'FLUSHALL')
    },
    async restartBroker() {
      await redis!.restart()
    },
    async brokerSubscriptions(channel) {
      const reply = await redisCommand(
        redis!.port,
        sharded ? 'PUBSUB' : 'PUBSUB',
        sharded ? 'SHARDNUMSUB' : 'NUMSUB',
        `rally:{${channel}}:pub`,
      )
      return Number(/:(\d+)\r\n$/.exec(reply)?.[1])
    },
  })
}
