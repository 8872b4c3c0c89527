/**
 * The fault tests' guarantee over each forced HTTP transport, through the fault proxy: clients
 * subscribed over SSE or long polling, numbered publications from the server while the proxy
 * cuts every connection (streams, polls and POSTs alike) or black-holes them; every client must
 * end with exactly 1..N, in order — each checks every publication as it arrives. Then a client
 * whose transport is switched mid-stream (WebSocket → SSE → long polling → WebSocket), with
 * the same guarantee across each switch.
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { WebSocket } from '../../src/index.js'
import {
  RallyClient,
  type Subscription,
  type TransportFactory,
  webSocketTransport,
} from '../../src/realtime/client/index.js'
import { longPollingTransport, sseTransport } from '../../src/realtime/client/transports/http.js'
import { createRealtime, DisconnectCode, type Realtime } from '../../src/realtime/index.js'
import { type HttpTransports, listenTransports } from '../../src/realtime/transports/http.js'
import { FaultProxy } from '../support/fault-proxy.js'

const CHANNEL = 'feed:main'
const CLIENTS = 20
const HEARTBEAT = { interval: 400, timeout: 800 }
const BOUND = { timeout: 150_000 }

interface Watched {
  client: RallyClient
  subscription: Subscription
  received: number[]
  violations: string[]
  recoveries: boolean[]
  transports: string[]
}

interface Harness {
  realtime: Realtime
  transports: HttpTransports
  proxy: FaultProxy
  url: string
  clients: Watched[]
  close(): Promise<void>
}

async function startHarness(): Promise<Harness> {
  const realtime = createRealtime({
    channels: { 'feed:*': { history: { size: 100_000, ttl: 600_000 } } },
    heartbeat: HEARTBEAT,
    limits: { historyLimit: 100_000 },
    onError: () => {},
  })
  const served = await listenTransports(realtime, { port: 0, host: '127.0.0.1' })
  const { transports, port } = served
  const proxy = await FaultProxy.start({ targetPort: port })
  const clients: Watched[] = []
  return {
    realtime,
    transports,
    proxy,
    url: `http://127.0.0.1:${proxy.port}/realtime`,
    clients,
    async close() {
      for (const { client } of clients) client.close()
      await proxy.close()
      await realtime.close()
      await served.close()
    },
  }
}

function watch(url: string, factory: TransportFactory): Watched {
  const client = new RallyClient(url, {
    transports: [factory],
    reconnect: { minDelay: 20, maxDelay: 250 },
    silenceLimit: () => 2 * HEARTBEAT.interval + 500,
    connectTimeout: 5000,
    timeout: 30_000,
  })
  const subscription = client.channel(CHANNEL)
  const watched: Watched = {
    client,
    subscription,
    received: [],
    violations: [],
    recoveries: [],
    transports: [],
  }
  subscription.on('subscribed', ({ recovered }) => watched.recoveries.push(recovered))
  subscription.on('publication', (pub) => {
    const value = pub.data as number
    const last = watched.received.at(-1)
    if (last !== undefined && value !== last + 1) watched.violations.push(`after ${last} came ${value}`)
    watched.received.push(value)
  })
  client.on('connected', ({ transport }) => watched.transports.push(transport))
  client.connect()
  return watched
}

async function eventually(condition: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

function allSubscribed(clients: readonly Watched[]): boolean {
  return clients.every((w) => w.client.state === 'connected' && w.subscription.state === 'subscribed')
}

/** Waits until every client has `more` publications beyond the most any had now. */
function allAdvance(clients: readonly Watched[], more: number, what: string): Promise<void> {
  const target = Math.max(...clients.map((w) => w.received.length)) + more
  // Generous: after a black hole, Node's fetch may first reuse pooled keep-alive connections that
  // died in it, each waiting out the client's connect timeout before a fresh one is made.
  return eventually(() => clients.every((w) => w.received.length >= target), 60_000, what)
}

/**
 * Publishes numbers while `inject` runs (5 at a time, 25 ms apart), at least `minimum`; heals,
 * waits for every client to have them all, and checks each got exactly 1..N with every
 * resubscription recovered.
 */
