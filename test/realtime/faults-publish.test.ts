/**
 * Client publishes under faults, never twice: 100 RallyClients each publish 1..20 to a channel of
 * their own, one after the other, while the proxy cuts every connection again and again. A
 * publish in flight at a cut is resent on the next connection with the same key, and the server
 * (which carries the client's dedup window over through `session`) answers with the first
 * offset. Every channel's history must then be exactly 1..20 at offsets 1..20, and every publish
 * must have resolved with its own offset.
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { WebSocket } from '../../src/index.js'
import { RallyClient } from '../../src/realtime/client/index.js'
import { createRealtime } from '../../src/realtime/index.js'
import { FaultProxy } from '../support/fault-proxy.js'
import { eventually } from './faults-helpers.js'

const CLIENTS = 100
const PUBLISHES = 20

describe(`${CLIENTS} clients publishing through repeated cuts`, () => {
  test('every publish lands exactly once, in order', { timeout: 60_000 }, async () => {
    const realtime = createRealtime({
      channels: { 'own:*': { publish: true, history: { size: 100, ttl: 600_000 } } },
      heartbeat: { interval: 400, timeout: 800 },
      onError: () => {},
    })
    const server = await realtime.listen({ port: 0, host: '127.0.0.1' })
    const proxy = await FaultProxy.start({ targetPort: server.port! })
    const clients = Array.from(
      { length: CLIENTS },
      () =>
        new RallyClient(`ws://127.0.0.1:${proxy.port}/`, {
          WebSocket,
          reconnect: { minDelay: 20, maxDelay: 250 },
          silenceLimit: () => 1300,
          timeout: 45_000,
        }),
    )
    try {
      for (const client of clients) client.connect()
      await eventually(() => clients.every((c) => c.state === 'connected'), 20_000, 'every client to connect')
      const offsets: number[][] = clients.map(() => [])
      let finished = 0
      const publishing = clients.map(async (client, i) => {
        for (let n = 1; n <= PUBLISHES; n++) {
          const { offset } = await client.publish(`own:${i}`, n)
          offsets[i]!.push(offset)
        }
        finished++
      })
      // Cut everyone whenever they are all back, as long as publishes are still going on.
      let cuts = 0
      while (finished < CLIENTS && cuts < 10) {
        await eventually(
          () => finished === CLIENTS || clients.every((c) => c.state === 'connected'),
          20_000,
          'every client to reconnect',
        )
        if (finished === CLIENTS) break
        proxy.cutAll()
        cuts++
        // Let some publishes through before the next cut.
        const progress = offsets.reduce((sum, list) => sum + list.length, 0)
        await eventually(
          () =>
            finished === CLIENTS || offsets.reduce((sum, list) => sum + list.length, 0) >= progress + CLIENTS,
          20_000,
          'publishes to progress',
        )
      }
      await Promise.all(publishing)
      assert.ok(cuts >= 2, `only ${cuts} cuts happened while publishing`)
      const expected = Array.from({ length: PUBLISHES }, (_, i) => i + 1)
      for (let i = 0; i < CLIENTS; i++) {
        assert.deepEqual(offsets[i], expected, `client ${i}'s publish results`)
        const history = await realtime.history(`own:${i}`, { limit: 100 })
        assert.deepEqual(
          history.publications.map((p) => p.data),
          expected,
          `channel own:${i} holds each publish once, in order`,
        )
        assert.deepEqual(
          history.publications.map((p) => p.offset),
          expected,
        )
      }
    } finally {
      for (const client of clients) client.close()
      await proxy.close()
      await realtime.close()
    }
  })
})
