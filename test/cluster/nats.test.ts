/**
 * Rally as three nodes on NATS with JetStream (real nats-server and node processes): every
 * publication from every node reaches every client once and in order; a node killed with -9
 * while publishing loses its clients to the others with zero loss and its presence expires; NATS
 * killed and started again (its streams kept on disk) resumes with zero loss in the same epoch;
 * NATS started again with an empty store is a new epoch, reported as recovered: false.
 */
import { describe, test } from 'node:test'
import { startNats } from '../support/brokers.js'
import {
  BOUND,
  brokerRestartedWhilePublishing,
  CLIENTS,
  nodeCutOffFromBroker,
  nodeKilledWhilePublishing,
  publishRetriedOnAnotherNode,
} from './scenarios.js'

describe(`three nodes on NATS, ${CLIENTS} clients`, () => {
  test('kill -9 a node while every node publishes: zero loss, presence converges', BOUND, () =>
    nodeKilledWhilePublishing(startNats, 'NATS_URL'),
  )
  test(
    'behind nginx, a third each on WebSocket, SSE and long polling: kill -9 a node, zero loss',
    // Two kills and 100 HTTP clients' reconnections: the longest scenario on a loaded machine.
    { timeout: 240_000 },
    () =>
      nodeKilledWhilePublishing(startNats, 'NATS_URL', {
        nginx: true,
        transports: ['websocket', 'sse', 'long-polling'],
        // HTTP clients answer pings with a POST each: more room on a loaded machine.
        heartbeat: 5000,
        // Long enough that the dead node's members are still listed when the survivor is asked.
        presenceTtl: 10_000,
      }),
  )
  test('NATS killed and restarted while publishing: streams kept, zero loss', BOUND, () =>
    brokerRestartedWhilePublishing(startNats, 'NATS_URL', true),
  )
  test(
    'NATS killed and restarted with its store wiped: a new epoch, reported as recovered: false',
    BOUND,
    () => brokerRestartedWhilePublishing(startNats, 'NATS_URL', false, { wipe: true }),
  )
  test('a node cut off from NATS moves its clients to the others: zero loss, and it comes back', BOUND, () =>
    nodeCutOffFromBroker(startNats, 'NATS_URL'),
  )
  test('a publish retried through another node with the same key is published once', BOUND, () =>
    publishRetriedOnAnotherNode(startNats, 'NATS_URL'),
  )
})
