/**
 * rallyjs/ws's WebSocketServer and its server-side sockets, against the public API of the `ws`
 * package (version 8): server modes (port, server, noServer), path, verifyClient,
 * handleProtocols, clientTracking, the 'headers' event; socket events, binaryType, send with a
 * callback and with `fin: false`, ping/pong, close, terminate, readyState, bufferedAmount,
 * protocol, and Rally's topics on server-side sockets.
 */
import assert from 'node:assert/strict'
import { Buffer } from 'node:buffer'
import { createServer, type IncomingMessage, type Server } from 'node:http'
import { type AddressInfo, connect, type Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { after, describe, it } from 'node:test'
import {
  type VerifyClientInfo,
  WebSocketServer,
  type WebSocketServerOptions,
  WebSocket as WsWebSocket,
} from '../../src/adapters/ws/index.js'
import { ServerWebSocket, WebSocket } from '../../src/index.js'
import { httpGet, nextDomEvent, nextEvent, until, upgradeRequest, within } from './helpers.js'

/** Servers and clients made by a test, shut in after() whatever happened. */
const servers: WebSocketServer[] = []
const httpServers: Server[] = []
const clients: { terminate(): void }[] = []

after(async () => {
  for (const client of clients) client.terminate()
  for (const wss of servers) {
    await within(wss.closeAll(), 5000, 'closeAll')
    await within(new Promise<void>((resolve) => wss.close(() => resolve())), 3000, 'wss.close')
  }
  for (const http of httpServers) {
    http.closeAllConnections()
    await within(new Promise<void>((resolve) => http.close(() => resolve())), 3000, 'http close')
  }
})

/** A WebSocketServer for `path` on a node:http server (answering plain requests), listening. */
async function onHttpServer(path: string): Promise<{ http: Server; wss: WebSocketServer; port: number }> {
  const http = createServer((_req, res) => res.end('plain http'))
  httpServers.push(http)
  const wss = new WebSocketServer({ server: http, path })
  servers.push(wss)
  const listening = nextEvent(wss, 'listening')
  http.listen(0, '127.0.0.1')
  await listening
  return { http, wss, port: (http.address() as AddressInfo).port }
}

/** A WebSocketServer listening on a port of its own. */
async function listen(
  options: Omit<WebSocketServerOptions, 'port' | 'server' | 'noServer'> = {},
): Promise<{ wss: WebSocketServer; port: number; url: string }> {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', ...options })
  servers.push(wss)
  await nextEvent(wss, 'listening')
  const port = (wss.address() as AddressInfo).port
  return { wss, port, url: `ws://127.0.0.1:${port}` }
}

/** A rallyjs/ws client connected to `wss`, with the server's side of the connection. */
async function pair(
  wss: WebSocketServer,
  url: string,
  protocols?: string | string[],
): Promise<{ client: WsWebSocket; server: WsWebSocket; request: IncomingMessage }> {
  const connection = nextEvent<[WsWebSocket, IncomingMessage]>(wss, 'connection')
  const client = new WsWebSocket(url, protocols)
  clients.push(client)
  await nextEvent(client, 'open')
  const [server, request] = await connection
  return { client, server, request }
}

/** Closes a pair from the client side and waits for both ends. */
async function closePair(client: WsWebSocket, server: WsWebSocket): Promise<void> {
  const serverClosed = nextEvent(server, 'close')
  const clientClosed = nextEvent(client, 'close')
  client.close(1000)
  await Promise.all([serverClosed, clientClosed])
}

/** A masked client frame (RFC 6455 5.3), built by hand for raw-socket tests. */
function maskedFrame(opcode: number, payload: Buffer): Buffer {
  assert.ok(payload.length < 126)
  const mask = Buffer.from([0x11, 0x22, 0x33, 0x44])
  const masked = Buffer.from(payload.map((byte, i) => byte ^ mask[i % 4]!))
  return Buffer.concat([Buffer.from([0x80 | opcode, 0x80 | payload.length]), mask, masked])
}

describe('rallyjs/ws WebSocketServer', () => {
  it('with `port`: emits listening, reports address(), emits connection (ws, req), close(cb)', async () => {
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' })
    let closeEvents = 0
    wss.on('close', () => closeEvents++)
    await nextEvent(wss, 'listening')
    const address = wss.address() as AddressInfo
    assert.equal(address.address, '127.0.0.1')
    assert.ok(address.port > 0)

    const { client, server, request } = await pair(wss, `ws://127.0.0.1:${address.port}/room?x=1`)
    assert.ok(server instanceof WsWebSocket)
    assert.equal(request.url, '/room?x=1')
    assert.equal(request.headers.upgrade?.toLowerCase(), 'websocket')
    await closePair(client, server)

    const error = await within(
      new Promise<Error | undefined>((resolve) => wss.close(resolve)),
      3000,
      'close(cb) to call back',
    )
    assert.equal(error, undefined)
    assert.equal(closeEvents, 1)
    // As in ws: closing a closed server calls back with an error.
    const again = await within(
      new Promise<Error | undefined>((resolve) => wss.close(resolve)),
      3000,
      'a second close(cb)',
    )
    assert.ok(again instanceof Error)
    // Nothing listens any more.
    const refused = new WsWebSocket(`ws://127.0.0.1:${address.port}/`)
    const [refusal] = await nextEvent<[Error]>(refused, 'error')
    assert.equal((refusal as NodeJS.ErrnoException).code, 'ECONNREFUSED')
  })

  it('with `server` and `path`: upgrades on the path, 400 elsewhere, plain requests untouched', async () => {
    const { wss, port } = await onHttpServer('/ws')
    assert.equal((wss.address() as AddressInfo).port, port)

    const { client, server } = await pair(wss, `ws://127.0.0.1:${port}/ws?query=ignored`)
    await closePair(client, server)

    const other = await upgradeRequest(port, '/elsewhere')
    assert.equal(other.kind, 'response')
    assert.equal(other.status, 400)
    assert.equal(wss.shouldHandle({ url: '/ws?a=b' } as IncomingMessage), true)
    assert.equal(wss.shouldHandle({ url: '/wsx' } as IncomingMessage), false)

    const plain = await httpGet(port, '/ws')
    assert.equal(plain.status, 200)
    assert.equal(plain.body, 'plain http')
  })

  it('with `noServer`: handleUpgrade(req, socket, head, cb) — and the head bytes are not lost', async () => {
    const wss = new WebSocketServer({ noServer: true })
    servers.push(wss)
    assert.throws(() => wss.address(), /noServer/)
    const http = createServer()
    httpServers.push(http)
    const heads: number[] = []
    http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      heads.push(head.length)
      wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req))
    })
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve))
    const port = (http.address() as AddressInfo).port

    // A standard client first.
    const { client, server } = await pair(wss, `ws://127.0.0.1:${port}/`)
    const got = nextEvent<[Buffer, boolean]>(server, 'message')
    client.send('via handleUpgrade')
    assert.equal((await got)[0].toString(), 'via handleUpgrade')
    await closePair(client, server)

    // Then a raw client that sends its first frame in the same packet as the request: the frame
    // arrives in `head` and must become the first message.
    const connection = nextEvent<[WsWebSocket]>(wss, 'connection')
    const raw: Socket = connect(port, '127.0.0.1')
    clients.push({ terminate: () => raw.destroy() })
    raw.on('error', () => {})
    await nextEvent(raw, 'connect')
    raw.write(
      Buffer.concat([
        Buffer.from(
          'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
            'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
        ),
        maskedFrame(0x1, Buffer.from('early bird')),
      ]),
    )
    const [ws] = await connection
    const [data, isBinary] = await nextEvent<[Buffer, boolean]>(ws, 'message')
    assert.equal(data.toString(), 'early bird')
    assert.equal(isBinary, false)
    assert.ok(heads.at(-1)! > 0, 'the frame came in `head`')
    raw.destroy()
    await nextEvent(ws, 'close')
  })

  it('verifyClient: sync false → 401, async cb(false, 403, "Forbidden") → 403, true → accepted', async () => {
    const infos: VerifyClientInfo[] = []
    const sync = await listen({
      verifyClient: (info: VerifyClientInfo) => {
        infos.push(info)
        return info.req.headers.authorization === 'yes'
      },
    })
    const refused = await upgradeRequest(sync.port, '/', { Origin: 'https://app.example' })
    assert.equal(refused.kind, 'response')
    assert.equal(refused.status, 401)
    assert.equal(infos[0]!.origin, 'https://app.example')
    assert.equal(infos[0]!.secure, false)
    const accepted = await upgradeRequest(sync.port, '/', { Authorization: 'yes' })
    assert.equal(accepted.kind, 'upgrade')
    assert.equal(accepted.status, 101)
    if (accepted.kind === 'upgrade') accepted.socket.destroy()

    const async = await listen({
      verifyClient: (
        info: VerifyClientInfo,
        cb: (ok: boolean, code?: number, message?: string, headers?: Record<string, string>) => void,
      ) => {
        setTimeout(() => {
          if (info.req.url === '/ok') cb(true)
          else if (info.req.url === '/slow') cb(false, 429, 'Slow down', { 'Retry-After': '5' })
          else cb(false, 403, 'Forbidden')
        }, 5)
      },
    })
    const forbidden = await upgradeRequest(async.port, '/')
    assert.equal(forbidden.kind, 'response')
    assert.equal(forbidden.status, 403)
    assert.match((forbidden as { body: string }).body, /Forbidden/)
    const slow = await upgradeRequest(async.port, '/slow')
    assert.equal(slow.status, 429)
    assert.equal(slow.headers['retry-after'], '5')
    const { client, server } = await pair(async.wss, `${async.url}/ok`)
    await closePair(client, server)
  })

  it('handleProtocols: its choice is the subprotocol; false means none; without it the first offer', async () => {
    const calls: { offered: string[]; url: string | undefined }[] = []
    const { wss, url } = await listen({
      handleProtocols: (protocols: Set<string>, request: IncomingMessage) => {
        calls.push({ offered: [...protocols], url: request.url })
        if (protocols.has('none')) return false
        return protocols.has('v2') ? 'v2' : [...protocols][0]!
      },
    })
    const chosen = await pair(wss, `${url}/p`, ['v1', 'v2'])
    assert.deepEqual(calls[0], { offered: ['v1', 'v2'], url: '/p' })
    assert.equal(chosen.client.protocol, 'v2')
    assert.equal(chosen.server.protocol, 'v2')
    await closePair(chosen.client, chosen.server)

    // false: no subprotocol in the 101. The WHATWG client accepts that (protocol "").
    const connection = nextEvent<[WsWebSocket]>(wss, 'connection')
    const whatwg = new WebSocket(url, ['none'])
    clients.push(whatwg)
    await nextDomEvent(whatwg, 'open')
    const [server] = await connection
    assert.equal(whatwg.protocol, '')
    assert.equal(server.protocol, '')
    const closed = nextDomEvent(whatwg, 'close')
    whatwg.close()
    await closed

    const plain = await listen()
    const first = await pair(plain.wss, plain.url, ['b', 'a'])
    assert.equal(first.client.protocol, 'b')
    await closePair(first.client, first.server)
  })

  it('clientTracking: `clients` gains a socket on connect and loses it on close; off → undefined', async () => {
    const { wss, url } = await listen()
    assert.ok(wss.clients instanceof Set)
    assert.equal(wss.clients.size, 0)
    const a = await pair(wss, url)
    const b = await pair(wss, url)
    assert.equal(wss.clients.size, 2)
    assert.ok(wss.clients.has(a.server) && wss.clients.has(b.server))
    await closePair(a.client, a.server)
    assert.equal(wss.clients.size, 1)
    assert.ok(!wss.clients.has(a.server))
    await closePair(b.client, b.server)
    assert.equal(wss.clients.size, 0)

    const untracked = await listen({ clientTracking: false })
    assert.equal(untracked.wss.clients, undefined)
    const c = await pair(untracked.wss, untracked.url)
    await closePair(c.client, c.server)
  })

  it("'headers': lines pushed by a listener (Set-Cookie) reach the client in the 101", async () => {
    const { wss, port } = await listen()
    const seen: { first: string | undefined; url: string | undefined }[] = []
    wss.on('headers', (lines: string[], request: IncomingMessage) => {
      seen.push({ first: lines[0], url: request.url })
      lines.push('Set-Cookie: a=b')
      lines.push('X-Served-By: rally')
    })
    const answer = await upgradeRequest(port, '/cookie')
    assert.equal(answer.kind, 'upgrade')
    assert.equal(answer.status, 101)
    assert.deepEqual(answer.headers['set-cookie'], ['a=b'])
    assert.equal(answer.headers['x-served-by'], 'rally')
    assert.deepEqual(seen, [{ first: 'HTTP/1.1 101 Switching Protocols', url: '/cookie' }])
    if (answer.kind === 'upgrade') answer.socket.destroy()
  })
})

