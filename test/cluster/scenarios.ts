/**
 * The cluster scenarios, run on Redis (redis.test.ts) and on NATS (nats.test.ts): three node
 * processes behind the balancer, 150 clients spread over them, numbered publications from every
 * node on one channel, and the faults — a node killed with -9 while publishing, the broker killed
 * with -9 and started again.
 */
import assert from 'node:assert/strict'
import type { Broker } from '../support/brokers.js'
import {
  allSubscribed,
  type Cluster,
  describeFailures,
  describeStates,
  eventually,
  startCluster,
  type Watched,
} from './helpers.js'

export const CLIENTS = 150
/** Short presence expiry and heartbeat so that a dead node's traces go within seconds. */
const OPTIONS = { clients: CLIENTS, presenceTtl: 3000, heartbeat: 1000 }
export const BOUND = { timeout: 90_000 }

export type BrokerKind = 'REDIS_URL' | 'NATS_URL'

async function withCluster(
  startBroker: () => Promise<Broker>,
  env: BrokerKind,
  run: (cluster: Cluster) => Promise<void>,
): Promise<void> {
  const broker = await startBroker()
  try {
    const cluster = await startCluster(broker, env, OPTIONS)
    try {
      await eventually(
        () => allSubscribed(cluster.clients),
        40_000,
        () => `every client to subscribe\n${describeStates(cluster.clients)}`,
      )
      await run(cluster)
    } finally {
      await cluster.close()
    }
  } finally {
    await broker.stop()
  }
}

/** Every client's stream is offsets 1..latest once each, in order, in the latest epoch. */
async function everyoneHasEverything(clients: readonly Watched[], latest: { offset: number; epoch: string }) {
  await eventually(
    () => clients.every((w) => w.epoch === latest.epoch && w.offsets.at(-1) === latest.offset),
    30_000,
    () =>
      `every client to reach offset ${latest.offset}\n${describeFailures(clients, latest.offset)}\n${describeStates(clients)}`,
  )
}

/** Polls a node's view of presence until it lists exactly the clients' current ids. */
async function presenceConverges(cluster: Cluster, node: number, ms: number): Promise<number> {
  const started = Date.now()
  const expected = () => cluster.clients.map((w) => w.client.clientId!).sort()
  let seen: string[] = []
  while (JSON.stringify(seen) !== JSON.stringify(expected())) {
    if (Date.now() - started > ms)
      throw new Error(
        `presence did not converge in ${ms} ms: ${seen.length} members for ${CLIENTS} clients, ` +
          `${seen.filter((id) => !expected().includes(id)).length} ghosts`,
      )
    seen = await cluster.nodes[node]!.presence()
    // Presence changes through expiry on the broker: there is no event to wait on, only a read.
    if (JSON.stringify(seen) !== JSON.stringify(expected()))
      await new Promise((resolve) => setTimeout(resolve, 100))
  }
  return Date.now() - started
}

export function nodeKilledWhilePublishing(startBroker: () => Promise<Broker>, env: BrokerKind) {
  return withCluster(startBroker, env, async (cluster) => {
    const { nodes, clients, balancer } = cluster
    const [a, b, c] = nodes as [(typeof nodes)[0], (typeof nodes)[0], (typeof nodes)[0]]
    // The balancer spread the crowd over all three nodes.
    assert.equal(balancer.routed.size, 3)
    for (const count of balancer.routed.values())
      assert.ok(count >= CLIENTS / 3 - 1, `spread ${[...balancer.routed.values()]}`)
    await presenceConverges(cluster, 0, 10_000)

    // Every node publishes; c is killed once everyone has received some of it.
    const publishing = Promise.all([a.publish(300, 10, 20), b.publish(300, 10, 20)])
    c.publishAndForget(300, 10, 20)
    await eventually(
      () => clients.every((w) => w.received.filter((r) => r.startsWith('c:')).length >= 20),
      30_000,
      () => `every client to receive some of c's publications\n${describeStates(clients)}`,
    )
    const disconnectsBefore = clients.map((w) => w.disconnects)
    await c.kill()
    await publishing
    const latest = await a.latest()
    await everyoneHasEverything(clients, latest)

    const moved = clients.filter((w, i) => w.disconnects > disconnectsBefore[i]!)
    // Its third of the crowd lost its node and came back through the balancer on a or b.
    assert.ok(moved.length >= CLIENTS / 3 - 1, `${moved.length} clients moved off the killed node`)
    for (const w of clients) {
      assert.deepEqual(w.violations, [], `${w.client.clientId}`)
      // Exactly 1..latest: nothing missed, nothing twice, across the move.
      assert.equal(w.offsets.length, latest.offset)
      assert.equal(w.received.filter((r) => r.startsWith('a:')).length, 300)
      assert.equal(w.received.filter((r) => r.startsWith('b:')).length, 300)
    }
    for (const w of moved) assert.deepEqual(w.subscribed.at(-1), { recovered: true, wasRecovering: true })
    // What c published before dying reached everyone alike.
    const fromC = new Set(clients.map((w) => w.received.filter((r) => r.startsWith('c:')).length))
    assert.equal(fromC.size, 1, `clients disagree on c's publications: ${[...fromC]}`)

    // The killed node's members expire from the broker; the survivors list exactly the crowd.
    const converged = await presenceConverges(cluster, 1, OPTIONS.presenceTtl + 10_000)
    console.log(
      `# ${env}: ${moved.length} clients moved, presence converged ${converged} ms after the check began`,
    )
  })
}

export function brokerRestartedWhilePublishing(
  startBroker: () => Promise<Broker>,
  env: BrokerKind,
  keepsHistory: boolean,
) {
  return withCluster(startBroker, env, async (cluster) => {
    const { nodes, clients, broker } = cluster
    const publishing = Promise.all(nodes.map((node) => node.publish(200, 10, 20)))
    await eventually(
      () => clients.every((w) => w.received.length >= 60),
      30_000,
      () => `every client to receive 60 publications\n${describeStates(clients)}`,
    )
    const epochBefore = clients[0]!.epoch
    await broker.restart()
    await publishing
    // One more round after the restart, so that every client has something to resume on.
    await nodes[0]!.publish(10, 10, 0, 201)
    const latest = await nodes[0]!.latest()
    await everyoneHasEverything(clients, latest)
    for (const w of clients) assert.deepEqual(w.violations, [], `${w.client.clientId}`)
    if (keepsHistory) {
      // The broker kept its streams: the same epoch, and every client has every publication.
      assert.equal(latest.epoch, epochBefore)
      for (const w of clients) assert.equal(w.offsets.length, latest.offset)
      assert.equal(latest.offset, 3 * 200 + 10)
    } else {
      // The broker lost everything: a new epoch, which every client was told of (recovered: false).
      assert.notEqual(latest.epoch, epochBefore)
      for (const w of clients)
        assert.ok(
          w.subscribed.some((s) => s.wasRecovering && !s.recovered),
          `${w.client.clientId} was never told of the loss`,
        )
    }
    await presenceConverges(cluster, 2, OPTIONS.presenceTtl + 10_000)
  })
}
