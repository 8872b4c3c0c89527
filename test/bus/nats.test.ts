// The bus conformance suite against NatsBus on a real nats-server with JetStream (file storage in
// a temporary directory) started on a free port. A restart keeps the streams (the same epochs:
// recovery covers the outage); losing the history is a restart from an empty store (new epochs).
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { jetstream } from '@nats-io/jetstream'
import { connect } from '@nats-io/transport-node'
import { channelToken, NatsBus } from '../../src/adapters/nats/index.js'
import type { BusPublication } from '../../src/pubsub/bus.js'
import { type Broker, startNats } from '../support/brokers.js'
import { FaultProxy } from '../support/fault-proxy.js'
import { busConformance } from './conformance.js'

let nats: Broker | undefined

/** Awaits `promise`, failing with `what()` after 10 s. */
async function within(promise: Promise<void>, what: () => string): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  try {
    await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out: ${what()}`)), 10_000)
      }),
    ])
  } finally {
    clearTimeout(timer)
  }
}

busConformance({
  name: 'NatsBus',
  shared: true,
  async setUp() {
    nats = await startNats()
  },
  async tearDown() {
    await nats?.stop()
  },
  createBus: (options) =>
    NatsBus.connect({
      servers: nats!.url,
      fillDelay: 100,
      ...options,
    }),
  async loseHistory() {
    await nats!.restart({ wipe: true })
  },
  async restartBroker() {
    await nats!.restart()
  },
  async brokerSubscriptions(channel) {
    // The server's own count of subscriptions on the channel's fan-out subject (all clients).
    const response = await fetch(`${nats!.monitorUrl}/subsz?subs=1&test=rally.p.${channel}`)
    const body = (await response.json()) as { subscriptions_list?: { subject: string }[] }
    return (body.subscriptions_list ?? []).filter((sub) => sub.subject === `rally.p.${channel}`).length
  },
})

describe('NatsBus: order and completeness when core NATS does not bring a publication', () => {
  let broker: Broker
  const buses: NatsBus[] = []
  before(async () => {
    broker = await startNats()
  })
  after(async () => {
    await Promise.allSettled(buses.map((bus) => bus.close()))
    await broker.stop()
  })

  test('a publication stored by a publisher that died before its fan-out is read from the stream, in order', async () => {
    const publisher = await NatsBus.connect({ servers: broker.url })
    const subscriber = await NatsBus.connect({ servers: broker.url, fillDelay: 50 })
    buses.push(publisher, subscriber)
    const channel = 'chat:fill'
    const received: BusPublication[] = []
    let resolveThird: () => void = () => {}
    const third = new Promise<void>((resolve) => {
      resolveThird = resolve
    })
    await subscriber.subscribe(channel, (publication) => {
      received.push(publication)
      if (received.length === 3) resolveThird()
    })
    await publisher.publish(channel, { data: '"one"', history: { size: 10, ttl: 60_000 } })
    // The second publication reaches JetStream only, as if its publisher died right after the
    // acknowledgement: the same stored form, on the channel's history subject, no fan-out.
    const raw = await connect({ servers: broker.url })
    const ack = await jetstream(raw).publish(
      `rally.h.${channelToken(channel)}`,
      new TextEncoder().encode(`ghost ${Date.now()} 0\n"two"`),
    )
    await raw.close()
    assert.equal(ack.seq, 2)
    await publisher.publish(channel, { data: '"three"' })
    await within(third, () => `got ${received.length} of 3 publications`)
    assert.deepEqual(
      received.map((p) => [p.offset, p.data]),
      [
        [1, '"one"'],
        [2, '"two"'],
        [3, '"three"'],
      ],
    )
  })

  test('a publication trimmed away before it could be read is skipped and reported as a gap', async () => {
    const publisher = await NatsBus.connect({ servers: broker.url })
    const subscriber = await NatsBus.connect({ servers: broker.url, fillDelay: 50 })
    buses.push(publisher, subscriber)
    const channel = 'chat:lost'
    const received: BusPublication[] = []
    const gaps: (readonly string[])[] = []
    let done: () => void = () => {}
    const finished = new Promise<void>((resolve) => {
      done = resolve
    })
    subscriber.onGap((channels) => {
      gaps.push(channels)
      if (received.length === 2) done()
    })
    await subscriber.subscribe(channel, (publication) => {
      received.push(publication)
      if (received.length === 2 && gaps.length > 0) done()
    })
    // History keeps one publication: the ghost (offset 2) is trimmed by offset 3 before the
    // subscriber, waiting for it, reads the stream.
    const keepOne = { size: 1, ttl: 60_000 }
    await publisher.publish(channel, { data: '"one"', history: keepOne })
    const raw = await connect({ servers: broker.url })
    await jetstream(raw).publish(
      `rally.h.${channelToken(channel)}`,
      new TextEncoder().encode('ghost 0 0\n"two"'),
    )
    await raw.close()
    await publisher.publish(channel, { data: '"three"' })
    await within(finished, () => `got ${received.length} of 2 publications and ${gaps.length} gap reports`)
    assert.deepEqual(
      received.map((p) => p.offset),
      [1, 3],
    )
    assert.deepEqual(gaps, [[channel]])
  })
})

test('NatsBus.connect fails when no server listens', async () => {
  const stopped = await startNats()
  const url = stopped.url
  await stopped.stop()
  await assert.rejects(NatsBus.connect({ servers: url }))
})

describe('NatsBus on a path that goes silent', () => {
  test('its pings notice the black hole: status down, then up once the path heals', async () => {
    const broker = await startNats()
    const proxy = await FaultProxy.start({ targetPort: broker.port })
    const bus = await NatsBus.connect({ servers: `nats://127.0.0.1:${proxy.port}`, pingInterval: 300 })
    try {
      const statuses: string[] = []
      let changed: () => void = () => {}
      bus.onStatus((status) => {
        statuses.push(status)
        changed()
      })
      const next = (count: number) =>
        new Promise<void>((resolve) => {
          changed = () => {
            if (statuses.length >= count) resolve()
          }
          changed()
        })
      // Bytes vanish both ways and nothing closes: only the missing pongs can tell.
      proxy.blackHole('both')
      await within(next(1), () => `status changes so far: ${statuses}`)
      assert.deepEqual(statuses, ['down'])
      proxy.heal()
      await within(next(2), () => `status changes so far: ${statuses}`)
      assert.deepEqual(statuses, ['down', 'up'])
      const position = await bus.publish('chat:silent', { data: '1', history: { size: 10, ttl: 60_000 } })
      assert.equal(position.offset, 1)
    } finally {
      await bus.close()
      await proxy.close()
      await broker.stop()
    }
  })
})
