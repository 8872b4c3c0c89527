/**
 * Rally as three nodes on Redis behind a real nginx, a third of the clients each on WebSocket, SSE
 * and long polling (sticky routing of the HTTP transports by session id): a node killed with -9
 * twice while publishing loses its clients to the others, every client gets every publication
 * once and in order.
 * (Each file stays well under the runner's per-file bound of 3 minutes on a loaded machine: the
 * scenarios of one broker are spread over several files.)
 */
import { describe, test } from 'node:test'
import { startRedis } from '../support/brokers.js'
import { CLIENTS, nodeKilledWhilePublishing } from './scenarios.js'

describe(`three nodes on Redis behind nginx, ${CLIENTS} clients`, () => {
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
})
