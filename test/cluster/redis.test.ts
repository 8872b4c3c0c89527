/**
 * Rally as three nodes on Redis (real redis-server and node processes): every publication from
 * every node reaches every client once and in order; a node killed with -9 while publishing
 * loses its clients to the others with zero loss and its presence expires; Redis killed and
 * started again (without persistence: everything lost) is reported as recovered: false.
 */
import { describe, test } from 'node:test'
import { startRedis } from '../support/brokers.js'
import {
  BOUND,
  brokerRestartedWhilePublishing,
  CLIENTS,
  nodeCutOffFromBroker,
  nodeKilledWhilePublishing,
  publishRetriedOnAnotherNode,
} from './scenarios.js'

describe(`three nodes on Redis, ${CLIENTS} clients`, () => {
  test('kill -9 a node while every node publishes: zero loss, presence converges', BOUND, () =>
    nodeKilledWhilePublishing(startRedis, 'REDIS_URL'),
  )
  test(
    'behind nginx, a third each on WebSocket, SSE and long polling: kill -9 a node, zero loss',
    // Two kills and 100 HTTP clients' reconnections: the longest scenario on a loaded machine.
    { timeout: 240_000 },
    () =>
      nodeKilledWhilePublishing(startRedis, 'REDIS_URL', {
        nginx: true,
        transports: ['websocket', 'sse', 'long-polling'],
        // HTTP clients answer pings with a POST each: more room on a loaded machine.
        heartbeat: 5000,
        // Long enough that the dead node's members are still listed when the survivor is asked.
        presenceTtl: 10_000,
      }),
  )
  test('Redis killed and restarted empty while publishing: no silent loss', BOUND, () =>
    brokerRestartedWhilePublishing(startRedis, 'REDIS_URL', false),
  )
  test('a node cut off from Redis moves its clients to the others: zero loss, and it comes back', BOUND, () =>
    nodeCutOffFromBroker(startRedis, 'REDIS_URL'),
  )
  test('a publish retried through another node with the same key is published once', BOUND, () =>
    publishRetriedOnAnotherNode(startRedis, 'REDIS_URL'),
  )
})
