/**
 * Hono on HTTP/2: @hono/node-server serving an `http2.createSecureServer` (allowHTTP1) with
 * `rallyjs/hono`'s createNodeWebSocket/injectWebSocket. WebSockets arrive both as extended
 * CONNECT streams and as HTTP/1.1 upgrades on the same port, through the same Hono route and
 * middleware (a refusal keeps its status and body on a stream too); the realtime layer's WebSocket
 * (mountRealtime) on a stream; and its SSE transport runs over one HTTP/2 connection: eight event streams with their POSTs at once, more
 * than a browser's six HTTP/1.1 connections per origin, with a page request answered beside them.
 */
import assert from 'node:assert/strict'
import { type ClientHttp2Session, createSecureServer, connect as http2Connect } from 'node:http2'
import type { AddressInfo } from 'node:net'
import { after, before, describe, test } from 'node:test'
import { serve } from '@hono/node-server'
import { Hono } from 'hono'
import { createNodeWebSocket, mountRealtime, mountTransports } from '../../src/adapters/hono/index.js'
import { WebSocket } from '../../src/index.js'
import { RallyClient, webSocketTransport } from '../../src/realtime/client/index.js'
import { createRealtime, HttpTransports } from '../../src/realtime/index.js'
import { nextDomEvent } from '../support/events.js'
import { withTimeout } from '../support/timing.js'
import { bodyOf, type Certificate, connectHeaders, makeCertificate, responseOf } from './helpers.js'

let certificate: Certificate
before(() => {
  certificate = makeCertificate()
})
after(() => certificate?.dispose())

interface HonoH2 {
  port: number
  nodeWebSocket: ReturnType<typeof createNodeWebSocket>
  realtime: ReturnType<typeof createRealtime>
  /** HTTP/2 connections the server has accepted (HTTP/1.1 ones are not counted). */
  sessions: () => number
  /** A client session that has the server's SETTINGS. */
  session(): Promise<ClientHttp2Session>
}

async function withHonoH2(body: (h: HonoH2) => Promise<void>): Promise<void> {
  const realtime = createRealtime({ channels: { 'chat:*': { publish: true } }, onError: () => {} })
  const app = new Hono()
  const nodeWebSocket = createNodeWebSocket({ app })
  const transports = new HttpTransports(realtime, { path: '/realtime' })
  app.use('/private/*', async (c, next) => {
    if (c.req.header('authorization') !== 'Bearer ok') return c.text('who are you?', 401)
    await next()
  })
  const echo = nodeWebSocket.upgradeWebSocket(() => ({
    onMessage(event, ws) {
      ws.send(`echo ${String(event.data)}`)
    },
  }))
  app.get('/echo', echo)
  app.get('/private/echo', echo)
  mountTransports(app, transports)
  mountRealtime(app, realtime, nodeWebSocket, '/realtime')
  app.get('/', (c) => c.text('home'))
  const server = serve({
    fetch: app.fetch,
    port: 0,
    hostname: '127.0.0.1',
    createServer: createSecureServer,
    serverOptions: { key: certificate.key, cert: certificate.cert, allowHTTP1: true },
  })
  nodeWebSocket.injectWebSocket(server)
  let sessions = 0
  server.on('session', () => sessions++)
  await new Promise<void>((resolve) => server.once('listening', () => resolve()))
  const { port } = server.address() as AddressInfo
  const clients: ClientHttp2Session[] = []
  try {
    await body({
      port,
      nodeWebSocket,
      realtime,
      sessions: () => sessions,
      session: async () => {
        const session = http2Connect(`https://localhost:${port}`, { ca: certificate.cert })
        clients.push(session)
        session.on('error', () => {})
        await withTimeout(
          new Promise((resolve) => session.once('remoteSettings', resolve)),
          10_000,
          "the server's SETTINGS",
        )
        return session
      },
    })
  } finally {
    for (const client of clients) client.destroy()
    await realtime.close()
    transports.close()
    await nodeWebSocket.rally.close()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  }
}

