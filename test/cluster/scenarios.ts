/**
 * The cluster scenarios, run on Redis (redis.test.ts) and on NATS (nats.test.ts): three node
 * processes behind the balancer, 150 clients spread over them, numbered publications from every
 * node on one channel, and the faults — a node killed with -9 while publishing, the broker killed
 * with -9 and started again.
 */
import assert from 'node:assert/strict'
import { BUS_OUTAGE_REASON } from '../../src/realtime/bus-outage.js'
import type { Broker } from '../support/brokers.js'
import { FaultProxy } from '../support/fault-proxy.js'
import {
  allSubscribed,
  type Cluster,
  type ClusterNode,
  type ClusterOptions,
  describeFailures,
  describeStates,
  eventually,
  REALTIME_PATH,
  startCluster,
  type Watched,
  watch,
} from './helpers.js'

export const CLIENTS = 150
/** Short presence expiry and heartbeat so that a dead node's traces go within seconds. */
const OPTIONS = { clients: CLIENTS, presenceTtl: 4000, heartbeat: 2500 }
export const BOUND = { timeout: 90_000 }

export type BrokerKind = 'REDIS_URL' | 'NATS_URL'

async function withCluster(
  startBroker: () => Promise<Broker>,
  env: BrokerKind,
  run: (cluster: Cluster) => Promise<void>,
  options: ClusterOptions = OPTIONS,
): Promise<void> {
  const broker = await startBroker()
  try {
    const cluster = await startCluster(broker, env, options)
    try {
      await Promise.all(cluster.nodes.map((node) => node.watchBus()))
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
async function everyoneHasEverything(cluster: Cluster, latest: { offset: number; epoch: string }) {
  const { clients } = cluster
  try {
    await eventually(
      () => clients.every((w) => w.epoch === latest.epoch && w.offsets.at(-1) === latest.offset),
      30_000,
      () =>
        `every client to reach offset ${latest.offset}@${latest.epoch}\n${describeFailures(clients, latest.offset)}\n${describeStates(clients)}`,
    )
  } catch (error) {
    const buses = await Promise.all(cluster.nodes.map(async (n) => `${n.name}: ${await n.delivered()}`))
    throw new Error(`${(error as Error).message}\nbus deliveries: ${buses.join(', ')}`)
  }
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
    const [a, b, c] = nodes as [ClusterNode, ClusterNode, ClusterNode]
    // The balancer spread the crowd over all three nodes.
    assert.equal(balancer.routed.size, 3)
    for (const count of balancer.routed.values())
      assert.ok(count >= CLIENTS / 3 - 1, `spread ${[...balancer.routed.values()]}`)
    await presenceConverges(cluster, 0, 10_000)

    // Round 1: a and b publish 1..300, c publishes until it is killed with -9 mid-stream.
    // Round 2: a publishes 301..500, b (which now holds half the crowd) is killed mid-stream.
    const rounds = [
      { publishers: [a, b], victim: c, from: 1, count: 300 },
      { publishers: [a], victim: b, from: 301, count: 200 },
    ]
    for (const [index, round] of rounds.entries()) {
      const { victim, from, count } = round
      const publishing = Promise.all(round.publishers.map((node) => node.publish(count, 10, 20, from)))
      victim.publishAndForget(count, 10, 20, from)
      const fromVictim = (w: Watched) => w.received.filter((r) => r.startsWith(`${victim.name}:`)).length
      const before = clients.map(fromVictim)
      await eventually(
        () => clients.every((w, i) => fromVictim(w) >= before[i]! + 20),
        30_000,
        () => `every client to receive some of ${victim.name}'s publications\n${describeStates(clients)}`,
      )
      const disconnectsBefore = clients.map((w) => w.disconnects)
      const idsBefore = new Set(clients.map((w) => w.client.clientId!))
      await victim.kill()
      // Read at once, well within the expiry: the dead node's members are still listed (a kill
      // sends no leave), so what removes them below is the expiry.
      const listedAfterKill = await a.presence()
      await publishing
      const latest = await a.latest()
      await everyoneHasEverything(cluster, latest)

      const moved = clients.filter((w, i) => w.disconnects > disconnectsBefore[i]!)
      assert.ok(moved.length >= CLIENTS / 3 - 1, `${moved.length} clients moved off ${victim.name}`)
      for (const w of moved) assert.deepEqual(w.subscribed.at(-1), { recovered: true, wasRecovering: true })
      for (const w of clients) {
        assert.deepEqual(w.violations, [], `${w.client.clientId}`)
        // Exactly 1..latest: nothing missed, nothing twice, across the move.
        assert.equal(w.offsets.length, latest.offset)
        // Every client saw the same publications in the same order, the victim's included.
        assert.deepEqual(w.received, clients[0]!.received)
        for (const node of round.publishers)
          assert.equal(w.received.filter((r) => r.startsWith(`${node.name}:`)).length, from + count - 1)
      }
      // The moved clients came back under new ids: their old ids, listed after the kill, were ghosts.
      const idsNow = new Set(clients.map((w) => w.client.clientId!))
      const ghosts = listedAfterKill.filter((id) => idsBefore.has(id) && !idsNow.has(id)).length
      assert.ok(ghosts > 0, `${ghosts} of the dead node's members listed right after the kill`)
      // The killed node's members expire from the broker; the survivor lists exactly the crowd.
      const converged = await presenceConverges(cluster, 0, OPTIONS.presenceTtl + 10_000)
      const reasons = new Set(moved.map((w) => w.lastDisconnect))
      console.log(
        `# ${env} round ${index + 1}: ${moved.length} clients moved off ${victim.name} (${[...reasons].join(', ')}), ` +
          `${ghosts} ghosts right after the kill, presence exact ${converged} ms after the check began`,
      )
    }
  })
}

export function brokerRestartedWhilePublishing(
  startBroker: () => Promise<Broker>,
  env: BrokerKind,
  keepsHistory: boolean,
  options: { wipe?: boolean } = {},
) {
  return withCluster(startBroker, env, async (cluster) => {
    const { nodes, clients, broker } = cluster
    let publishingDone = false
    const publishing = Promise.all(nodes.map((node) => node.publish(300, 10, 20))).then(() => {
      publishingDone = true
    })
    await eventually(
      () => clients.every((w) => w.received.length >= 60),
      30_000,
      () => `every client to receive 60 publications\n${describeStates(clients)}`,
    )
    const epochBefore = clients[0]!.epoch
    // The fault lands while every node is still publishing.
    assert.equal(publishingDone, false, 'the publishers finished before the broker was killed')
    await broker.restart(options)
    await publishing
    // One more round after the restart, so that every client has something to resume on.
    await nodes[0]!.publish(10, 10, 0, 301)
    const latest = await nodes[0]!.latest()
    await everyoneHasEverything(cluster, latest)
    for (const w of clients) assert.deepEqual(w.violations, [], `${w.client.clientId}`)
    if (keepsHistory) {
      // The broker kept its streams: the same epoch, and every client has every publication.
      assert.equal(latest.epoch, epochBefore)
      for (const w of clients) assert.equal(w.offsets.length, latest.offset)
      assert.equal(latest.offset, 3 * 300 + 10)
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

/** Resolves once `check` (an answer from a node process) holds; rejects after `ms` naming `what`. */
async function until<T>(read: () => Promise<T>, check: (value: T) => boolean, ms: number, what: string) {
  const deadline = Date.now() + ms
  for (;;) {
    const value = await read()
    if (check(value)) return value
    if (Date.now() > deadline)
      throw new Error(`timed out after ${ms} ms waiting for ${what}: ${JSON.stringify(value)}`)
    // A node's state changes with its broker connection: no event reaches the test, only a read.
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

/** How long a cut-off node waits before it moves its clients away, in the cut-off scenario. */
const OUTAGE_GRACE = 1500

/**
 * Node c reaches the broker through a fault proxy, which the test cuts (every connection reset,
 * new ones refused) while a and b publish: c's bus goes down, and after the grace c disconnects
 * its clients with 4001 and refuses new ones; they reconnect through the balancer to a or b and
 * recover with zero loss. Once the proxy heals, c's bus is up again, c accepts clients and its
 * publications reach everyone.
 */
export async function nodeCutOffFromBroker(startBroker: () => Promise<Broker>, env: BrokerKind) {
  let proxy: FaultProxy | undefined
  let proxiedUrl = ''
  try {
    await withCluster(
      async () => {
        const broker = await startBroker()
        proxy = await FaultProxy.start({ targetPort: broker.port })
        proxiedUrl = broker.url.replace(`:${broker.port}`, `:${proxy!.port}`)
        return broker
      },
      env,
      async (cluster) => {
        const { nodes, clients } = cluster
        const [a, b, c] = nodes as [ClusterNode, ClusterNode, ClusterNode]
        const onC = (await c.clients()).connected
        assert.ok(onC >= CLIENTS / 3 - 1, `${onC} clients on c`)
        const publishing = Promise.all([a.publish(300, 10, 20), b.publish(300, 10, 20, 1)])
        await eventually(
          () => clients.every((w) => w.received.length >= 40),
          30_000,
          () => `every client to receive 40 publications\n${describeStates(clients)}`,
        )
        const disconnectsBefore = clients.map((w) => w.disconnects)
        proxy!.refuse()
        proxy!.cutAll()
        const cutAt = Date.now()
        // c sees its broker go, waits the grace, then sends its clients away and refuses more.
        const refusing = await until(
          () => c.clients(),
          (state) => state.refusing && state.connected === 0,
          30_000,
          'c to refuse sessions and hold none',
        )
        assert.equal(refusing.bus, 'down')
        const movedAfter = Date.now() - cutAt
        await publishing
        const latest = await a.latest()
        await everyoneHasEverything(cluster, latest)
        const moved = clients.filter((w, i) => w.disconnects > disconnectsBefore[i]!)
        assert.ok(moved.length >= onC, `${moved.length} clients moved off c (${onC} were there)`)
        for (const w of moved) {
          // Sent away by c with 4001 (a retry that met c's 503 on the way is a failed connect).
          const first = w.disconnections[disconnectsBefore[clients.indexOf(w)]!]
          assert.equal(first, `4001 ${BUS_OUTAGE_REASON}`, w.client.clientId)
          assert.deepEqual(w.subscribed.at(-1), { recovered: true, wasRecovering: true })
        }
        for (const w of clients) {
          assert.deepEqual(w.violations, [], `${w.client.clientId}`)
          // Exactly 1..latest once each, in order: nothing missed, nothing twice, across the move.
          assert.equal(w.offsets.length, latest.offset)
          assert.deepEqual(w.received, clients[0]!.received)
        }
        // Still cut off: c holds nobody, and the crowd is on a and b.
        assert.equal((await c.clients()).connected, 0)
        const [onA, onB] = await Promise.all([a.clients(), b.clients()])
        assert.equal(onA.connected + onB.connected, CLIENTS)

        // The path heals: c's bus comes back, c accepts sessions, and its publications reach all.
        proxy!.refuse(false)
        await until(
          () => c.clients(),
          (state) => state.bus === 'up' && !state.refusing,
          30_000,
          'c to be back',
        )
        const newcomer = watch(`ws://127.0.0.1:${c.port}${REALTIME_PATH}`, 2 * OPTIONS.heartbeat + 1000)
        cluster.clients.push(newcomer)
        await eventually(
          () => allSubscribed([newcomer]),
          30_000,
          () => `a new client on c to subscribe\n${describeStates([newcomer])}`,
        )
        await c.publish(20, 10, 20, 1)
        const after = await a.latest()
        await everyoneHasEverything(cluster, after)
        assert.deepEqual(
          newcomer.received,
          Array.from({ length: 20 }, (_, i) => `c:${i + 1}`),
        )
        for (const w of clients) assert.deepEqual(w.violations, [], `${w.client.clientId}`)
        // c's members left while it was cut off, and its live ones are written back: no ghosts.
        const converged = await presenceConverges(cluster, 0, OPTIONS.presenceTtl + 10_000)
        console.log(
          `# ${env} cut off: ${moved.length} clients moved off c, c refusing ${movedAfter} ms after the cut ` +
            `(grace ${OUTAGE_GRACE} ms), presence exact ${converged} ms after the check began`,
        )
      },
      {
        ...OPTIONS,
        // Read when the nodes start, once the proxy (started with the broker) is there.
        brokerUrls: {
          get c() {
            return proxiedUrl
          },
        },
        busOutageGrace: OUTAGE_GRACE,
      },
    )
  } finally {
    await proxy?.close()
  }
}
