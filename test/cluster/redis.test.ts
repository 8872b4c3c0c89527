/**
 * Rally as three nodes on Redis (real redis-server and node processes): every publication from
 * every node reaches every client once and in order; a node killed with -9 while publishing
 * loses its clients to the others with zero loss and its presence expires; Redis killed and
 * started again (without persistence: everything lost) is reported as recovered: false.
 * Behind nginx: redis-nginx.test.ts; a node cut off from Redis: redis-cutoff.test.ts.
 */
import { describe, test } from 'node:test'
import { startRedis } from '../support/brokers.js'
import { BOUND, brokerRestartedWhilePublishing, CLIENTS, nodeKilledWhilePublishing } from './scenarios.js'

describe(`three nodes on Redis, ${CLIENTS} clients`, () => {
  test('kill -9 a node while every node publishes: zero loss, presence converges', BOUND, () =>
    nodeKilledWhilePublishing(startRedis, 'REDIS_URL'),
  )
  test('Redis killed and restarted empty while publishing: no silent loss', BOUND, () =>
    brokerRestartedWhilePublishing(startRedis, 'REDIS_URL', false),
  )
})
