/**
 * Rally as three nodes on NATS with JetStream (real nats-server and node processes): every
 * publication from every node reaches every client once and in order; a node killed with -9
 * while publishing loses its clients to the others with zero loss and its presence expires; NATS
 * killed and started again (its streams kept on disk) resumes with zero loss in the same epoch.
 * An emptied store: nats-wipe.test.ts; behind nginx: nats-nginx.test.ts; a node cut off from
 * NATS: nats-cutoff.test.ts.
 */
import { describe, test } from 'node:test'
import { startNats } from '../support/brokers.js'
import { BOUND, brokerRestartedWhilePublishing, CLIENTS, nodeKilledWhilePublishing } from './scenarios.js'

describe(`three nodes on NATS, ${CLIENTS} clients`, () => {
  test('kill -9 a node while every node publishes: zero loss, presence converges', BOUND, () =>
    nodeKilledWhilePublishing(startNats, 'NATS_URL'),
  )
  test('NATS killed and restarted while publishing: streams kept, zero loss', BOUND, () =>
    brokerRestartedWhilePublishing(startNats, 'NATS_URL', true),
  )
})
