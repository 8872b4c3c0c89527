/**
 * The guarantee under injected faults: 200 RallyClients subscribed through the fault proxy, a
 * publisher sending numbered messages from the server side while the proxy breaks the path over
 * and over; every client must end with exactly 1..N, in order — any gap or duplicate fails the
 * test (each client checks every publication as it arrives, see faults-helpers.ts). History is
 * large enough here, so every resubscription must also report recovered: true.
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { DisconnectCode } from '../../src/realtime/protocol.js'
import {
  allAdvance,
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

/**
 * Runs `inject` (the fault schedule) while publishing numbers in batches of 5, 25 ms apart; keeps publishing until the schedule is done and at least `minimum` were sent, then heals
 * and waits until every client has them all. Returns how many were published.
 */
async function underFault(
  harness: Harness,
  minimum: number,
  inject: (harness: Harness) => Promise<void>,
): Promise<number> {
  await allResubscribed(harness.clients, 20_000, 'every client to subscribe')
  let published = 0
  let injecting = true
  const schedule = inject(harness).finally(() => {
    injecting = false
  })
  while (injecting || published < minimum) {
    published++
    await harness.realtime.publish(CHANNEL, published)
    if (published % 5 === 0) await new Promise((resolve) => setTimeout(resolve, 25))
  }
  await schedule
  harness.proxy.heal()
  const expected = published
  await eventually(
    () => harness.clients.every((w) => w.received.length >= expected || w.violations.length > 0),
    30_000,
    `every client to receive 1..${expected}`,
  ).catch((error: Error) => {
    throw new Error(`${error.message}\n${describeFailures(harness.clients, expected)}`)
  })
  return expected
}

/** Every client got exactly 1..expected, and every resubscription recovered. */
function assertExact(harness: Harness, expected: number): void {
  const sequence = Array.from({ length: expected }, (_, i) => i + 1)
  const failures = describeFailures(harness.clients, expected)
  assert.equal(failures, '', `clients with a gap, a duplicate or a short stream:\n${failures}`)
  for (const watched of harness.clients) {
    assert.deepEqual(watched.received, sequence)
    assert.equal(watched.subscribed[0]?.recovered, false, 'the first subscribe is not a recovery')
    for (const event of watched.subscribed.slice(1)) {
      assert.deepEqual(event, { recovered: true, wasRecovering: true }, `${watched.client.clientId}`)
    }
  }
}

/** Waits until every client has been disconnected at least `count` more times than `before`. */
function allDisconnectedAgain(harness: Harness, before: number[], what: string): Promise<void> {
  return eventually(
    () => harness.clients.every((w, i) => w.disconnects > before[i]!),
    15_000,
    `every client to notice ${what}`,
  )
}

function disconnectCounts(harness: Harness): number[] {
  return harness.clients.map((w) => w.disconnects)
}

async function withHarness(run: (harness: Harness) => Promise<void>): Promise<void> {
  const harness = await startHarness({ clients: CLIENTS, historySize: 10_000, heartbeat: HEARTBEAT })
  try {
    await run(harness)
  } finally {
    await harness.close()
  }
}