function opened(ws: WebSocket): Promise<void> {
  return new Promise((resolve, reject) => {
    ws.onopen = () => resolve()
    ws.onerror = () => reject(new Error(`${ws.url} failed to open`))
  })
}

async function echoed(ws: WebSocket, text: string): Promise<string> {
  const reply = nextDomEvent<MessageEvent>(ws, 'message', 10_000)
  ws.send(text)
  return String((await reply).data)
}

describe('Hono (@hono/node-server) on an HTTP/2 server', () => {
  test('WebSockets over HTTP/2 streams and over HTTP/1.1 on the same port, through the same route', async () => {
    await withHonoH2(async (h) => {
      const tls = { ca: certificate.cert }
      const url = `wss://localhost:${h.port}/echo`
      const overH2 = [0, 1, 2].map(() => new WebSocket(url, [], { http2: true, tls }))
      const overH1 = new WebSocket(url, [], { tls })
      await Promise.all([...overH2, overH1].map(opened))
      assert.deepEqual(h.nodeWebSocket.rally.stats().transports, { http1: 1, http2: 3, http2Sessions: 1 })
      for (const [i, ws] of overH2.entries()) assert.equal(await echoed(ws, `h2 ${i}`), `echo h2 ${i}`)
      assert.equal(await echoed(overH1, 'h1'), 'echo h1')

      // Middleware runs for a stream as for an upgrade: refused with its own status and body ...
      const session = await h.session()
      const refused = session.request(connectHeaders(h.port, {}, '/private/echo'), { endStream: false })
      const refusal = await responseOf(refused)
      assert.ok('status' in refusal, JSON.stringify(refusal))
      assert.equal(refusal.status, 401)
      assert.equal(await bodyOf(refused), 'who are you?')
      // ... and let through with the right credentials.
      const allowed = new WebSocket(`wss://localhost:${h.port}/private/echo`, [], {
        http2: session,
        tls,
        headers: { authorization: 'Bearer ok' },
      })
      await opened(allowed)
      assert.equal(await echoed(allowed, 'private'), 'echo private')
      // A route Hono does not have: its 404, on the stream.
      const missing = session.request(connectHeaders(h.port, {}, '/nowhere'), { endStream: false })
      const notFound = await responseOf(missing)
      assert.ok('status' in notFound)
      assert.equal(notFound.status, 404)

      const closes = [...overH2, overH1, allowed].map((ws) =>
        nextDomEvent<Event & { code: number }>(ws, 'close', 10_000),
      )
      for (const ws of [...overH2, overH1, allowed]) ws.close(1000)
      for (const event of await Promise.all(closes)) assert.equal(event.code, 1000)
    })
  })

  test('the realtime layer (mountRealtime, rally.v1) over an HTTP/2 stream: subscribe, publish, receive', async () => {
    await withHonoH2(async (h) => {
      const tls = { ca: certificate.cert }
      // RallyClient makes its sockets with `new WebSocket(url, protocols)`: this one asks for HTTP/2.
      class Http2WebSocket extends WebSocket {
        constructor(url: string | URL, protocols?: string | string[]) {
          super(url, protocols, { http2: true, tls })
        }
      }
      const client = new RallyClient(`https://localhost:${h.port}/realtime`, {
        transports: [webSocketTransport(Http2WebSocket)],
      })
      try {
        const room = client.channel('chat:h2')
        const got = new Promise<unknown>((resolve) => room.on('publication', (pub) => resolve(pub.data)))
        const subscribed = new Promise<void>((resolve) => room.on('subscribed', () => resolve()))
        client.connect()
        await withTimeout(subscribed, 15_000, 'subscribed')
        assert.deepEqual(h.nodeWebSocket.rally.stats().transports, { http1: 0, http2: 1, http2Sessions: 1 })
        await room.publish({ over: 'an h2 stream' })
        assert.deepEqual(await withTimeout(got, 15_000, 'the publication'), { over: 'an h2 stream' })
      } finally {
        client.close()
      }
    })
  })

  test('the realtime SSE transport: eight event streams and their POSTs on one HTTP/2 connection', async () => {
    await withHonoH2(async (h) => {
      const session = await h.session()
      const post = async (path: string, body: string, headers: Record<string, string> = {}) => {
        const stream = session.request({
          ':method': 'POST',
          ':path': path,
          'content-type': 'application/json',
          ...headers,
        })
        stream.end(body)
        const response = await responseOf(stream)
        assert.ok('status' in response, `${path}: ${JSON.stringify(response)}`)
        return { status: response.status, text: await bodyOf(stream) }
      }
      const STREAMS = 8
      const readers: EventReader[] = []
      for (let i = 0; i < STREAMS; i++) {
        const open = await post('/realtime/open', '', { 'x-rally-transport': 'sse' })
        assert.equal(open.status, 200, open.text)
        const { session: id, token } = JSON.parse(open.text) as { session: string; token: string }
        const stream = session.request({ ':method': 'GET', ':path': `/realtime/sse?session=${id}` })
        const reader = new EventReader(stream)
        readers.push(reader)
        const response = await responseOf(stream)
        assert.ok('status' in response)
        assert.equal(response.status, 200)
        assert.match(String(response.headers['content-type']), /^text\/event-stream/)
        await reader.until((events) => events.some((event) => event.event === 'ready'), 'the ready event')
        const commands = JSON.stringify([
          { id: 1, cmd: 'connect', version: 1 },
          { id: 2, cmd: 'subscribe', channel: 'chat:h2' },
        ])
        const sent = await post(`/realtime/send?session=${id}`, commands, { 'x-rally-token': token })
        assert.equal(sent.status, 204, sent.text)
        await reader.until(
          (events) => events.some((event) => (event.data as { id?: number } | undefined)?.id === 2),
          'the subscribe reply',
        )
      }
      // All eight streams are open at once; a page request is answered beside them.
      const page = session.request({ ':method': 'GET', ':path': '/' })
      assert.equal(await bodyOf(page), 'home')
      await h.realtime.publish('chat:h2', { over: 'h2' })
      for (const reader of readers) {
        await reader.until(
          (events) =>
            events.some((event) => {
              const data = event.data as { push?: string; data?: unknown } | undefined
              return data?.push === 'pub' && JSON.stringify(data.data) === '{"over":"h2"}'
            }),
          'the publication',
        )
        assert.equal(reader.stream.closed, false)
      }
      assert.equal(h.sessions(), 1, 'every request went over the one HTTP/2 connection')
    })
  })
})

