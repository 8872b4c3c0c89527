/**
 * The parts of ws's API that rallyjs/ws gained for TypeScript and CommonJS users (issue 11):
 * WHATWG-style `on*` attributes and addEventListener with ws's event objects, the statics that
 * make `WebSocket.Server` work, the `WebSocket` server option (a subclass for server sockets),
 * ws's send conversions, request-style headers, and clear errors for options Rally lacks.
 */
import assert from 'node:assert/strict'
import { Buffer } from 'node:buffer'
import { createServer as createHttpServer, IncomingMessage } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, describe, it } from 'node:test'
import WebSocketDefault, {
  createWebSocketStream,
  type ServerOptions,
  WebSocketServer,
  WebSocket as WsWebSocket,
} from '../../src/adapters/ws/index.js'
import { nextEvent, within } from './helpers.js'

const servers: WebSocketServer[] = []
const clients: WsWebSocket[] = []

after(async () => {
  for (const client of clients) client.terminate()
  for (const wss of servers) {
    await within(wss.closeAll(), 5000, 'closeAll')
    await within(new Promise<void>((resolve) => wss.close(() => resolve())), 3000, 'wss.close')
  }
})

async function echoServer(options: Omit<ServerOptions, 'port' | 'server' | 'noServer'> = {}): Promise<{
  wss: WebSocketServer
  url: string
}> {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', ...options })
  servers.push(wss)
  wss.on('connection', (ws, request) => {
    ws.on('message', (data, isBinary) => {
      if (data.toString() === 'headers') ws.send(JSON.stringify(request.headers))
      else ws.send(data, { binary: isBinary })
    })
  })
  await nextEvent(wss, 'listening')
  return { wss, url: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}` }
}

function connect(url: string, options?: WsWebSocket.ClientOptions): WsWebSocket {
  const ws = new WsWebSocket(url, options)
  clients.push(ws)
  return ws
}

describe('rallyjs/ws: the WHATWG-style API of ws', () => {
  it('on* attributes get ws event objects: open, message (text as a string), close (code, reason, wasClean)', async () => {
    const { url } = await echoServer()
    const ws = connect(url)
    const seen: string[] = []
    const closed = new Promise<void>((resolve) => {
      ws.onclose = (event) => {
        seen.push(
          `close ${event.type} ${event.code} ${event.reason} ${event.wasClean} ${event.target === ws}`,
        )
        resolve()
      }
    })
    ws.onopen = (event) => {
      seen.push(`open ${event.type} ${event.target === ws}`)
      ws.send('text')
    }
    ws.onmessage = (event) => {
      seen.push(`message ${typeof event.data} ${event.data}`)
      ws.close(4000, 'done')
    }
    assert.equal(typeof ws.onopen, 'function')
    await within(closed, 5000, 'the close event')
    assert.deepEqual(seen, ['open open true', 'message string text', 'close close 4000 done true true'])
  })

  it('assigning an on* attribute replaces the previous handler; null removes it', async () => {
    const { url } = await echoServer()
    const ws = connect(url)
    const calls: string[] = []
    ws.onmessage = () => calls.push('first')
    ws.onmessage = () => calls.push('second')
    await nextEvent(ws, 'open')
    ws.send('one')
    await nextEvent(ws, 'message')
    ws.onmessage = null
    assert.equal(ws.onmessage, null)
    ws.send('two')
    await nextEvent(ws, 'message')
    assert.deepEqual(calls, ['second'])
  })

  it('addEventListener: binary data per binaryType, { once }, handleEvent objects, no duplicates, removeEventListener', async () => {
    const { url } = await echoServer()
    const ws = connect(url)
    ws.binaryType = 'arraybuffer'
    const calls: string[] = []
    const listener = (event: WsWebSocket.MessageEvent): void => {
      calls.push(`fn ${event.data instanceof ArrayBuffer ? 'arraybuffer' : typeof event.data}`)
    }
    ws.addEventListener('message', listener)
    ws.addEventListener('message', listener)
    ws.addEventListener('message', () => calls.push('once'), { once: true })
    ws.addEventListener('message', { handleEvent: (event) => calls.push(`object ${event.type}`) })
    await nextEvent(ws, 'open')
    ws.send(Buffer.from([1, 2, 3]))
    await nextEvent(ws, 'message')
    ws.removeEventListener('message', listener)
    ws.send('again')
    await nextEvent(ws, 'message')
    assert.deepEqual(calls, ['fn arraybuffer', 'once', 'object message', 'object message'])
  })

  it("'error' listeners get an ErrorEvent with the error and its message", async () => {
    const ws = connect('ws://127.0.0.1:1')
    const event = await within(
      new Promise<WsWebSocket.ErrorEvent>((resolve) => ws.addEventListener('error', resolve)),
      5000,
      'the error event',
    )
    assert.equal(event.type, 'error')
    assert.ok(event.error instanceof Error)
    assert.equal(event.message, (event.error as Error).message)
  })
})

describe('rallyjs/ws: the export carries the API, as ws', () => {
  it('the default export is the WebSocket class, with Server, WebSocketServer, WebSocket, createWebSocketStream', () => {
    assert.equal(WebSocketDefault, WsWebSocket)
    assert.equal(WsWebSocket.Server, WebSocketServer)
    assert.equal(WsWebSocket.WebSocketServer, WebSocketServer)
    assert.equal(WsWebSocket.WebSocket, WsWebSocket)
    assert.equal(WsWebSocket.createWebSocketStream, createWebSocketStream)
  })

  it('the `WebSocket` server option: server-side sockets are instances of the subclass', async () => {
    class Tagged extends WsWebSocket {
      tag = 'tagged'
    }
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', WebSocket: Tagged })
    servers.push(wss)
    await nextEvent(wss, 'listening')
    const connection = nextEvent<[Tagged]>(wss, 'connection')
    connect(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}`)
    const [socket] = await within(connection, 5000, 'the connection')
    assert.ok(socket instanceof Tagged)
    assert.equal(socket.tag, 'tagged')
    assert.ok(wss.clients.has(socket))
  })

  it("'upgrade' and 'unexpected-response' carry an http.IncomingMessage, as in ws", async () => {
    const { url } = await echoServer()
    const ws = connect(url)
    const [upgrade] = await within(nextEvent<[IncomingMessage]>(ws, 'upgrade'), 5000, 'upgrade')
    assert.ok(upgrade instanceof IncomingMessage)
    assert.equal(upgrade.statusCode, 101)
    assert.equal(upgrade.headers.upgrade, 'websocket')
    assert.equal(upgrade.httpVersion, '1.1')
    const refusing = createHttpServer()
    refusing.on('upgrade', (_request, socket) => {
      socket.end('HTTP/1.1 403 Forbidden\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 0\r\n\r\n')
    })
    await new Promise<void>((resolve) => refusing.listen(0, '127.0.0.1', resolve))
    try {
      const refused = connect(`ws://127.0.0.1:${(refusing.address() as AddressInfo).port}`)
      const [, response] = await within(
        nextEvent<[unknown, IncomingMessage]>(refused, 'unexpected-response'),
        5000,
        'unexpected-response',
      )
      assert.ok(response instanceof IncomingMessage)
      assert.equal(response.statusCode, 403)
      assert.equal(response.statusMessage, 'Forbidden')
      assert.deepEqual(response.headers['set-cookie'], ['a=1', 'b=2'])
    } finally {
      refusing.closeAllConnections()
      await new Promise((resolve) => refusing.close(resolve))
    }
  })

  it('new WebSocket(null) outside a server throws a clear TypeError', () => {
    assert.throws(() => new WsWebSocket(null), /for WebSocketServer/)
  })
})

