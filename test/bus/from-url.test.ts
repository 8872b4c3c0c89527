// busFromUrl picks the bus by the URL's scheme and connects it to a real broker; anything else is
// refused with a message naming the schemes it knows.
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { NatsBus } from '../../src/adapters/nats/index.js'
import { RedisBus } from '../../src/adapters/redis/index.js'
import { busFromUrl, busKindOf } from '../../src/pubsub/from-url.js'
import { type Broker, startNats, startRedis } from '../support/brokers.js'

describe('busFromUrl', () => {
  let redis: Broker
  let nats: Broker
  before(async () => {
    // One after another: two free-port picks at once can land on the same port.
    redis = await startRedis()
    nats = await startNats()
  })
  after(async () => {
    await Promise.all([redis?.stop(), nats?.stop()])
  })

  test('schemes: redis, rediss → Redis; nats, tls → NATS; others refused', () => {
    assert.equal(busKindOf('redis://127.0.0.1:6379'), 'redis')
    assert.equal(busKindOf('rediss://cache.example:6380/0'), 'redis')
    assert.equal(busKindOf('nats://127.0.0.1:4222'), 'nats')
    assert.equal(busKindOf('tls://nats.example:4222'), 'nats')
    assert.throws(() => busKindOf('http://127.0.0.1:6379'), /http: is not a broker scheme \(redis:\/\//)
    assert.throws(() => busKindOf('127.0.0.1:6379'), /not a URL|not a broker scheme/)
    assert.throws(() => busKindOf(''), /not a URL/)
  })

  test('a redis:// URL connects a RedisBus that publishes and reads back', async () => {
    const bus = await busFromUrl(redis.url, { presenceTtl: 5000 })
    try {
      assert.ok(bus instanceof RedisBus)
      assert.equal(bus.presenceTtl, 5000)
      const position = await bus.publish('from-url', { data: '1', history: { size: 10, ttl: 0 } })
      const { publications } = await bus.history('from-url', {})
      assert.deepEqual(
        publications.map((p) => [p.offset, p.data]),
        [[position.offset, '1']],
      )
    } finally {
      await bus.close()
    }
  })

  test('a nats:// URL connects a NatsBus that publishes and reads back', async () => {
    const bus = await busFromUrl(nats.url)
    try {
      assert.ok(bus instanceof NatsBus)
      const position = await bus.publish('from-url', { data: '2', history: { size: 10, ttl: 0 } })
      const { publications } = await bus.history('from-url', {})
      assert.deepEqual(
        publications.map((p) => [p.offset, p.data]),
        [[position.offset, '2']],
      )
    } finally {
      await bus.close()
    }
  })
})
