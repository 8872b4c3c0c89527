/**
 * The two signals that replace a silent hole, under faults with 200 clients:
 * - a gap that history cannot cover (history of 5, 40 publications missed while the proxy
 *   refuses reconnections) resubscribes every client with recovered: false — and nothing of the
 *   gap is delivered partially; live publications continue in order afterwards;
 * - presence converges after faults: while a black hole hides every client, the server's
 *   heartbeat removes them all (no ghost members); once healed, presence lists exactly the
 *   connected clients' ids.
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import {
  allResubscribed,
  CHANNEL,
  describeFailures,
  eventually,
  type Harness,
  startHarness,
} from './faults-helpers.js'

const CLIENTS = 200
const HEARTBEAT = { interval: 400, timeout: 800 }
const BOUND = { timeout: 60_000 }

async function withHarness(historySize: number, run: (harness: Harness) => Promise<void>): Promise<void> {
  const harness = await startHarness({ clients: CLIENTS, historySize, heartbeat: HEARTBEAT })
  try {
    await run(harness)
  } finally {
    await harness.close()
  }
}

async function publishRange(harness: Harness, from: number, to: number): Promise<void> {
  for (let n = from; n <= to; n++) await harness.realtime.publish(CHANNEL, n)
}

describe(`${CLIENTS} clients: explicit signals instead of silent holes`, () => {
  test(
    'a gap history cannot cover resubscribes with recovered: false; live order resumes',
    BOUND,
    async () => {
      await withHarness(5, async (harness) => {
        const { proxy, clients } = harness
        await allResubscribed(clients, 20_000, 'every client to subscribe')
        await publishRange(harness, 1, 10)
        await eventually(() => clients.every((w) => w.received.length === 10), 20_000, 'publications 1..10')
        // Everyone is cut off and kept away while 40 publications go by; history keeps 5.
        proxy.refuse()
        proxy.cutAll()
        await eventually(
          () => clients.every((w) => w.client.state !== 'connected'),
          20_000,
          'every client to notice',
        )
        await publishRange(harness, 11, 50)
        proxy.heal()
        await allResubscribed(clients, 30_000, 'every client to resubscribe')
        for (const watched of clients) {
          assert.deepEqual(watched.subscribed.at(-1), { recovered: false, wasRecovering: true })
          // Nothing from the gap was delivered: no partial history passed off as complete.
          assert.deepEqual(
            watched.received,
            Array.from({ length: 10 }, (_, i) => i + 1),
          )
        }
        await publishRange(harness, 51, 60)
        await eventually(
          () => clients.every((w) => w.received.length === 20),
          20_000,
          `publications 51..60\n${describeFailures(clients, 60)}`,
        )
        for (const watched of clients) {
          assert.deepEqual(watched.violations, [])
          assert.deepEqual(watched.received.slice(10), [51, 52, 53, 54, 55, 56, 57, 58, 59, 60])
        }
      })
    },
  )

  test('presence converges after faults: no ghost after the heartbeat timeout', BOUND, async () => {
    await withHarness(100, async (harness) => {
      const { proxy, clients, realtime } = harness
      await allResubscribed(clients, 20_000, 'every client to subscribe')
      const ids = (): string[] => clients.map((w) => w.client.clientId!).sort()
      let members = await realtime.presence(CHANNEL)
      assert.deepEqual(members.map((m) => m.client).sort(), ids())
      // A cut: the server sees the closes at once; the clients come back under new ids.
      proxy.cutAll()
      await eventually(
        () => clients.every((w) => w.disconnects >= 1),
        20_000,
        'every client to notice the cut',
      )
      await allResubscribed(clients, 30_000, 'every client to resubscribe')
      await presenceEquals(harness, ids, 'presence after the cut')
      // A black hole: no close reaches the server; only its heartbeat can remove the members.
      proxy.blackHole('both')
      await eventually(
        () => realtime.core.clients.size === 0,
        20_000,
        'the server to drop every silent session (heartbeat timeout)',
      )
      members = await realtime.presence(CHANNEL)
      assert.deepEqual(members, [], 'no ghost members while every path is dead')
      proxy.heal()
      await allResubscribed(clients, 30_000, 'every client to resubscribe after the black hole')
      await presenceEquals(harness, ids, 'presence after the black hole')
    })
  })
})

/** Waits until presence lists exactly the clients' current ids (a few ms of bus work at most). */
async function presenceEquals(harness: Harness, ids: () => string[], what: string): Promise<void> {
  let last: string[] = []
  await eventually(
    () => {
      void harness.realtime.presence(CHANNEL).then((members) => {
        last = members.map((m) => m.client).sort()
      })
      return last.length === CLIENTS && JSON.stringify(last) === JSON.stringify(ids())
    },
    20_000,
    what,
  ).catch((error: Error) => {
    throw new Error(`${error.message}: ${last.length} members for ${CLIENTS} clients`)
  })
  assert.equal(new Set(last).size, CLIENTS)
}
