// The bus conformance suite against MemoryBus, the embedded default: one process, so the tests
// that need a shared broker (two nodes, broker flush and restart, subscriptions counted on the
// broker) are skipped, and a new instance stands for a restarted process (a new epoch).
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { MemoryBus } from '../../src/pubsub/memory-bus.js'
import { busConformance } from './conformance.js'

busConformance({
  name: 'MemoryBus',
  shared: false,
  createBus: async (options) => new MemoryBus(options),
})

describe('MemoryBus idempotency window', () => {
  test('holds at most dedupKeys ids: the oldest is forgotten first', async () => {
    const bus = new MemoryBus({ dedupKeys: 2 })
    const keep = { size: 10, ttl: 0 }
    const first = await bus.publish('c', { data: '1', id: 'a', history: keep })
    await bus.publish('c', { data: '2', id: 'b', history: keep })
    // 'a' is still remembered: answered with its position, nothing published.
    assert.deepEqual(await bus.publish('c', { data: '1', id: 'a', history: keep }), first)
    await bus.publish('c', { data: '3', id: 'c', history: keep })
    // A third id pushed out the oldest ('a'): a repeat of it is a new publication now.
    const again = await bus.publish('c', { data: '1', id: 'a', history: keep })
    assert.equal(again.offset, 4)
    assert.deepEqual(await bus.publish('c', { data: '3', id: 'c', history: keep }), {
      offset: 3,
      epoch: first.epoch,
    })
    await bus.close()
  })

  test('refuses a dedupKeys or dedupTtl that is not a positive number', () => {
    assert.throws(() => new MemoryBus({ dedupKeys: 0 }), /dedupKeys must be a positive number/)
    assert.throws(() => new MemoryBus({ dedupTtl: -1 }), /dedupTtl must be a positive number/)
  })
})
