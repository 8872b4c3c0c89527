/**
 * The HTTP transports on a Hono app served by @hono/node-server, beside mountRealtime's WebSocket
 * route at the same path: a RallyClient forced onto each transport connects and receives.
 */
import assert from 'node:assert/strict'
import type { AddressInfo } from 'node:net'
import { test } from 'node:test'
import { serve } from '@hono/node-server'
import { Hono } from 'hono'
import { createNodeWebSocket } from '../../src/adapters/hono/index.js'
import { WebSocket } from '../../src/index.js'
import { RallyClient, webSocketTransport } from '../../src/realtime/client/index.js'
import { mountRealtime } from '../../src/realtime/hono.js'
import { createRealtime, HttpTransports } from '../../src/realtime/index.js'
import { mountTransports } from '../../src/realtime/transports/hono.js'
import { within } from './helpers.js'

test('WebSocket, SSE and long polling at one path of a Hono app', async () => {
  const realtime = createRealtime({ channels: { 'chat:*': { publish: true } }, onError: () => {} })
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
  } finally {
    await realtime.close()
    transports.close()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  }
})
