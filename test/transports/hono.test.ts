/**
 * The HTTP transports on a Hono app served by @hono/node-server, beside mountRealtime's WebSocket
 * route at the same path, both from the public entry point rallyjs/hono: a RallyClient forced
 * onto each transport connects and receives, a plain event stream (P/events) reads the channel,
 * and a request the transports do not serve is a 404, not a hung request.
 */
import assert from 'node:assert/strict'
import type { AddressInfo } from 'node:net'
import { test } from 'node:test'
import { serve } from '@hono/node-server'
import { Hono } from 'hono'
import { createNodeWebSocket, mountRealtime, mountTransports } from '../../src/adapters/hono/index.js'
import { WebSocket } from '../../src/index.js'
import { RallyClient, webSocketTransport } from '../../src/realtime/client/index.js'
import { createRealtime, HttpTransports } from '../../src/realtime/index.js'
import { within } from './helpers.js'

test('WebSocket, SSE and long polling at one path of a Hono app', async () => {
  const realtime = createRealtime({
    channels: { 'chat:*': { publish: true, history: { size: 10, ttl: 60_000 } } },
    onError: () => {},
  })
  const app = new Hono()
  const nodeWebSocket = createNodeWebSocket({ app })
  const transports = new HttpTransports(realtime, { path: '/realtime' })
  mountTransports(app, transports)
  mountRealtime(app, realtime, nodeWebSocket, '/realtime')
  app.get('/', (c) => c.text('home'))
  const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' })
  nodeWebSocket.injectWebSocket(server)
  await new Promise<void>((resolve) => server.once('listening', () => resolve()))
  const { port } = server.address() as AddressInfo
  try {
    for (const transport of [webSocketTransport(WebSocket), 'sse', 'long-polling'] as const) {
      const client = new RallyClient(`http://127.0.0.1:${port}/realtime`, { transports: [transport] })
      const room = client.channel('chat:hono')
      const got = new Promise<unknown>((resolve) => room.on('publication', (pub) => resolve(pub.data)))
      const subscribed = new Promise<void>((resolve) => room.on('subscribed', () => resolve()))
      client.connect()
      await within(subscribed, 5000, 'subscribed')
      await room.publish({ over: client.transport })
      assert.deepEqual(await within(got, 5000, 'the publication'), { over: client.transport })
      client.close()
    }
    assert.equal(await (await fetch(`http://127.0.0.1:${port}/`)).text(), 'home')

    // The read-only stream: live once it says `subscribed`, then each publication an event with
    // an <epoch>:<offset> id.
    const events = await fetch(`http://127.0.0.1:${port}/realtime/events?channel=chat:hono`)
    assert.equal(events.status, 200)
    assert.match(events.headers.get('content-type') ?? '', /^text\/event-stream/)
    const reader = events.body!.pipeThrough(new TextDecoderStream()).getReader()
    let text = ''
    const readUntil = async (marker: string) => {
      while (!text.includes(marker)) {
        const { value, done } = await within(reader.read(), 5000, `${marker} after ${JSON.stringify(text)}`)
        assert.equal(done, false, `the stream ended early: ${text}`)
        text += value
      }
    }
    await readUntil('event: subscribed')
    await realtime.publish('chat:hono', { over: 'events' })
    await readUntil('"events"')
    assert.match(text, /id: [^\n]+:4\ndata: \{"over":"events"\}/)
    await reader.cancel()

    const wrongMethod = await fetch(`http://127.0.0.1:${port}/realtime/events?channel=chat:hono`, {
      method: 'POST',
    })
    assert.equal(wrongMethod.status, 404)
  } finally {
    await realtime.close()
    transports.close()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  }
})
