/**
 * rallyjs/ws's client-side WebSocket against a rallyjs/ws server: 'open', 'message', 'upgrade',
 * 'unexpected-response', 'error' + 'close' 1006 when the connection is refused, ping → 'pong',
 * and createWebSocketStream in both directions. Also the server's malformed-handshake hook
 * ('wsClientError'), 'error' on a port in use, and maxPayload.
 */
import assert from 'node:assert/strict'
import { Buffer } from 'node:buffer'
import type { IncomingMessage } from 'node:http'
import { type AddressInfo, connect, type Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { after, describe, it } from 'node:test'
import {
  createWebSocketStream,
  WebSocketServer,
  type WebSocketServerOptions,
  WebSocket as WsWebSocket,
} from '../../src/adapters/ws/index.js'
import { closedPort, nextEvent, until, within } from './helpers.js'

const servers: WebSocketServer[] = []
const clients: { terminate(): void }[] = []

after(async () => {
  for (const client of clients) client.terminate()
  for (const wss of servers) {
    await within(wss.closeAll(), 5000, 'closeAll')
    await within(new Promise<void>((resolve) => wss.close(() => resolve())), 3000, 'wss.close')
  }
})

async function listen(
  options: Omit<WebSocketServerOptions, 'port' | 'server' | 'noServer'> = {},
): Promise<{ wss: WebSocketServer; port: number; url: string }> {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', ...options })
  servers.push(wss)
  await nextEvent(wss, 'listening')
  const port = (wss.address() as AddressInfo).port
  return { wss, port, url: `ws://127.0.0.1:${port}` }
}

function client(url: string, ...rest: unknown[]): WsWebSocket {
  const ws = new (WsWebSocket as unknown as new (url: string, ...rest: unknown[]) => WsWebSocket)(
    url,
    ...rest,
  )
  clients.push(ws)
  return ws
}

/** Sends a raw request head and reads the whole answer until the server closes. */
function rawExchange(port: number, head: string, ms = 3000): Promise<string> {
  return within(
    new Promise<string>((resolve, reject) => {
      const socket: Socket = connect(port, '127.0.0.1', () => socket.write(head))
      clients.push({ terminate: () => socket.destroy() })
      let answer = ''
      socket.setEncoding('latin1')
      socket.on('data', (chunk: string) => {
        answer += chunk
      })
      socket.on('end', () => resolve(answer))
      socket.on('close', () => resolve(answer))
      socket.on('error', reject)
    }),
    ms,
    'the raw answer',
  )
}

describe('rallyjs/ws client WebSocket', () => {
  it("'upgrade' (101) then 'open', then 'message'", async () => {
    const { wss, url } = await listen()
    wss.on('connection', (ws: WsWebSocket) => ws.send('welcome'))
    const ws = client(`${url}/hello`)
    assert.equal(ws.url, `${url}/hello`)
    assert.throws(() => ws.send('too early'), /CONNECTING/)
    const order: string[] = []
    const upgrade = new Promise<{ statusCode: number; headers: Record<string, string> }>((resolve) =>
      ws.once('upgrade', (res: { statusCode: number; headers: Record<string, string> }) => {
        order.push('upgrade')
        resolve(res)
      }),
    )
    ws.once('open', () => order.push('open'))
    const message = nextEvent<[Buffer, boolean]>(ws, 'message')
    const res = await within(upgrade, 3000, "'upgrade'")
    assert.equal(res.statusCode, 101)
    assert.equal(typeof res.headers['sec-websocket-accept'], 'string')
    const [data, isBinary] = await message
    assert.deepEqual(order, ['upgrade', 'open'])
    assert.ok(Buffer.isBuffer(data))
    assert.equal(data.toString(), 'welcome')
    assert.equal(isBinary, false)
    const closed = nextEvent<[number]>(ws, 'close')
    ws.close(1000)
    assert.equal((await closed)[0], 1000)
  })

  it("'unexpected-response' when the server answers 401; 'error' when nobody listens for it", async () => {
    const { url } = await listen({ verifyClient: () => false })
    const ws = client(url)
    const unexpected = nextEvent<[unknown, { statusCode: number; headers: object }]>(
      ws,
      'unexpected-response',
    )
    const close = nextEvent<[number]>(ws, 'close')
    const [request, response] = await unexpected
    assert.ok(request !== undefined)
    assert.equal(response.statusCode, 401)
    const [code] = await close
    assert.equal(code, 1006)
    assert.equal(ws.readyState, WsWebSocket.CLOSED)

    const plain = client(url)
    const failed = nextEvent<[Error]>(plain, 'error')
    const plainClose = nextEvent<[number]>(plain, 'close')
    const [error] = await failed
    assert.ok(error instanceof Error)
    assert.match(error.message, /401/)
    assert.equal((await plainClose)[0], 1006)
  })

  it("connection refused: 'error' (ECONNREFUSED) then 'close' 1006", async () => {
    const port = await closedPort()
    const ws = client(`ws://127.0.0.1:${port}/`)
    const events: string[] = []
    const error = new Promise<Error>((resolve) =>
      ws.once('error', (e: Error) => {
        events.push('error')
        resolve(e)
      }),
    )
    const close = new Promise<number>((resolve) =>
      ws.once('close', (code: number) => {
        events.push('close')
        resolve(code)
      }),
    )
    assert.equal(((await within(error, 3000, "'error'")) as NodeJS.ErrnoException).code, 'ECONNREFUSED')
    assert.equal(await within(close, 3000, "'close'"), 1006)
    assert.deepEqual(events, ['error', 'close'])
    assert.equal(ws.readyState, WsWebSocket.CLOSED)
  })

  it("ping → 'pong' with the payload; the server's 'ping' fires", async () => {
    const { wss, url } = await listen()
    const connection = nextEvent<[WsWebSocket]>(wss, 'connection')
    const ws = client(url)
    await nextEvent(ws, 'open')
    const [server] = await connection
    const serverPing = nextEvent<[Buffer]>(server, 'ping')
    const pong = nextEvent<[Buffer]>(ws, 'pong')
    const sent = new Promise<Error | undefined>((resolve) => ws.ping('are you there', true, resolve))
    assert.equal(await within(sent, 3000, 'the ping callback'), undefined)
    assert.equal((await pong)[0].toString(), 'are you there')
    assert.equal((await serverPing)[0].toString(), 'are you there')
    ws.close()
    assert.equal((await nextEvent<[number]>(server, 'close'))[0], 1005)
  })

  it('createWebSocketStream: data piped through both ends, end() closes the connection', async () => {
    const { wss, url } = await listen()
    const serverClosed: number[] = []
    wss.on('connection', (ws: WsWebSocket) => {
      // The server echoes through its own stream: every chunk written back as a message.
      const duplex = createWebSocketStream(ws)
      duplex.on('error', () => {})
      duplex.pipe(duplex)
      ws.on('close', (code: number) => serverClosed.push(code))
    })
    const ws = client(url)
    // Writes before 'open' wait for it.
    const stream: Duplex = createWebSocketStream(ws)
    const chunks: Buffer[] = []
    stream.on('data', (chunk: Buffer) => chunks.push(chunk))
    const ended = nextEvent(stream, 'end', 5000)
    const parts = Array.from({ length: 50 }, (_, i) => `part ${i};`)
    for (const part of parts) stream.write(part)
    await until(() => Buffer.concat(chunks).toString() === parts.join(''), 5000, 'the echo of 50 writes')
    stream.end()
    await ended
    await until(() => serverClosed.length === 1, 3000, 'the server to see the close')
    assert.equal(serverClosed[0], 1005)
    await until(() => ws.readyState === WsWebSocket.CLOSED, 3000, 'the client to close')
  })

  it('maxPayload: a bigger message closes the connection with 1009', async () => {
    const { url } = await listen({ maxPayload: 64 })
    const ws = client(url)
    await nextEvent(ws, 'open')
    const closed = nextEvent<[number]>(ws, 'close')
    ws.send(Buffer.alloc(65))
    assert.equal((await closed)[0], 1009)
  })
})

describe('rallyjs/ws server errors', () => {
  it("'error' when the port is taken", async () => {
    const { port } = await listen()
    const second = new WebSocketServer({ port, host: '127.0.0.1' })
    const [error] = await nextEvent<[NodeJS.ErrnoException]>(second, 'error')
    assert.equal(error.code, 'EADDRINUSE')
    second.close()
  })

  it('a malformed handshake gets a 4xx without a listener', async () => {
    const { port } = await listen()
    const answer = await rawExchange(
      port,
      'GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n',
    )
    assert.match(answer, /^HTTP\/1\.1 4\d\d /)
  })

  it("'wsClientError' (error, socket, request) for a malformed handshake, as in ws", async () => {
    const { wss, port } = await listen()
    const seen: { error: unknown; url: string | undefined }[] = []
    wss.on('wsClientError', (error: Error, socket: Duplex, request: IncomingMessage) => {
      seen.push({ error, url: request.url })
      // ws leaves the answer to the listener.
      socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 6\r\n\r\ncustom')
    })
    const answer = await rawExchange(
      port,
      'GET /bad HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        'Sec-WebSocket-Key: not-a-valid-key\r\nSec-WebSocket-Version: 13\r\n\r\n',
    )
    assert.equal(seen.length, 1, "'wsClientError' was emitted")
    assert.ok(seen[0]!.error instanceof Error)
    assert.equal(seen[0]!.url, '/bad')
    assert.match(answer, /custom$/)
  })
})
