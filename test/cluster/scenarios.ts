/**
 * The cluster scenarios, run on Redis (redis.test.ts) and on NATS (nats.test.ts): three node
 * processes behind the balancer, 150 clients spread over them, numbered publications from every
 * node on one channel, and the faults — a node killed with -9 while publishing, the broker killed
 * with -9 and started again.
 */
import assert from 'node:assert/strict'
import { BUS_OUTAGE_REASON } from '../../src/realtime/bus-outage.js'
import { PROTOCOL_VERSION } from '../../src/realtime/protocol.js'
import { RawClient } from '../realtime/server-helpers.js'
import type { Broker } from '../support/brokers.js'
import { FaultProxy } from '../support/fault-proxy.js'
import {
  allSubscribed,
  type Cluster,
  ClusterNode,
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

export function nodeKilledWhilePublishing(
  startBroker: () => Promise<Broker>,
  env: BrokerKind,
  front: Partial<ClusterOptions> = {},
) {
  const options = { ...OPTIONS, ...front }
  return withCluster(
    startBroker,
    env,
    async (cluster) => {
      const { nodes, clients } = cluster
      const [a, b, c] = nodes as [ClusterNode, ClusterNode, ClusterNode]
      // The balancer (or nginx) spread the crowd over all three nodes.
      const spread = await Promise.all(nodes.map(async (node) => (await node.clients()).connected))
      assert.equal(
        spread.reduce((sum, count) => sum + count, 0),
        CLIENTS,
      )
      // Round-robin, give or take the reconnections of a loaded machine: every node has a share.
      for (const count of spread) assert.ok(count >= CLIENTS / 6, `spread ${spread}`)
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
        const onVictim = (await victim.clients()).connected
        await victim.kill()
        // Read at once, well within the expiry: the dead node's members are still listed (a kill
        // sends no leave), so what removes them below is the expiry.
        const killedAt = Date.now()
        const listedAfterKill = await a.presence()
        const listedAfter = Date.now() - killedAt
        await publishing
        const latest = await a.latest()
        await everyoneHasEverything(cluster, latest)

        // A client cut late (after it had everything) may still be on its way back.
        await eventually(
          () => allSubscribed(clients),
          30_000,
          () => `every client to be subscribed again\n${describeStates(clients)}`,
        )
        const moved = clients.filter((w, i) => w.disconnects > disconnectsBefore[i]!)
        assert.ok(
          moved.length >= onVictim,
          `${moved.length} clients moved off ${victim.name}, which held ${onVictim}`,
        )
        for (const w of clients) {
          assert.deepEqual(w.violations, [], `${w.client.clientId}`)
          // Exactly 1..latest: nothing missed, nothing twice, across the move.
          assert.equal(w.offsets.length, latest.offset)
          // Every client saw the same publications in the same order, the victim's included.
          assert.deepEqual(w.received, clients[0]!.received)
          for (const node of round.publishers)
            assert.equal(w.received.filter((r) => r.startsWith(`${node.name}:`)).length, from + count - 1)
        }
        for (const w of moved)
          assert.deepEqual(
            w.subscribed.at(-1),
            { recovered: true, wasRecovering: true },
            `${w.client.transport}: subscribed ${JSON.stringify(w.subscribed)}, disconnections ${w.disconnections.join('; ')}`,
          )
        // The moved clients came back under new ids: their old ids, listed after the kill, were ghosts.
        const idsNow = new Set(clients.map((w) => w.client.clientId!))
        const ghosts = listedAfterKill.filter((id) => idsBefore.has(id) && !idsNow.has(id)).length
        assert.ok(
          ghosts > 0,
          `${ghosts} of the dead node's members listed ${listedAfter} ms after the kill (${listedAfterKill.length} listed, ${idsBefore.size} before)`,
        )
        // The killed node's members expire from the broker; the survivor lists exactly the crowd.
        const converged = await presenceConverges(cluster, 0, options.presenceTtl + 10_000)
        const reasons = new Set(moved.map((w) => w.lastDisconnect))
        console.log(
          `# ${env}${front.nginx ? ' behind nginx' : ''} ${front.transports?.join('/') ?? 'websocket'} round ${index + 1}: ` +
            `${moved.length} clients moved off ${victim.name} (${[...reasons].join(', ')}), ` +
            `${ghosts} ghosts right after the kill, presence exact ${converged} ms after the check began`,
        )
      }
    },
    options,
  )
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

/**
 * A client publishes with an idempotency key through node a, loses its connection before it
 * could see the reply, and retries the same key through node b, which never saw it: the bus
 * recognises the key, b answers with the first publication's offset, and the channel holds the
 * publication once. (Each node's own window alone would have published it twice.)
 */
export async function publishRetriedOnAnotherNode(startBroker: () => Promise<Broker>, env: BrokerKind) {
  const broker = await startBroker()
  const nodes: ClusterNode[] = []
  const sessions: RawClient[] = []
  const session = async (node: ClusterNode, previous?: string) => {
    const raw = new RawClient(`ws://127.0.0.1:${node.port}${REALTIME_PATH}`)
    sessions.push(raw)
    await raw.opened
    const connected = await raw.request(
      'connect',
      { version: PROTOCOL_VERSION, ...(previous === undefined ? {} : { session: previous }) },
      20_000,
    )
    return { raw, client: String(connected.result?.client) }
  }
  try {
    const nodeEnv = { [env]: broker.url, PRESENCE_TTL: '4000', HEARTBEAT: '5000' }
    for (const name of ['a', 'b']) nodes.push(await ClusterNode.start(name, nodeEnv))
    const [a, b] = nodes as [ClusterNode, ClusterNode]
    const channel = `dedup:retry-${process.pid}`
    const first = await session(a)
    const published = await first.raw.request('publish', { channel, data: { n: 1 }, key: 'k-1' }, 20_000)
    assert.ok(published.result !== undefined, JSON.stringify(published))
    first.raw.ws.close()
    await first.raw.whenClosed(20_000)
    // The same client, reconnected through b (which has no window for it), retries the key.
    const second = await session(b, first.client)
    const retried = await second.raw.request('publish', { channel, data: { n: 1 }, key: 'k-1' }, 20_000)
    assert.deepEqual(retried.result, published.result)
    const next = await second.raw.request('publish', { channel, data: { n: 2 }, key: 'k-2' }, 20_000)
    const { offset, epoch } = published.result as { offset: number; epoch: string }
    assert.deepEqual(next.result, { offset: offset + 1, epoch })
    const history = await second.raw.request(
      'history',
      { channel, since: { offset: offset - 1, epoch } },
      20_000,
    )
    const publications = (history.result?.publications ?? []) as { offset: number; data: unknown }[]
    assert.deepEqual(
      publications.map((p) => [p.offset, p.data]),
      [
        [offset, { n: 1 }],
        [offset + 1, { n: 2 }],
      ],
    )
    assert.equal(history.result?.complete, true)
  } finally {
    for (const raw of sessions) raw.ws.close()
    await Promise.all(nodes.map((node) => node.stop()))
    await broker.stop()
  }
}