describe('rallyjs/ws server-side WebSocket', () => {
  it("'message' gives a Buffer and isBinary", async () => {
    const { wss, url } = await listen()
    const { client, server } = await pair(wss, url)
    const text = nextEvent<[Buffer, boolean]>(server, 'message')
    client.send('héllo')
    const [data, isBinary] = await text
    assert.ok(Buffer.isBuffer(data))
    assert.equal(data.toString('utf8'), 'héllo')
    assert.equal(isBinary, false)
    const binary = nextEvent<[Buffer, boolean]>(server, 'message')
    client.send(new Uint8Array([1, 2, 3]))
    const [bytes, isBinary2] = await binary
    assert.ok(Buffer.isBuffer(bytes))
    assert.deepEqual([...bytes], [1, 2, 3])
    assert.equal(isBinary2, true)
    await closePair(client, server)
  })

  it("binaryType 'arraybuffer' and 'fragments'", async () => {
    const { wss, url } = await listen()
    const { client, server } = await pair(wss, url)
    server.binaryType = 'arraybuffer'
    const asArrayBuffer = nextEvent<[ArrayBuffer, boolean]>(server, 'message')
    client.send(Buffer.from([9, 8, 7]))
    const [ab] = await asArrayBuffer
    assert.ok(ab instanceof ArrayBuffer)
    assert.deepEqual([...new Uint8Array(ab)], [9, 8, 7])

    server.binaryType = 'fragments'
    const asFragments = nextEvent<[Buffer[], boolean]>(server, 'message')
    client.send(Buffer.from('frag'))
    const [fragments, isBinary] = await asFragments
    assert.ok(Array.isArray(fragments))
    assert.ok(fragments.every((f) => Buffer.isBuffer(f)))
    assert.equal(Buffer.concat(fragments).toString(), 'frag')
    assert.equal(isBinary, true)
    await closePair(client, server)
  })

  it('send(data, cb) calls back; after close the callback gets an error', async () => {
    const { wss, url } = await listen()
    const { client, server } = await pair(wss, url)
    const received = nextEvent<[Buffer]>(client, 'message')
    const sent = await within(
      new Promise<Error | undefined>((resolve) => server.send('with callback', resolve)),
      3000,
      'the send callback',
    )
    assert.equal(sent, undefined)
    assert.equal((await received)[0].toString(), 'with callback')
    const sentWithOptions = await within(
      new Promise<Error | undefined>((resolve) =>
        server.send(Buffer.from('opts'), { binary: true }, resolve),
      ),
      3000,
      'the send callback with options',
    )
    assert.equal(sentWithOptions, undefined)
    await closePair(client, server)
    const late = await within(
      new Promise<Error | undefined>((resolve) => server.send('too late', resolve)),
      3000,
      'the send callback after close',
    )
    assert.ok(late instanceof Error)
  })

  it('send with { fin: false } sends fragments the client reassembles into one message', async () => {
    const { wss, url } = await listen()
    const { client, server } = await pair(wss, url)
    const messages: [string, boolean][] = []
    client.on('message', (data: Buffer, isBinary: boolean) => messages.push([data.toString(), isBinary]))
    server.send('frag', { fin: false })
    server.send('ment', { fin: false })
    server.send('ed', { fin: true })
    server.send(Buffer.from('bin'), { binary: true, fin: false })
    server.send(Buffer.from('ary'), { binary: true, fin: true })
    server.send('whole')
    await until(() => messages.length >= 3, 3000, 'three messages')
    assert.deepEqual(messages, [
      ['fragmented', false],
      ['binary', true],
      ['whole', false],
    ])
    await closePair(client, server)
  })

  it('a publish while a fragmented message is being sent waits for its last fragment', async () => {
    // RFC 6455 5.4: fragments of one message may not be interleaved with another message. The
    // socket's own code controls its fragments, but publishes come from anywhere.
    const { wss, url } = await listen()
    const { client, server } = await pair(wss, url)
    server.subscribe('t')
    const messages: string[] = []
    const errors: Error[] = []
    client.on('message', (data: Buffer) => messages.push(data.toString()))
    client.on('error', (error: Error) => errors.push(error))
    server.send('frag-', { fin: false })
    wss.rallyServer.publish('t', 'published')
    // The server's pong (a control frame may come between fragments, RFC 6455 5.4) is written
    // after the publish: by the time it arrives, a publish sent out of turn would have arrived too.
    const pong = nextEvent(client, 'pong')
    client.ping()
    await pong
    assert.deepEqual(messages, [], 'nothing delivered before the last fragment')
    server.send('end', { fin: true })
    await until(() => messages.length === 2 || errors.length > 0, 3000, 'both messages')
    assert.deepEqual(
      errors.map((e) => e.message),
      [],
    )
    assert.deepEqual(messages, ['frag-end', 'published'])
    await closePair(client, server)
  })

  it("ping/pong: each side's ping is answered, with its payload, and both events fire", async () => {
    const { wss, url } = await listen()
    const { client, server } = await pair(wss, url)
    const clientPing = nextEvent<[Buffer]>(client, 'ping')
    const serverPong = nextEvent<[Buffer]>(server, 'pong')
    server.ping('from server')
    assert.equal((await clientPing)[0].toString(), 'from server')
    assert.equal((await serverPong)[0].toString(), 'from server')

    const serverPing = nextEvent<[Buffer]>(server, 'ping')
    const clientPong = nextEvent<[Buffer]>(client, 'pong')
    client.ping(Buffer.from('from client'))
    assert.equal((await serverPing)[0].toString(), 'from client')
    assert.equal((await clientPong)[0].toString(), 'from client')

    // An unsolicited pong is delivered as such.
    const unsolicited = nextEvent<[Buffer]>(client, 'pong')
    server.pong('unsolicited')
    assert.equal((await unsolicited)[0].toString(), 'unsolicited')
    await closePair(client, server)
  })

  it('close(code, reason) from the server: the client and the server both see them', async () => {
    const { wss, url } = await listen()
    const { client, server } = await pair(wss, url)
    const clientClose = nextEvent<[number, Buffer]>(client, 'close')
    const serverClose = nextEvent<[number, Buffer]>(server, 'close')
    server.close(4100, 'done here')
    assert.equal(server.readyState, WsWebSocket.CLOSING)
    const [code, reason] = await clientClose
    assert.equal(code, 4100)
    assert.ok(Buffer.isBuffer(reason))
    assert.equal(reason.toString(), 'done here')
    const [serverCode] = await serverClose
    assert.equal(serverCode, 4100)
    assert.equal(server.readyState, WsWebSocket.CLOSED)
  })

  it("'close' (code, reason Buffer) when the client closes; readyState follows", async () => {
    const { wss, url } = await listen()
    const client = new WsWebSocket(url)
    clients.push(client)
    assert.equal(client.readyState, WsWebSocket.CONNECTING)
    const connection = nextEvent<[WsWebSocket]>(wss, 'connection')
    await nextEvent(client, 'open')
    const [server] = await connection
    assert.equal(client.readyState, client.OPEN)
    assert.equal(server.readyState, server.OPEN)
    const serverClose = nextEvent<[number, Buffer]>(server, 'close')
    client.close(4200, 'client done')
    assert.equal(client.readyState, WsWebSocket.CLOSING)
    const [code, reason] = await serverClose
    assert.equal(code, 4200)
    assert.ok(Buffer.isBuffer(reason))
    assert.equal(reason.toString(), 'client done')
    assert.equal(server.readyState, WsWebSocket.CLOSED)
    await until(() => client.readyState === WsWebSocket.CLOSED, 3000, 'the client to close')
  })

  it('terminate(): the client sees 1006 at once, the server too', async () => {
    const { wss, url } = await listen()
    const { client, server } = await pair(wss, url)
    const clientClose = nextEvent<[number, Buffer]>(client, 'close')
    const serverClose = nextEvent<[number, Buffer]>(server, 'close')
    server.terminate()
    assert.equal((await clientClose)[0], 1006)
    assert.equal((await serverClose)[0], 1006)
    assert.equal(server.readyState, WsWebSocket.CLOSED)
  })

  it("a peer's protocol error: 'error' on the server socket (with a listener), close 1007", async () => {
    const { wss, url } = await listen()
    const { client, server } = await pair(wss, url)
    const error = nextEvent<[Error & { closeCode?: number }]>(server, 'error')
    const serverClose = nextEvent<[number]>(server, 'close')
    const clientClose = nextEvent<[number]>(client, 'close')
    client.send(Buffer.from([0x68, 0xff]), { binary: false })
    const [err] = await error
    assert.ok(err instanceof Error)
    assert.equal(err.closeCode, 1007)
    assert.equal((await clientClose)[0], 1007)
    await serverClose
  })

  it('readyState constants, as in ws', () => {
    assert.deepEqual(
      [WsWebSocket.CONNECTING, WsWebSocket.OPEN, WsWebSocket.CLOSING, WsWebSocket.CLOSED],
      [0, 1, 2, 3],
    )
    const proto = WsWebSocket.prototype as unknown as Record<string, number>
    assert.deepEqual([proto.CONNECTING, proto.OPEN, proto.CLOSING, proto.CLOSED], [0, 1, 2, 3])
  })

  it('bufferedAmount counts queued bytes and returns to 0 once written', async () => {
    const { wss, url } = await listen()
    const { client, server } = await pair(wss, url)
    assert.equal(server.bufferedAmount, 0)
    const big = Buffer.alloc(4 * 1024 * 1024, 0x61)
    const received = nextEvent<[Buffer]>(client, 'message', 10_000)
    server.send(big)
    assert.ok(server.bufferedAmount > 0, `bufferedAmount right after a 4 MiB send: ${server.bufferedAmount}`)
    assert.equal((await received)[0].length, big.length)
    await until(() => server.bufferedAmount === 0, 3000, 'bufferedAmount to return to 0')
    await closePair(client, server)
  })

  it('protocol and extensions on the server side', async () => {
    const { wss, url } = await listen({ perMessageDeflate: true })
    const { client, server } = await pair(wss, url, ['chat.v1'])
    assert.equal(server.protocol, 'chat.v1')
    assert.match(server.extensions, /^permessage-deflate/)
    assert.equal(client.extensions, server.extensions)
    // A compressible message round trip with deflate on.
    const echo = nextEvent<[Buffer]>(server, 'message')
    const text = 'compress me '.repeat(500)
    client.send(text)
    assert.equal((await echo)[0].toString(), text)
    await closePair(client, server)
  })

  it('topics on server-side sockets: subscribe, publish (not to the sender), topics, rallyServer.publish', async () => {
    const { wss, url } = await listen()
    const a = await pair(wss, url)
    const b = await pair(wss, url)
    const c = await pair(wss, url)
    assert.ok(a.server.rally instanceof ServerWebSocket)
    assert.equal(a.server.subscribe('room'), true)
    assert.equal(a.server.subscribe('room'), false)
    b.server.subscribe('room')
    b.server.subscribe('other')
    assert.deepEqual(a.server.topics, ['room'])
    assert.deepEqual([...b.server.topics].sort(), ['other', 'room'])
    assert.equal(b.server.isSubscribed('other'), true)
    assert.equal(c.server.isSubscribed('room'), false)
    assert.equal(wss.rallyServer.subscriberCount('room'), 2)

    const got: Record<string, string[]> = { a: [], b: [], c: [] }
    a.client.on('message', (d: Buffer) => got.a!.push(d.toString()))
    b.client.on('message', (d: Buffer) => got.b!.push(d.toString()))
    c.client.on('message', (d: Buffer) => got.c!.push(d.toString()))

    assert.equal(a.server.publish('room', 'from a'), 1)
    assert.equal(wss.rallyServer.publish('room', 'to all'), 2)
    // A direct send after the publishes: once it arrives, the publishes (sent before) have too.
    for (const p of [a, b, c]) p.server.send('end')
    await until(
      () => got.a!.includes('end') && got.b!.includes('end') && got.c!.includes('end'),
      3000,
      'ends',
    )
    assert.deepEqual(got, { a: ['to all', 'end'], b: ['from a', 'to all', 'end'], c: ['end'] })

    assert.equal(b.server.unsubscribe('room'), true)
    assert.equal(b.server.unsubscribe('room'), false)
    assert.equal(wss.rallyServer.subscriberCount('room'), 1)
    await closePair(b.client, b.server)
    assert.equal(wss.rallyServer.subscriberCount('other'), 0)
    assert.equal(b.server.subscribe('late'), false, 'a closed socket cannot subscribe')

    // Topics live on the server: a client-side socket refuses them.
    assert.throws(() => a.client.subscribe('room'), TypeError)
    assert.deepEqual(a.client.topics, [])
    await closePair(a.client, a.server)
    await closePair(c.client, c.server)
    assert.equal(wss.rallyServer.topicRegistry.size, 0)
  })
})

describe('WebSocketServer refusals on a shared node:http server', () => {
  it('a refused peer that keeps its side open is let go after a second (nothing holds http.close())', async () => {
    const { http, port } = await onHttpServer('/ws')
    const serverSide = new Promise<Duplex>((resolve) =>
      http.once('upgrade', (_req, socket) => resolve(socket)),
    )
    const socket: Socket = connect({ host: '127.0.0.1', port, allowHalfOpen: true })
    socket.on('error', () => {})
    const received: Buffer[] = []
    socket.on('data', (chunk: Buffer) => received.push(chunk))
    await nextEvent(socket, 'connect')
    socket.write(
      'GET /elsewhere HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
    )
    const held = await within(serverSide, 3000, 'the upgrade request')
    await nextEvent(socket, 'end', 3000)
    assert.match(Buffer.concat(received).toString('latin1'), /^HTTP\/1\.1 400 /)
    // The test's side stays open; the server lets its socket go after the linger all the same.
    await nextEvent(held, 'close', 4000)
    socket.destroy()
  })
})
