/**
 * MemoryBus: offsets and epochs, history bounded by size and time, presence expiry, ordered
 * delivery (also when a listener publishes from inside a delivery), ephemeral events.
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import type { BusPublication } from '../../src/pubsub/bus.js'
import { MemoryBus } from '../../src/pubsub/memory-bus.js'

const keep = (size: number, ttl = 60_000) => ({ size, ttl })

describe('MemoryBus', () => {
  test('offsets count up per channel; each instance has its own epoch', async () => {
    const bus = new MemoryBus()
    assert.deepEqual(await bus.publish('a', { data: '1' }), { offset: 1, epoch: bus.epoch })
    assert.deepEqual(await bus.publish('a', { data: '2' }), { offset: 2, epoch: bus.epoch })
    assert.deepEqual(await bus.publish('b', { data: '1' }), { offset: 1, epoch: bus.epoch })
    assert.notEqual(new MemoryBus().epoch, bus.epoch)
    assert.notEqual(new MemoryBus().nodeId, bus.nodeId)
  })

  test('history: since a position, complete only when nothing is missing', async () => {
    const bus = new MemoryBus()
    for (let i = 1; i <= 10; i++) await bus.publish('c', { data: String(i), history: keep(5) })
    const all = await bus.history('c', {})
    assert.deepEqual(
      all.publications.map((p) => p.data),
      ['6', '7', '8', '9', '10'],
    )
    assert.deepEqual(all.latest, { offset: 10, epoch: bus.epoch })
    const fromSeven = await bus.history('c', { since: { offset: 7, epoch: bus.epoch } })
    assert.deepEqual(
      fromSeven.publications.map((p) => p.offset),
      [8, 9, 10],
    )
    assert.equal(fromSeven.complete, true)
    const trimmed = await bus.history('c', { since: { offset: 3, epoch: bus.epoch } })
    assert.equal(trimmed.complete, false, 'offsets 4 and 5 were trimmed away')
    assert.deepEqual(
      trimmed.publications.map((p) => p.offset),
      [6, 7, 8, 9, 10],
    )
    const edge = await bus.history('c', { since: { offset: 5, epoch: bus.epoch } })
    assert.equal(edge.complete, true)
    const limited = await bus.history('c', { since: { offset: 6, epoch: bus.epoch }, limit: 2 })
    assert.deepEqual(
      limited.publications.map((p) => p.offset),
      [7, 8],
    )
    assert.equal(limited.complete, false, 'cut by the limit')
    const otherEpoch = await bus.history('c', { since: { offset: 7, epoch: 'elsewhere' } })
    assert.equal(otherEpoch.complete, false)
    const upToDate = await bus.history('c', { since: { offset: 10, epoch: bus.epoch } })
    assert.deepEqual(upToDate.publications, [])
    assert.equal(upToDate.complete, true)
  })

  test('history: expired publications go; the cap bounds any policy', async () => {
    let now = 1000
    const bus = new MemoryBus({ now: () => now, historyCap: 3 })
    await bus.publish('t', { data: '1', history: keep(100, 50) })
    now += 40
    await bus.publish('t', { data: '2', history: keep(100, 50) })
    now += 20
    const result = await bus.history('t', { since: { offset: 0, epoch: bus.epoch } })
    assert.deepEqual(
      result.publications.map((p) => p.data),
      ['2'],
    )
    assert.equal(result.complete, false)
    for (let i = 3; i <= 6; i++) await bus.publish('t', { data: String(i), history: keep(100, 50) })
    assert.equal((await bus.history('t', {})).publications.length, 3)
  })

  test('a channel without a history policy keeps none but still counts', async () => {
    const bus = new MemoryBus()
    await bus.publish('n', { data: '1' })
    const result = await bus.history('n', { since: { offset: 0, epoch: bus.epoch } })
    assert.deepEqual(result.publications, [])
    assert.equal(result.latest.offset, 1)
    assert.equal(result.complete, false)
  })

  test('delivery is in offset order, also for publications made inside a delivery', async () => {
    const bus = new MemoryBus()
    const first: number[] = []
    const second: number[] = []
    await bus.subscribe('o', (p) => {
      first.push(p.offset)
      if (p.offset < 5) void bus.publish('o', { data: 'again' })
    })
    await bus.subscribe('o', (p) => second.push(p.offset))
    await bus.publish('o', { data: 'start' })
    assert.deepEqual(first, [1, 2, 3, 4, 5])
    assert.deepEqual(second, [1, 2, 3, 4, 5])
  })

  test('unsubscribe stops delivery; info and time travel with the publication', async () => {
    const bus = new MemoryBus({ now: () => 42 })
    const seen: BusPublication[] = []
    const unsubscribe = await bus.subscribe('u', (p) => seen.push(p))
    await bus.publish('u', { data: '"x"', info: '{"client":"c"}' })
    await unsubscribe()
    await bus.publish('u', { data: '"y"' })
    assert.deepEqual(seen, [
      { channel: 'u', offset: 1, epoch: bus.epoch, data: '"x"', info: '{"client":"c"}', time: 42 },
    ])
  })

  test('presence: members expire unless refreshed', async () => {
    let now = 0
    const bus = new MemoryBus({ presenceTtl: 100, now: () => now })
    await bus.join('p', { client: 'c1', user: 'u1', info: { name: 'Ann' } })
    await bus.join('p', { client: 'c2', user: 'u2' })
    assert.equal(await bus.memberCount('p'), 2)
    now = 60
    await bus.join('p', { client: 'c1', user: 'u1', info: { name: 'Ann' } })
    now = 120
    assert.deepEqual(await bus.members('p'), [{ client: 'c1', user: 'u1', info: { name: 'Ann' } }])
    await bus.leave('p', 'c1')
    assert.equal(await bus.memberCount('p'), 0)
  })

  test('ephemeral events reach listeners, not history', async () => {
    const bus = new MemoryBus()
    const received: string[] = []
    const stop = await bus.listen('e', (event) => received.push(event.data))
    await bus.emit({ channel: 'e', data: '"hello"' })
    await stop()
    await bus.emit({ channel: 'e', data: '"gone"' })
    assert.deepEqual(received, ['"hello"'])
    assert.equal((await bus.history('e', {})).latest.offset, 0)
  })

  test('options are checked; a closed bus refuses work', async () => {
    assert.throws(() => new MemoryBus({ presenceTtl: 0 }), /presenceTtl/)
    const bus = new MemoryBus()
    await bus.close()
    await assert.rejects(bus.publish('x', { data: '1' }), /closed/)
  })
})
