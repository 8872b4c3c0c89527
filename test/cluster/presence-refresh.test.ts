/**
 * The realtime layer's presence refresh follows the bus's presence expiry: with a bus whose
 * members expire after 1.5 s, createRealtime refreshes its members well within that by default
 * (with the fixed 20 s period they expired 18.5 s out of every 20), and a period that is not
 * shorter than the expiry is refused.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { WebSocket } from '../../src/index.js'
import type { PresenceMember } from '../../src/pubsub/bus.js'
import { MemoryBus } from '../../src/pubsub/memory-bus.js'
import { RallyClient } from '../../src/realtime/client/index.js'
import { createRealtime } from '../../src/realtime/index.js'
import { eventually } from './helpers.js'

const PRESENCE_TTL = 1500

test('the default presence refresh comes within the bus presenceTtl', { timeout: 20_000 }, async () => {
  const bus = new MemoryBus({ presenceTtl: PRESENCE_TTL })
  const joins: number[] = []
  const join = bus.join.bind(bus)
  bus.join = (channel: string, member: PresenceMember) => {
    joins.push(Date.now())
    return join(channel, member)
  }
  const realtime = createRealtime({ bus, channels: { 'room:*': { presence: true } }, onError: () => {} })
  const server = await realtime.listen({ port: 0, host: '127.0.0.1' })
  const client = new RallyClient(`ws://127.0.0.1:${server.port}/`, { WebSocket })
  try {
    const subscription = client.channel('room:a')
    client.connect()
    await eventually(
      () => subscription.state === 'subscribed' && joins.length >= 1,
      10_000,
      () => 'the join',
    )
    // Three refreshes after the join: the member never went a whole expiry without one.
    await eventually(
      () => joins.length >= 4,
      10_000,
      () => `refreshes (${joins.length - 1} so far)`,
    )
    for (let i = 1; i < joins.length; i++) assert.ok(joins[i]! - joins[i - 1]! < PRESENCE_TTL)
    assert.equal((await realtime.presence('room:a')).length, 1)
  } finally {
    client.close()
    await realtime.close()
  }
})

test('a presenceRefresh not shorter than the bus presenceTtl is refused', () => {
  const bus = new MemoryBus({ presenceTtl: PRESENCE_TTL })
  assert.throws(
    () => createRealtime({ bus, channels: {}, presenceRefresh: PRESENCE_TTL }),
    /presenceRefresh \(1500 ms\) must be shorter than the bus's presenceTtl \(1500 ms\)/,
  )
  assert.throws(() => createRealtime({ bus, channels: {}, presenceRefresh: 0 }), /positive/)
  const realtime = createRealtime({ bus, channels: {}, presenceRefresh: PRESENCE_TTL - 1 })
  void realtime.close()
})
