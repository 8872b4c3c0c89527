/**
 * Reconnection delays: the full-jitter bounds with an injected random source, the cap, the
 * option checks; then, over real sockets, the growth of delays across failed attempts and their
 * reset once a connection proved stable (an injected clock says how long it lasted). Also the
 * types flowing from a declared schema to the client (checked by the type checker).
 */
import assert from 'node:assert/strict'
import { after, afterEach, describe, test } from 'node:test'
import { backoffCeiling, backoffDelay, RallyClient, resolveBackoff } from '../../src/realtime/client/index.js'
import { FakeRealtimeServer } from './client-fake-server.js'
import { closeAllClients, newRallyClient, nextEvent } from './client-helpers.js'

const cleanups: (() => Promise<void> | void)[] = []

afterEach(async () => {
  closeAllClients()
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})
after(() => closeAllClients())

describe('backoff with full jitter', () => {
  test('the ceiling doubles from minDelay and stops at maxDelay', () => {
    const options = resolveBackoff({ minDelay: 100, maxDelay: 1000 })
    assert.deepEqual(
      [0, 1, 2, 3, 4, 5, 50, 5000].map((attempt) => backoffCeiling(attempt, options)),
      [100, 200, 400, 800, 1000, 1000, 1000, 1000],
    )
  })

  test('the delay is uniform in [0, ceiling): the random source decides where', () => {
    const low = resolveBackoff({ minDelay: 100, maxDelay: 1000, random: () => 0 })
    const high = resolveBackoff({ minDelay: 100, maxDelay: 1000, random: () => 0.999999 })
    const half = resolveBackoff({ minDelay: 100, maxDelay: 1000, random: () => 0.5 })
    for (const attempt of [0, 1, 2, 3, 10]) {
      const ceiling = backoffCeiling(attempt, low)
      assert.equal(backoffDelay(attempt, low), 0)
      assert.equal(backoffDelay(attempt, high), ceiling - 1)
      assert.equal(backoffDelay(attempt, half), ceiling / 2)
    }
  })

  test('a random source outside [0, 1) cannot make a negative or oversized delay', () => {
    for (const value of [-1, 1, 7, Number.NaN]) {
      const options = resolveBackoff({ minDelay: 100, maxDelay: 1000, random: () => value })
      const delay = backoffDelay(3, options)
      assert.ok(delay >= 0 && delay < 800, `random ${value} gave ${delay}`)
    }
  })

  test('inconsistent options are refused with a clear error', () => {
    assert.throws(() => resolveBackoff({ minDelay: -1 }), /minDelay must be >= 0/)
    assert.throws(() => resolveBackoff({ minDelay: 100, maxDelay: 50 }), /maxDelay must be >= minDelay/)
    assert.throws(() => resolveBackoff({ stableAfter: -5 }), /stableAfter must be >= 0/)
  })
})

describe('reconnection delays over real sockets', () => {
  test('delays grow while attempts fail, and start again after a stable connection', async () => {
    const fake = await FakeRealtimeServer.start()
    cleanups.push(() => fake.close())
    let clock = 0
    // The highest delay the jitter allows, so that each delay shows its ceiling.
    const client = newRallyClient(fake.url, {
      reconnect: { minDelay: 8, maxDelay: 64, stableAfter: 1000, random: () => 0.999999 },
      now: () => clock,
    })
    const delays: number[] = []
    client.on('disconnected', ({ delay }) => delays.push(delay))
    client.connect()
    await nextEvent(client, 'connected')
    // Five short-lived connections in a row: each counts as a failed attempt.
    for (let i = 0; i < 5; i++) {
      const back = nextEvent(client, 'connected')
      for (const connection of fake.connections) connection.ws.terminate()
      await back
    }
    assert.deepEqual(delays, [7, 15, 31, 63, 63])
    // This one lasts past stableAfter: the next drop starts from the first delay again.
    clock += 1000
    const back = nextEvent(client, 'connected')
    for (const connection of fake.connections) connection.ws.terminate()
    await back
    assert.equal(delays.at(-1), 7)
  })

  test('asked for WebSocket without a global one and none given, the client says what to pass', () => {
    const saved = (globalThis as { WebSocket?: unknown }).WebSocket
    ;(globalThis as { WebSocket?: unknown }).WebSocket = undefined
    try {
      // The default list skips WebSocket where there is none (test/transports/default-order.test.ts).
      assert.throws(
        () => new RallyClient('ws://127.0.0.1:1/', { transports: ['websocket'] }),
        /No WebSocket constructor/,
      )
    } finally {
      ;(globalThis as { WebSocket?: unknown }).WebSocket = saved
    }
  })
})

describe('types from a declared schema', () => {
  type Chat = {
    channels: { 'chat:*': { text: string }; 'scores:live': number }
    rpc: { add: { params: { a: number; b: number }; result: number } }
  }

  test('channel data, publish data and RPC parameters and results are typed', () => {
    // Only built, never connected: what is checked here is the type checker's verdict.
    const client = newRallyClient<Chat>('ws://127.0.0.1:1/')
    const room = client.channel('chat:lobby')
    room.on('publication', (pub) => {
      const text: string = pub.data.text
      void text
    })
    const scores = client.channel('scores:live')
    scores.on('publication', (pub) => {
      const score: number = pub.data
      void score
    })
    // Built, not called: it would subscribe.
    // @ts-expect-error: no channel pattern matches this name
    const wrongChannel = () => client.channel('unknown')
    void wrongChannel
    const sum: Promise<number> = client.rpc('add', { a: 1, b: 2 }, { timeout: 1 })
    sum.catch(() => {})
    // @ts-expect-error: wrong parameter type
    client.rpc('add', { a: '1', b: 2 }, { timeout: 1 }).catch(() => {})
    // @ts-expect-error: wrong publication data
    room.publish({ text: 5 }, { timeout: 1 }).catch(() => {})
    client.close()
  })

  test("a server object's phantom '~schema' types the client the same way", () => {
    const realtime = {} as { readonly '~schema'?: Chat }
    const client = newRallyClient<typeof realtime>('ws://127.0.0.1:1/')
    const room = client.channel('chat:x')
    room.on('publication', (pub) => {
      const text: string = pub.data.text
      void text
    })
    client.close()
  })
})
