// The bus conformance suite against RedisBus on a real redis-server (no persistence) started on a
// free port; a second run of the fan-out tests uses sharded pub/sub (SSUBSCRIBE/SPUBLISH), which
// a standalone Redis 7 serves as well as a Cluster does.
import assert from 'node:assert/strict'
import { createConnection } from 'node:net'
import { after, before, describe, test } from 'node:test'
import { createClient } from 'redis'
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
        ...options,
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

describe('RedisBus with clients of your own', () => {
  let broker: Broker
  before(async () => {
    broker = await startRedis()
  })
  after(async () => {
    await broker.stop()
  })

  test('close() leaves the clients open and nothing subscribed on them', async () => {
    const commands = createClient({ url: broker.url })
    const subscriber = commands.duplicate()
    await Promise.all([commands.connect(), subscriber.connect()])
    try {
      const bus = await RedisBus.connect({ clients: { commands, subscriber } })
      const received: string[] = []
      await bus.subscribe('mine', (publication) => received.push(publication.data))
      await bus.listen('mine', () => {})
      assert.equal(
        await redisCommand(broker.port, 'PUBSUB', 'NUMSUB', 'rally:{mine}:pub'),
        '*2\r\n$16\r\nrally:{mine}:pub\r\n:1\r\n',
      )
      await bus.close()
      assert.equal(
        await redisCommand(broker.port, 'PUBSUB', 'NUMSUB', 'rally:{mine}:pub'),
        '*2\r\n$16\r\nrally:{mine}:pub\r\n:0\r\n',
      )
      assert.equal(
        await redisCommand(broker.port, 'PUBSUB', 'NUMSUB', 'rally:{mine}:event'),
        '*2\r\n$18\r\nrally:{mine}:event\r\n:0\r\n',
      )
      assert.equal(await commands.ping(), 'PONG', 'the commands client is still open')
      await assert.rejects(
        bus.subscribe('mine', () => {}),
        /closed/,
      )
    } finally {
      await Promise.allSettled([commands.close(), subscriber.close()])
    }
  })

  test('connecting to a port where no Redis listens fails instead of waiting', async () => {
    const stopped = await startRedis()
    const url = stopped.url
    await stopped.stop()
    await assert.rejects(RedisBus.connect({ url }))
  })
})