interface ServerEvent {
  event?: string
  id?: string
  data?: unknown
}

/** Reads an SSE response (text/event-stream) on an HTTP/2 stream, event by event. */
class EventReader {
  readonly events: ServerEvent[] = []
  private text = ''
  private waiters: (() => void)[] = []

  constructor(readonly stream: import('node:http2').ClientHttp2Stream) {
    stream.setEncoding('utf8')
    stream.on('data', (chunk: string) => {
      this.text += chunk
      let end = this.text.indexOf('\n\n')
      while (end !== -1) {
        this.events.push(parseEvent(this.text.slice(0, end)))
        this.text = this.text.slice(end + 2)
        end = this.text.indexOf('\n\n')
      }
      for (const waiter of this.waiters.splice(0)) waiter()
    })
  }

  until(condition: (events: ServerEvent[]) => boolean, what: string): Promise<void> {
    return withTimeout(
      new Promise<void>((resolve) => {
        const check = () => {
          if (condition(this.events)) resolve()
          else this.waiters.push(check)
        }
        check()
      }),
      15_000,
      `${what} (events so far: ${JSON.stringify(this.events)})`,
    )
  }
}

function parseEvent(block: string): ServerEvent {
  const event: ServerEvent = {}
  for (const line of block.split('\n')) {
    if (line.startsWith('event: ')) event.event = line.slice(7)
    else if (line.startsWith('id: ')) event.id = line.slice(4)
    else if (line.startsWith('data: ')) {
      try {
        event.data = JSON.parse(line.slice(6))
      } catch {
        event.data = line.slice(6)
      }
    }
  }
  return event
}
