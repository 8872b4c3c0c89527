/**
 * Rally as three nodes on NATS: a node cut off from the broker (through the fault proxy) moves its
 * clients to the others with zero loss and takes clients again once the path heals; a client
 * publish retried through another node with the same key is published once.
 * (Each file stays well under the runner's per-file bound of 3 minutes on a loaded machine: the
 * scenarios of one broker are spread over several files.)
 */
import { describe, test } from 'node:test'
import { startNats } from '../support/brokers.js'
import { BOUND, CLIENTS, nodeCutOffFromBroker, publishRetriedOnAnotherNode } from './scenarios.js'

describe(`three nodes on NATS, cut off and retried, ${CLIENTS} clients`, () => {
  test('a node cut off from NATS moves its clients to the others: zero loss, and it comes back', BOUND, () =>
    nodeCutOffFromBroker(startNats, 'NATS_URL'),
  )
  test('a publish retried through another node with the same key is published once', BOUND, () =>
    publishRetriedOnAnotherNode(startNats, 'NATS_URL'),
  )
})
