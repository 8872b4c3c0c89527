/**
 * One Rally node of a test cluster, as its own process (`node --import tsx test/cluster/node.ts`):
 * createRealtime on Rally's server, on a RedisBus (REDIS_URL) or a NatsBus (NATS_URL). It prints
 * `READY <port> <nodeId>` once it serves, then obeys one command per stdin line:
 * - `publish <tag> <channel> <count> <batch> <pauseMs> <from>`: publishes `{ node, n }` for
 *   n = from..from+count-1,
 *   `batch` at a time with a pause between batches (so that faults land while it publishes), then
 *   prints `DONE <tag> <published>`. A publication the bus refuses (broker down) is retried: the
 *   numbers a node publishes have no holes, whatever happens to the broker.
 * - `latest <tag> <channel>`: prints `LATEST <tag> <offset> <epoch>`.
 * - `presence <tag> <channel>`: prints `PRESENCE <tag> <client ids as JSON>`.
 * - `clients <tag>`: prints `CLIENTS <tag> <connected sessions> <bus status> <refusing: yes|no>`.
 * - `watch <tag> <channel>` subscribes the node's bus itself (`WATCHING <tag>`), and
 *   `delivered <tag> <channel>` prints `DELIVERED <tag> <count> <last offset@epoch>`: what the bus
 *   delivered on this node, for failure messages.
 * Environment: PORT (default 0), NODE_NAME, PRESENCE_TTL (ms, the bus's presence expiry),
 * HEARTBEAT (ms, the server's ping interval; its timeout is the same), BUS_OUTAGE_GRACE (ms).
 * The node serves WebSockets, SSE and long polling at /realtime (HTTP session ids start with
 * NODE_NAME, for the proxy's sticky routing); channels `feed:*` take server publishes,
 * `dedup:*` client publishes too.
 */
import { createInterface } from 'node:readline'
import { NatsBus } from '../../src/adapters/nats/index.js'
import { RedisBus } from '../../src/adapters/redis/index.js'
import type { Bus } from '../../src/pubsub/bus.js'
import { createRealtime, listenTransports } from '../../src/realtime/index.js'

const name = process.env.NODE_NAME ?? 'node'
const presenceTtl = Number(process.env.PRESENCE_TTL ?? 30_000)
const heartbeat = Number(process.env.HEARTBEAT ?? 1000)
const busOutageGrace = Number(process.env.BUS_OUTAGE_GRACE ?? 10_000)

async function connectBus(): Promise<Bus> {
  if (process.env.REDIS_URL) return RedisBus.connect({ url: process.env.REDIS_URL, presenceTtl })
  if (process.env.NATS_URL) return NatsBus.connect({ servers: process.env.NATS_URL, presenceTtl })
  throw new Error('test/cluster/node.ts needs REDIS_URL or NATS_URL')
}

const bus = await connectBus()
const realtime = createRealtime({
  bus,
  channels: {
    'feed:*': { history: { size: 100_000, ttl: 600_000 }, presence: true },
    'dedup:*': { history: { size: 1000, ttl: 600_000 }, publish: true },
  },
  busOutageGrace,
  heartbeat: { interval: heartbeat, timeout: heartbeat },
  // Clients away for a few seconds on a loaded machine miss more than the default 1000.
  limits: { historyLimit: 100_000 },
  onError: () => {},
})
const { port } = await listenTransports(realtime, {
  port: Number(process.env.PORT ?? 0),
  host: '127.0.0.1',
  path: '/realtime',
  sessionPrefix: name,
  // Polls answered often: each answer is a point where nginx's buffering could show.
  pollTimeout: 5000,
  // Behind nginx every session comes from nginx's address: the per-address cap would refuse
  // the crowd (429) once a node holds more than 64 of them.
  maxSessionsPerIp: 10_000,
})

async function publishNumbers(channel: string, count: number, batch: number, pauseMs: number, from: number) {
  for (let n = from; n < from + count; n++) {
    for (;;) {
      try {
        await realtime.publish(channel, { node: name, n })
        break
      } catch {
        // The broker is away (restarting): the same number again once it is back.
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
    }
    if ((n - from + 1) % batch === 0) await new Promise((resolve) => setTimeout(resolve, pauseMs))
  }
  return count
}

// What this node's bus delivered on the channels the test asked about (for failure messages).
const delivered = new Map<string, { count: number; last: string }>()

createInterface({ input: process.stdin }).on('line', (line) => {
  const [command, tag, channel, ...rest] = line.trim().split(' ')
  if (command === 'publish' && channel !== undefined) {
    const [count, batch, pause, from] = rest.map(Number)
    void publishNumbers(channel, count ?? 0, batch ?? 10, pause ?? 10, from ?? 1).then((published) =>
      console.log(`DONE ${tag} ${published}`),
    )
  } else if (command === 'latest' && channel !== undefined) {
    void bus
      .history(channel, { limit: 1 })
      .then(({ latest }) => console.log(`LATEST ${tag} ${latest.offset} ${latest.epoch}`))
  } else if (command === 'watch' && channel !== undefined) {
    const seen = { count: 0, last: 'none' }
    delivered.set(channel, seen)
    void bus
      .subscribe(channel, (publication) => {
        seen.count++
        seen.last = `${publication.offset}@${publication.epoch}`
      })
      .then(() => console.log(`WATCHING ${tag} ok`))
  } else if (command === 'delivered' && channel !== undefined) {
    const seen = delivered.get(channel)
    console.log(`DELIVERED ${tag} ${seen?.count ?? 0} ${seen?.last ?? 'none'}`)
  } else if (command === 'clients') {
    const refusing = realtime.busOutage.refusing ? 'yes' : 'no'
    console.log(`CLIENTS ${tag} ${realtime.clients.size} ${bus.status} ${refusing}`)
  } else if (command === 'presence' && channel !== undefined) {
    void realtime
      .presence(channel)
      .then((members) => console.log(`PRESENCE ${tag} ${JSON.stringify(members.map((m) => m.client))}`))
  }
})

// The test ends a node with SIGTERM (or SIGKILL as a fault); stdin closing means the test died.
const stop = () => {
  void realtime.close().finally(() => process.exit(0))
}
process.once('SIGTERM', stop)
process.stdin.once('end', stop)
console.log(`READY ${port} ${bus.nodeId}`)
