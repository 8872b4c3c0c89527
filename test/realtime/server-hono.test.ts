/**
 * Mounting: the realtime layer as a Hono route (rallyjs/hono's mountRealtime, middleware first)
 * and on a plain node:http server (`attach`), speaking the same protocol as `listen`.
 */
import assert from 'node:assert/strict'
import { createServer as createHttpServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, describe, test } from 'node:test'
import { serve } from '@hono/node-server'
import { Hono } from 'hono'
import { createNodeWebSocket, mountRealtime } from '../../src/adapters/hono/index.js'
import { WebSocket } from '../../src/index.js'
import { createRealtime } from '../../src/realtime/index.js'
import { upgradeRequest } from '../adapters/helpers.js'
import { RawClient, within } from './server-helpers.js'

const clients: RawClient[] = []
function client(url: string): RawClient {
  const c = new RawClient(url)
  clients.push(c)
  return c
}
after(() => {
  for (const c of clients) c.close()
})

describe('realtime server: mounting', () => {
  test('as a Hono route: middleware runs first, then rally.v1 with topic fan-out', async () => {
    const app = new Hono()
    const nodeWebSocket = createNodeWebSocket({ app })
    const realtime = createRealtime({
      authenticate: (request) => {
        const header = (request as Request).headers.get('x-user')
        return header === null ? { refuse: 'who are you?' } : { user: header }
      },
      channels: { 'chat:*': { publish: true } },
      onError: () => {},
    })
    let middlewareSaw = 0
    app.use('/rt', async (c, next) => {
      middlewareSaw++
      if (c.req.header('x-block') === '1') return c.text('blocked', 403)
      await next()
    })
    mountRealtime(app, realtime, nodeWebSocket, '/rt')
    const server = await within(
      new Promise<Server>((resolve) => {
        const s = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, () =>
          resolve(s as Server),
        ) as Server
      }),
      3000,
      'serve',
    )
    nodeWebSocket.injectWebSocket(server)
    try {
      const port = (server.address() as AddressInfo).port
      const blocked = await upgradeRequest(port, '/rt', {
        'Sec-WebSocket-Protocol': 'rally.v1',
        'x-block': '1',
      })
      assert.equal(blocked.status, 403)
      const noProtocol = await upgradeRequest(port, '/rt')
      assert.equal(noProtocol.status, 400)

      // Without the header the authenticate hook wants: refused at connect.
      const anonymous = client(`ws://127.0.0.1:${port}/rt`)
      const refused = await anonymous.connect()
      assert.equal(refused.error?.code, 101)
      assert.equal((await anonymous.whenClosed()).code, 4501)

      const ws = new WebSocket(`ws://127.0.0.1:${port}/rt`, ['rally.v1'], { headers: { 'x-user': 'ann' } })
      const messages: Record<string, unknown>[] = []
      ws.addEventListener('message', (event) =>
        messages.push(JSON.parse(String((event as MessageEvent).data))),
      )
      await within(
        new Promise((resolve) => ws.addEventListener('open', resolve, { once: true })),
        3000,
        'open',
      )
      ws.send(JSON.stringify({ id: 1, cmd: 'connect', version: 1 }))
      ws.send(JSON.stringify({ id: 2, cmd: 'subscribe', channel: 'chat:hono' }))
      const waitFor = async (match: (m: Record<string, unknown>) => boolean, label: string) => {
        const deadline = Date.now() + 3000
        while (!messages.some(match)) {
          if (Date.now() > deadline) throw new Error(`timed out waiting for ${label}`)
          await new Promise((resolve) => setTimeout(resolve, 5))
        }
        return messages.find(match)!
      }
      const connected = await waitFor((m) => m.id === 1, 'connect reply')
      assert.equal((connected.result as { version: number }).version, 1)
      await waitFor((m) => m.id === 2, 'subscribe reply')
      await realtime.publish('chat:hono', { text: 'through the topic' })
      const pub = await waitFor((m) => m.push === 'pub', 'the publication')
      assert.deepEqual(pub.data, { text: 'through the topic' })
      assert.ok(middlewareSaw >= 3)
      assert.equal(nodeWebSocket.rally.subscriberCount('rally.rt:chat:hono'), 1)
      ws.close()
    } finally {
      await realtime.close()
      await new Promise((resolve) => server.close(resolve))
    }
  })

  test('attached to a node:http server at a path', async () => {
    const http = createHttpServer((_request, response) => response.end('plain http'))
    const realtime = createRealtime({ channels: { 'feed:*': {} }, onError: () => {} })
    realtime.attach(http, { path: '/live' })
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve))
    try {
      const port = (http.address() as AddressInfo).port
      const c = client(`ws://127.0.0.1:${port}/live`)
      await c.connect()
      await c.request('subscribe', { channel: 'feed:1' })
      const position = await realtime.publish('feed:1', 'hello')
      const pub = await c.next((e) => e.push === 'pub')
      assert.deepEqual([pub.offset, pub.epoch, pub.data], [position.offset, position.epoch, 'hello'])
    } finally {
      await realtime.close()
      http.closeAllConnections()
      await new Promise((resolve) => http.close(resolve))
    }
  })

  test('handleUpgrade from any node:http server; Rally server options pass through (allowedOrigins)', async () => {
    const realtime = createRealtime({ channels: { 'feed:*': {} }, onError: () => {} })
    const http = createHttpServer()
    http.on('upgrade', (request, socket, head) => realtime.handleUpgrade(request, socket, head))
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve))
    const guarded = await realtime.listen({
      port: 0,
      host: '127.0.0.1',
      allowedOrigins: ['https://app.example'],
    })
    try {
      const port = (http.address() as AddressInfo).port
      const c = client(`ws://127.0.0.1:${port}/any`)
      assert.equal((await c.connect()).result?.version, 1)
      const refused = await upgradeRequest(guarded.port!, '/', {
        'Sec-WebSocket-Protocol': 'rally.v1',
        Origin: 'https://evil.example',
      })
      assert.equal(refused.status, 403)
      const allowed = await upgradeRequest(guarded.port!, '/', {
        'Sec-WebSocket-Protocol': 'rally.v1',
        Origin: 'https://app.example',
      })
      assert.equal(allowed.status, 101)
      if (allowed.kind === 'upgrade') allowed.socket.destroy()
    } finally {
      await realtime.close()
      http.closeAllConnections()
      await new Promise((resolve) => http.close(resolve))
    }
  })
})
