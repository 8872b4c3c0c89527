/**
 * Types flow from a server's definitions to the client: `RallyClient<typeof realtime>` reads the
 * realtime object's phantom `'~schema'` — channel data from each rule's Standard Schema (zod
 * here), RPC parameters and results from each handler. The type checker is the judge: the lines
 * marked @ts-expect-error must be errors (tsc fails on an unused one), the others must compile.
 * At run time the client round-trips through the real server with the same types.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { z } from 'zod'
import { WebSocket } from '../../src/index.js'
import { RallyClient } from '../../src/realtime/client/index.js'
import { createRealtime } from '../../src/realtime/index.js'
import { nextEvent } from './client-helpers.js'

test('RallyClient<typeof realtime> types channel data and RPCs from the server definitions', async () => {
  const realtime = createRealtime({
    channels: {
      'chat:*': { publish: true, schema: z.object({ text: z.string() }) },
    },
    rpc: {
      add: {
        schema: z.object({ a: z.number(), b: z.number() }),
        handler: async (_session, { a, b }) => a + b,
      },
      hello: async (_session, name: string) => `hello ${name}`,
    },
    onError: () => {},
  })
  const server = await realtime.listen({ port: 0, host: '127.0.0.1' })
  const client = new RallyClient<typeof realtime>(`ws://127.0.0.1:${server.port}/`, { WebSocket })
  try {
    const room = client.channel('chat:lobby')
    const texts: string[] = []
    room.on('publication', (pub) => texts.push(pub.data.text))
    client.connect()
    await nextEvent(room, 'subscribed')
    await room.publish({ text: 'typed' })
    const sum: number = await client.rpc('add', { a: 2, b: 3 })
    assert.equal(sum, 5)
    const greeting: string = await client.rpc('hello', 'ann')
    assert.equal(greeting, 'hello ann')
    await realtime.publish('chat:lobby', { text: 'from the server' })
    await new Promise<void>((resolve) => room.on('publication', () => texts.length === 2 && resolve()))
    assert.deepEqual(texts, ['typed', 'from the server'])
    // Only compiled, never called: each would be a type error in an application.
    const mistakes = [
      // @ts-expect-error: no channel rule matches 'news:1'
      () => client.channel('news:1'),
      // @ts-expect-error: text must be a string
      () => room.publish({ text: 1 }),
      // @ts-expect-error: add takes { a, b }
      () => client.rpc('add', { a: 1 }),
      // @ts-expect-error: no such method
      () => client.rpc('subtract', { a: 1, b: 2 }),
    ]
    assert.equal(mistakes.length, 4)
  } finally {
    client.close()
    await realtime.close()
  }
})