describe('rallyjs/ws: client options and sends as ws takes them', () => {
  it('node:http-style headers (numbers, lists) are sent; origin sets Origin', async () => {
    const { url } = await echoServer()
    const ws = new WsWebSocket(url, {
      headers: { 'x-number': 42, 'x-list': ['a', 'b'] } as unknown as Record<string, string>,
      origin: 'https://example.com',
    })
    clients.push(ws)
    await nextEvent(ws, 'open')
    ws.send('headers')
    const [data] = await nextEvent<[Buffer]>(ws, 'message')
    const headers = JSON.parse(data.toString()) as Record<string, string>
    assert.equal(headers['x-number'], '42')
    assert.equal(headers['x-list'], 'a, b')
    assert.equal(headers.origin, 'https://example.com')
  })

  it('options Rally lacks throw a TypeError that names them', () => {
    assert.throws(() => new WsWebSocket('ws://127.0.0.1:1', { followRedirects: true }), /redirects/)
    assert.throws(
      () => new WsWebSocket('ws://127.0.0.1:1', { createConnection: () => null }),
      /"createConnection"/,
    )
    assert.throws(() => new WsWebSocket('ws://127.0.0.1:1', { agent: {} }), /"agent"/)
  })

  it('send: numbers as text, a list of buffers as one binary message', async () => {
    const { url } = await echoServer()
    const ws = connect(url)
    await nextEvent(ws, 'open')
    ws.send(42)
    const [number, numberIsBinary] = await nextEvent<[Buffer, boolean]>(ws, 'message')
    assert.equal(number.toString(), '42')
    assert.equal(numberIsBinary, false)
    ws.send([Buffer.from('ab'), Buffer.from('cd')])
    const [joined, joinedIsBinary] = await nextEvent<[Buffer, boolean]>(ws, 'message')
    assert.equal(joined.toString(), 'abcd')
    assert.equal(joinedIsBinary, true)
  })

  it("ws-style perMessageDeflate options (zlibDeflateOptions, windowBits 0 as 'unset') negotiate", async () => {
    const { url } = await echoServer({
      perMessageDeflate: {
        zlibDeflateOptions: { level: 6, memLevel: 8 },
        serverMaxWindowBits: 0,
        threshold: 0,
      },
    })
    const ws = connect(url, { perMessageDeflate: { clientMaxWindowBits: 0 } })
    await nextEvent(ws, 'open')
    assert.match(ws.extensions, /permessage-deflate/)
    ws.send('x'.repeat(2000))
    const [echoed] = await nextEvent<[Buffer]>(ws, 'message')
    assert.equal(echoed.toString(), 'x'.repeat(2000))
  })
})
