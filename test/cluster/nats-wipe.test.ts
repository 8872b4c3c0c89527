/**
 * Rally as three nodes on NATS: NATS killed and started again with an empty store is a new epoch,
 * reported to every client as recovered: false, never as a silent gap.
 * (Each file stays well under the runner's per-file bound of 3 minutes on a loaded machine.)
 */
import { describe, test } from 'node:test'
import { startNats } from '../support/brokers.js'
import { BOUND, brokerRestartedWhilePublishing, CLIENTS } from './scenarios.js'

describe(`three nodes on NATS, store wiped, ${CLIENTS} clients`, () => {
  test(
    'NATS killed and restarted with its store wiped: a new epoch, reported as recovered: false',
    BOUND,
    () => brokerRestartedWhilePublishing(startNats, 'NATS_URL', false, { wipe: true }),
  )
})