describe(`${CLIENTS} clients, numbered publications, faults injected repeatedly`, () => {
  test('cut every connection, three times', BOUND, async () => {
    await withHarness(async (harness) => {
      const expected = await underFault(harness, 300, async ({ proxy, clients }) => {
        for (let round = 0; round < 3; round++) {
          await allResubscribed(clients, 20_000, 'every client to resubscribe')
          const before = disconnectCounts(harness)
          assert.equal(proxy.cutAll(), CLIENTS)
          await allDisconnectedAgain(harness, before, 'the cut')
        }
      })
      assertExact(harness, expected)
      assert.ok(harness.proxy.counters.cut >= 3 * CLIENTS)
      for (const watched of harness.clients) assert.ok(watched.disconnects >= 3)
    })
  })

  test(
    'black hole on the established connections, both ways (only heartbeats notice), twice',
    BOUND,
    async () => {
      await withHarness(async (harness) => {
        const expected = await underFault(harness, 300, async ({ proxy, clients }) => {
          for (let round = 0; round < 2; round++) {
            await allResubscribed(clients, 20_000, 'every client to resubscribe')
            const before = disconnectCounts(harness)
            // As when NAT entries expire: these paths are dead, new connections work. (Dead ones of
            // the previous round may still be open, until the server's heartbeat drops them.)
            assert.ok(proxy.blackHoleEstablished('both') >= CLIENTS)
            await allDisconnectedAgain(harness, before, 'the black hole')
          }
        })
        assertExact(harness, expected)
        assert.ok(harness.proxy.counters.swallowed.downstream > 0)
        // Nobody closed these connections: each client's own heartbeat judged the path dead.
        for (const watched of harness.clients) {
          assert.ok(
            watched.disconnectCodes.filter((code) => code === DisconnectCode.HeartbeatTimeout).length >= 2,
            `${watched.client.clientId}: ${watched.disconnectCodes.join(',')}`,
          )
        }
      })
    },
  )

  test('black hole on the established connections, server → client only, twice', BOUND, async () => {
    await withHarness(async (harness) => {
      const expected = await underFault(harness, 300, async ({ proxy, clients }) => {
        for (let round = 0; round < 2; round++) {
          await allResubscribed(clients, 20_000, 'every client to resubscribe')
          const before = disconnectCounts(harness)
          proxy.blackHoleEstablished('downstream')
          await allDisconnectedAgain(harness, before, 'the one-way black hole')
        }
      })
      assertExact(harness, expected)
    })
  })

  test('black hole on the whole path, new connections too, until healed', BOUND, async () => {
    await withHarness(async (harness) => {
      const expected = await underFault(harness, 300, async ({ proxy, clients }) => {
        await allResubscribed(clients, 20_000, 'every client to subscribe')
        const before = disconnectCounts(harness)
        proxy.blackHole('both')
        await allDisconnectedAgain(harness, before, 'the black hole')
        // Reconnection attempts fall into it too; every client stays away until it is healed.
        proxy.heal()
      })
      assertExact(harness, expected)
      for (const watched of harness.clients)
        assert.ok(watched.disconnectCodes.includes(DisconnectCode.HeartbeatTimeout))
    })
  })

  test('half-open: one direction ended, each way in turn', BOUND, async () => {
    await withHarness(async (harness) => {
      const expected = await underFault(harness, 300, async ({ proxy, clients }) => {
        for (const direction of ['downstream', 'upstream', 'downstream', 'upstream'] as const) {
          await allResubscribed(clients, 20_000, 'every client to resubscribe')
          const before = disconnectCounts(harness)
          proxy.halfOpen(direction)
          await allDisconnectedAgain(harness, before, `the half-open ${direction} connection`)
        }
      })
      assertExact(harness, expected)
    })
  })

  test('delay on both directions, on and off', BOUND, async () => {
    await withHarness(async (harness) => {
      const expected = await underFault(harness, 300, async ({ proxy, clients }) => {
        for (let round = 0; round < 3; round++) {
          proxy.delay(40)
          // Hold the delay until 50 more publications crossed it to every client.
          await allAdvance(clients, 50, 'publications through the delay')
          proxy.delay(0)
          await allResubscribed(clients, 20_000, 'every client to be subscribed')
        }
      })
      assertExact(harness, expected)
    })
  })

  test('slow drip server → client, on and off', BOUND, async () => {
    await withHarness(async (harness) => {
      const expected = await underFault(harness, 300, async ({ proxy, clients }) => {
        for (let round = 0; round < 2; round++) {
          proxy.slowDrip(64, 5, 'downstream')
          // Hold it until 1 MB dripped through (publications pile up behind the drip meanwhile,
          // faster than it lets them through; pings wait behind them, so some clients judge
          // their path dead and come back through the drip).
          const before = proxy.counters.forwarded.downstream
          await eventually(
            () => proxy.counters.forwarded.downstream - before >= 1_000_000,
            20_000,
            '1 MB through the drip',
          )
          proxy.slowDrip(undefined, 5, 'downstream')
          await allResubscribed(clients, 20_000, 'every client to be subscribed')
        }
      })
      assertExact(harness, expected)
    })
  })
})