async function underFault(harness: Harness, minimum: number, inject: () => Promise<void>): Promise<number> {
  await eventually(() => allSubscribed(harness.clients), 20_000, 'every client to subscribe')
  let published = 0
  let injecting = true
  const schedule = inject().finally(() => {
    injecting = false
  })
  while (injecting || published < minimum) {
    published++
    await harness.realtime.publish(CHANNEL, published)
    if (published % 5 === 0) await new Promise((resolve) => setTimeout(resolve, 25))
  }
  await schedule
  harness.proxy.heal()
  await eventually(
    () => harness.clients.every((w) => w.received.length >= published || w.violations.length > 0),
    30_000,
    `every client to receive 1..${published}`,
  )
  const sequence = Array.from({ length: published }, (_, i) => i + 1)
  for (const w of harness.clients) {
    assert.deepEqual(w.violations, [], `${w.client.clientId} recoveries ${w.recoveries} over ${w.transports}`)
    assert.deepEqual(w.received, sequence)
    assert.equal(w.recoveries[0], false)
    assert.ok(
      w.recoveries.slice(1).every((recovered) => recovered),
      `every resubscription recovered: ${w.recoveries}`,
    )
  }
  return published
}

for (const [name, factory] of [
  ['sse', () => sseTransport()],
  ['long-polling', () => longPollingTransport()],
] as const) {
  describe(`${CLIENTS} clients forced onto ${name}, numbered publications, faults injected`, () => {
    test('every connection cut, three times', BOUND, async () => {
      const harness = await startHarness()
      try {
        for (let i = 0; i < CLIENTS; i++) harness.clients.push(watch(harness.url, factory()))
        await underFault(harness, 300, async () => {
          for (let round = 0; round < 3; round++) {
            await allAdvance(harness.clients, 20, 'publications before the cut')
            assert.ok(harness.proxy.cutAll() > 0)
          }
          await allAdvance(harness.clients, 20, 'publications after the last cut')
        })
        assert.ok(harness.proxy.counters.cut >= 3 * CLIENTS)
        for (const w of harness.clients) assert.ok(w.transports.every((t) => t === name))
      } finally {
        await harness.close()
      }
    })

    test('black hole on the established connections (only heartbeats notice), twice', BOUND, async () => {
      const harness = await startHarness()
      try {
        for (let i = 0; i < CLIENTS; i++) harness.clients.push(watch(harness.url, factory()))
        const heartbeatDrops: number[] = harness.clients.map(() => 0)
        harness.clients.forEach((w, i) => {
          w.client.on('disconnected', ({ code }) => {
            if (code === DisconnectCode.HeartbeatTimeout) heartbeatDrops[i]!++
          })
        })
        await underFault(harness, 300, async () => {
          for (let round = 1; round <= 2; round++) {
            await allAdvance(harness.clients, 20, 'publications before the black hole')
            assert.ok(harness.proxy.blackHoleEstablished('both') > 0)
            await eventually(
              () => heartbeatDrops.every((count) => count >= round),
              20_000,
              'every client to judge the path dead',
            )
          }
          await allAdvance(harness.clients, 20, 'publications after the black hole')
        })
      } finally {
        await harness.close()
      }
    })
  })
}

describe('one client switched between transports mid-stream', () => {
  test('WebSocket → SSE → long polling → WebSocket, numbered publications flowing', BOUND, async () => {
    const harness = await startHarness()
    try {
      const carriers: Record<string, TransportFactory> = {
        websocket: webSocketTransport(WebSocket),
        sse: sseTransport(),
        'long-polling': longPollingTransport(),
      }
      let current = 'websocket'
      // The client sees one factory; the test moves it to another carrier and drops the connection.
      const switching: TransportFactory = {
        name: 'switching',
        open: (url, events) => carriers[current]!.open(url, events),
      }
      for (let i = 0; i < 5; i++) harness.clients.push(watch(harness.url, switching))
      const connectedOver: string[] = []
      harness.clients[0]!.client.on('connected', () => connectedOver.push(current))
      await underFault(harness, 300, async () => {
        for (const next of ['sse', 'long-polling', 'websocket']) {
          await allAdvance(harness.clients, 20, `publications before switching to ${next}`)
          current = next
          for (const w of harness.clients)
            harness.realtime.disconnect(w.client.clientId!, DisconnectCode.ForceReconnect, 'switch')
          await eventually(() => connectedOver.at(-1) === next, 10_000, `a connection over ${next}`)
        }
        await allAdvance(harness.clients, 20, 'publications after the last switch')
      })
      assert.deepEqual(connectedOver, ['websocket', 'sse', 'long-polling', 'websocket'])
    } finally {
      await harness.close()
    }
  })
})
