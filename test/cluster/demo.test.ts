/**
 * `rally demo` as a cluster: two demo processes on one real broker (--bus; redis-server, then
 * nats-server with JetStream), a chat message published through one reaches a client of the
 * other; /healthz on each names the bus and says up, turns 503 while the broker is down and 200
 * once it is back; the JSON-line logs carry the listening port.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { WebSocket } from '../../src/index.js'
import { type Pub, RallyClient } from '../../src/realtime/client/index.js'
import { type Child, rallyCli } from '../interop/helpers.js'
import { type Broker, startNats, startRedis } from '../support/brokers.js'
import { withTimeout } from '../support/timing.js'

interface DemoNode {
  cli: Child
  port: number
}

/** Starts `rally demo` on a free port and reads the port from its `listening` log line. */
async function startNode(busUrl: string): Promise<DemoNode> {
  const cli = rallyCli(['demo', '--port', '0', '--bus', busUrl, '--log-level', 'info'])
  const port = await cli.waitForLine(
    (line) => {
      if (!line.startsWith('{')) return undefined
      const record = JSON.parse(line) as { event?: string; port?: number }
      return record.event === 'listening' ? record.port : undefined
    },
    30_000,
    'the listening line',
  )
  return { cli, port: port! }
}

async function health(node: DemoNode): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(`http://127.0.0.1:${node.port}/healthz`)
  return { status: response.status, body: (await response.json()) as Record<string, unknown> }
}

/** /healthz has no event to wait on: asked again until it answers `status` (bounded). */
async function healthBecomes(node: DemoNode, status: number, ms: number): Promise<Record<string, unknown>> {
  const deadline = Date.now() + ms
  for (;;) {
    const answer = await health(node)
    if (answer.status === status) return answer.body
    if (Date.now() > deadline)
      throw new Error(`/healthz still ${answer.status} after ${ms} ms: ${JSON.stringify(answer.body)}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

function client(node: DemoNode, nick: string): RallyClient {
  return new RallyClient(`ws://127.0.0.1:${node.port}/rt`, { WebSocket, token: nick, reconnect: false })
}

for (const [kind, startBroker] of [
  ['redis', startRedis],
  ['nats', startNats],
] as const) {
  describe(`rally demo: two nodes on one ${kind} broker`, { timeout: 120_000 }, () => {
    let broker: Broker
    const nodes: DemoNode[] = []
    const clients: RallyClient[] = []

    before(async () => {
      broker = await startBroker()
      nodes.push(await startNode(broker.url), await startNode(broker.url))
    })

    after(async () => {
      for (const each of clients) each.close()
      for (const node of nodes) {
        node.cli.process.kill('SIGTERM')
        await node.cli.waitForExit(10_000).catch(() => node.cli.kill())
      }
      await broker?.stop()
    })

    it('a message published on one node reaches a client of the other', async () => {
      const [a, b] = nodes as [DemoNode, DemoNode]
      const ann = client(a, 'ann')
      const bob = client(b, 'bob')
      clients.push(ann, bob)
      const room = ann.channel('chat:cluster')
      const subscribed = new Promise((resolve) => room.once('subscribed', resolve))
      ann.connect()
      bob.connect()
      await withTimeout(subscribed, 15_000, "ann's subscription on node A")
      const received = new Promise<Pub<unknown>>((resolve) => room.once('publication', resolve))
      const sent = await withTimeout(
        bob.publish('chat:cluster', { text: 'from node B' }),
        15_000,
        "bob's publish on B",
      )
      const pub = await withTimeout(received, 15_000, 'the publication on node A')
      assert.deepEqual(pub.data, { text: 'from node B' })
      assert.equal(pub.offset, sent.offset)
      // Presence spans the nodes through Redis too.
      const members = await withTimeout(room.presence(), 15_000, 'presence')
      assert.deepEqual(
        members.map((member) => member.user),
        ['ann'],
      )
    })

    it('/healthz: the bus up on each node, 503 while the broker is down, 200 once it is back', async () => {
      for (const node of nodes) {
        const { status, body } = await health(node)
        assert.equal(status, 200, JSON.stringify(body))
        assert.deepEqual(body.bus, { kind, up: true })
      }
      await broker.kill()
      const down = await healthBecomes(nodes[0]!, 503, 20_000)
      assert.equal(down.status, 'unavailable')
      assert.equal((down.bus as { up: boolean }).up, false)
      await broker.start()
      await healthBecomes(nodes[0]!, 200, 30_000)
      await healthBecomes(nodes[1]!, 200, 30_000)
    })
  })
}
