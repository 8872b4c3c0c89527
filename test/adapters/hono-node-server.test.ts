/**
 * rallyjs/ws under @hono/node-server v2, a library nobody here wrote: `serve({ fetch, websocket:
 * { server } })` with a rallyjs/ws WebSocketServer in noServer mode and @hono/node-server's own
 * `upgradeWebSocket`. Echo of text and binary, onOpen/onClose, close codes both ways, headers
 * set by middleware on the 101, and a refusal by middleware.
 */
import assert from 'node:assert/strict'
import type { IncomingMessage, Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { serve, upgradeWebSocket } from '@hono/node-server'
import { Hono } from 'hono'
import { WebSocketServer, WebSocket as WsWebSocket } from '../../src/adapters/ws/index.js'
import { type CloseEvent, WebSocket } from '../../src/index.js'
import { nextDomEvent, nextEvent, until, upgradeRequest, within } from './helpers.js'

describe('@hono/node-server v2 with a rallyjs/ws WebSocketServer', () => {
  let server: Server
  let wss: WebSocketServer
  let port: number
  const opened: string[] = []
  const closed: { code: number; reason: string }[] = []
  /** Every client made, terminated in after() whatever happened. */
  const clients: { terminate(): void }[] = []
  function track<T extends { terminate(): void }>(client: T): T {
    clients.push(client)
    return client
  }

  before(async () => {
    wss = new WebSocketServer({ noServer: true })
    const app = new Hono()
    app.use('/secure', async (c, next) => {
      if (c.req.header('authorization') !== 'Bearer ok') return c.text('no entry', 401)
      await next()
      // upgradeWebSocket returns a fresh Response, so Hono keeps headers set after next() only.
      c.header('Set-Cookie', 'session=s1; HttpOnly')
    })
    const route = upgradeWebSocket((c) => ({
      onOpen(_event, ws) {
        opened.push(c.req.path)
        assert.equal(ws.readyState, 1)
      },
      onMessage(event, ws) {
        if (event.data === 'close-me') ws.close(4002, 'server says bye')
        else ws.send(event.data as string | ArrayBuffer)
      },
      onClose(event) {
        closed.push({ code: event.code, reason: event.reason })
      },
    }))
    app.get('/ws', route)
    app.get('/secure', route)
    server = await within(
      new Promise<Server>((resolve) => {
        const s = serve(
          {
            fetch: app.fetch,
            port: 0,
            hostname: '127.0.0.1',
            websocket: { server: wss },
          },
          () => resolve(s as Server),
        ) as Server
      }),
      3000,
      'serve() to listen',
    )
    port = (server.address() as AddressInfo).port
  })

  after(async () => {
    for (const client of clients) client.terminate()
    server.closeAllConnections()
    await within(new Promise<void>((resolve) => server.close(() => resolve())), 3000, 'server close')
    await within(wss.closeAll(), 3000, 'rallyjs/ws closeAll')
  })

  it('echoes text and binary, calls onOpen, and reports the client close code to onClose', async () => {
    const client = track(new WebSocket(`ws://127.0.0.1:${port}/ws`))
    client.binaryType = 'arraybuffer'
    await nextDomEvent(client, 'open')
    assert.deepEqual(opened.slice(-1), ['/ws'])

    const text = nextDomEvent<MessageEvent>(client, 'message')
    client.send('hello hono')
    assert.equal((await text).data, 'hello hono')

    const bytes = new Uint8Array([0, 1, 2, 250, 255])
    const binary = nextDomEvent<MessageEvent>(client, 'message')
    client.send(bytes)
    const echoed = (await binary).data
    assert.ok(echoed instanceof ArrayBuffer, 'binary comes back as binary')
    assert.deepEqual(new Uint8Array(echoed), bytes)

    const before = closed.length
    const close = nextDomEvent<CloseEvent>(client, 'close')
    client.close(4001, 'client bye')
    const event = await close
    assert.equal(event.code, 4001)
    await until(() => closed.length > before, 3000, 'onClose')
    assert.deepEqual(closed.at(-1), { code: 4001, reason: 'client bye' })
  })

  it("passes the server's close code and reason to the client", async () => {
    const client = track(new WebSocket(`ws://127.0.0.1:${port}/ws`))
    await nextDomEvent(client, 'open')
    const close = nextDomEvent<CloseEvent>(client, 'close')
    client.send('close-me')
    const event = await close
    assert.equal(event.code, 4002)
    assert.equal(event.reason, 'server says bye')
    assert.equal(event.wasClean, true)
    // onClose reports the peer's close frame: Rally's client echoes the code (RFC 6455 5.5.1),
    // not the reason.
    await until(() => closed.at(-1)?.code === 4002, 3000, 'onClose with the echoed code')
  })

  it('puts headers set by middleware on the 101 (through the "headers" event)', async () => {
    const client = track(
      new WsWebSocket(`ws://127.0.0.1:${port}/secure`, { headers: { Authorization: 'Bearer ok' } }),
    )
    // 'upgrade' and 'open' come in the same turn, as in ws: listen for both at once.
    const upgrade = nextEvent<[IncomingMessage]>(client, 'upgrade')
    const open = nextEvent(client, 'open')
    const [response] = await upgrade
    assert.equal(response.statusCode, 101)
    // An http.IncomingMessage, as ws gives: Set-Cookie is a list there.
    assert.deepEqual(response.headers['set-cookie'], ['session=s1; HttpOnly'])
    await open
    const echo = nextEvent<[Buffer, boolean]>(client, 'message')
    client.send('after auth')
    const [data, isBinary] = await echo
    assert.equal(data.toString(), 'after auth')
    assert.equal(isBinary, false)
    const close = nextEvent<[number, Buffer]>(client, 'close')
    client.close(1000)
    assert.equal((await close)[0], 1000)
  })

  it('lets middleware refuse the upgrade with its status', async () => {
    const answer = await upgradeRequest(port, '/secure')
    assert.equal(answer.kind, 'response')
    assert.equal(answer.status, 401)
  })
})
