/**
 * Plain HTTP/1.1 on Rally's own port (src/server/own-http.ts) over real sockets: keep-alive,
 * pipelining, answer framing (length, chunked, close-delimited), request bodies and their limits,
 * 100-continue, HEAD, HTTP/1.0, `connection: close`, an Upgrade on a kept-alive connection,
 * clients that leave, header injection, handler errors and the deadlines.
 *
 * Answers are read raw (node:net) by `RawHttp`, which parses complete answers one after another
 * and keeps whatever bytes follow, so framing mistakes show up as a broken next answer.
 */
import assert from 'node:assert/strict'
import { Buffer } from 'node:buffer'
import net from 'node:net'
import { afterEach, describe, it } from 'node:test'
import { createServer, type RallyServer, type ServerOptions } from '../../src/index.js'
import { computeAcceptKey } from '../../src/protocol/index.js'
import type { RallyHttpRequest, RallyHttpResponse } from '../../src/server/own-http.js'
import { EventQueue, once } from '../support/events.js'
import { clientFrame } from '../support/frames.js'
import { withTimeout } from '../support/timing.js'

const HOST = '127.0.0.1'
const KEY = 'dGhlIHNhbXBsZSBub25jZQ=='

// ------------------------------------------------------------------ servers and raw clients

const servers: RallyServer<unknown>[] = []
const sockets: net.Socket[] = []

afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.destroy()
  await Promise.all(
    servers.splice(0).map((server) => withTimeout(server.close(), 3000, 'server.close()').catch(() => {})),
  )
})

/** A Rally server on an ephemeral port of 127.0.0.1; handler errors go to `errors`. */
async function start(
  options: Partial<ServerOptions<undefined>>,
): Promise<{ server: RallyServer<undefined>; port: number; errors: unknown[] }> {
  const errors: unknown[] = []
  const server = createServer<undefined>({
    port: 0,
    host: HOST,
    error: (error) => errors.push(error),
    ...options,
  })
  servers.push(server as RallyServer<unknown>)
  await server.ready()
  return { server, port: server.port!, errors }
}

/** One answer as read from the wire. */
interface Answer {
  statusLine: string
  status: number
  /** Lower-case names; repeated fields joined with ', '. */
  headers: Record<string, string>
  body: Buffer
  /** The chunk-size lines as sent (hex), for a chunked answer. */
  chunkSizes: string[]
}

/** A raw TCP client that reads complete HTTP answers one after another. */
class RawHttp {
  private buffer = Buffer.alloc(0)
  private wake: (() => void) | undefined
  /** The server ended (or closed) the connection. */
  ended = false
  readonly closed: Promise<void>

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, chunk])
      this.wake?.()
    })
    const end = (): void => {
      this.ended = true
      this.wake?.()
    }
    socket.on('end', end)
    socket.on('error', () => {})
    this.closed = new Promise((resolve) => socket.on('close', () => resolve()))
    socket.on('close', end)
  }

  static async open(port: number): Promise<RawHttp> {
    const socket = net.connect(port, HOST)
    sockets.push(socket)
    await once(socket, 'connect')
    return new RawHttp(socket)
  }

  send(data: string | Buffer): void {
    this.socket.write(typeof data === 'string' ? Buffer.from(data, 'utf8') : data)
  }

  /** Bytes received and not yet read as an answer. */
  get unread(): Buffer {
    return this.buffer
  }

  /** The next complete answer (`head`: the answer to a HEAD request, without a body). */
  async answer(options: { head?: boolean; ms?: number } = {}): Promise<Answer> {
    const deadline = Date.now() + (options.ms ?? 5000)
    for (;;) {
      const parsed = parseAnswer(this.buffer, this.ended, options.head ?? false)
      if (parsed !== undefined) {
        this.buffer = this.buffer.subarray(parsed.size)
        return parsed.answer
      }
      if (this.ended)
        throw new Error(
          `connection ended before a complete answer: ${JSON.stringify(this.buffer.toString('latin1'))}`,
        )
      await this.more(deadline - Date.now())
    }
  }

  /** Resolves once the server has ended the connection (all bytes up to then are in `unread`). */
  async end(ms = 5000): Promise<void> {
    const deadline = Date.now() + ms
    while (!this.ended) await this.more(deadline - Date.now())
  }

  private more(ms: number): Promise<void> {
    return withTimeout(
      new Promise<void>((resolve) => {
        this.wake = () => {
          this.wake = undefined
          resolve()
        }
      }),
      Math.max(ms, 1),
      `bytes from the server (have ${JSON.stringify(this.buffer.toString('latin1').slice(0, 200))})`,
    )
  }
}

/** A complete answer at the start of `buffer` and its size in bytes, or undefined while incomplete. */
function parseAnswer(
  buffer: Buffer,
  ended: boolean,
  headOnly: boolean,
): { answer: Answer; size: number } | undefined {
  const headEnd = buffer.indexOf('\r\n\r\n')
  if (headEnd === -1) return undefined
  const lines = buffer.toString('latin1', 0, headEnd).split('\r\n')
  const statusLine = lines[0]!
  const match = /^HTTP\/1\.[01] (\d{3}) /.exec(statusLine)
  if (match === null) throw new Error(`not a status line: ${JSON.stringify(statusLine)}`)
  const status = Number(match[1])
  const headers: Record<string, string> = {}
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':')
    const name = line.slice(0, colon).toLowerCase()
    const value = line.slice(colon + 1).trim()
    headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`
  }
  const answer: Answer = { statusLine, status, headers, body: Buffer.alloc(0), chunkSizes: [] }
  let at = headEnd + 4
  if (headOnly || status < 200 || status === 204 || status === 304) return { answer, size: at }
  if (headers['transfer-encoding'] === 'chunked') {
    const pieces: Buffer[] = []
    for (;;) {
      const lineEnd = buffer.indexOf('\r\n', at)
      if (lineEnd === -1) return undefined
      const sizeLine = buffer.toString('latin1', at, lineEnd)
      if (!/^[0-9a-f]+$/.test(sizeLine)) throw new Error(`bad chunk size line ${JSON.stringify(sizeLine)}`)
      const size = Number.parseInt(sizeLine, 16)
      answer.chunkSizes.push(sizeLine)
      at = lineEnd + 2
      if (size === 0) {
        // No trailers expected from Rally: the empty line ends the answer.
        if (buffer.length < at + 2) return undefined
        assert.equal(buffer.toString('latin1', at, at + 2), '\r\n', 'chunked answer ends with 0 CRLF CRLF')
        answer.body = Buffer.concat(pieces)
        return { answer, size: at + 2 }
      }
      if (buffer.length < at + size + 2) return undefined
      pieces.push(buffer.subarray(at, at + size))
      assert.equal(buffer.toString('latin1', at + size, at + size + 2), '\r\n', 'CRLF after chunk data')
      at += size + 2
    }
  }
  if (headers['content-length'] !== undefined) {
    const length = Number(headers['content-length'])
    if (buffer.length < at + length) return undefined
    answer.body = Buffer.from(buffer.subarray(at, at + length))
    return { answer, size: at + length }
  }
  // Close-delimited: complete once the server ended the connection.
  if (!ended) return undefined
  answer.body = Buffer.from(buffer.subarray(at))
  return { answer, size: buffer.length }
}

function get(path: string, extra = ''): string {
  return `GET ${path} HTTP/1.1\r\nHost: ${HOST}\r\n${extra}\r\n`
}

function post(path: string, body: string, extra = ''): string {
  return `POST ${path} HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extra}\r\n${body}`
}

/** A handler answering `<method> <url> <body>` at once. */
function echo(req: RallyHttpRequest, res: RallyHttpResponse): void {
  res.writeHead(200, { 'content-type': 'text/plain' }).end(`${req.method} ${req.url} ${req.body.toString()}`)
}

/** The port still answers a fresh connection (after a refusal or an error). */
async function stillServes(port: number): Promise<void> {
  const response = await fetch(`http://${HOST}:${port}/again`, { signal: AbortSignal.timeout(3000) })
  assert.equal(response.status, 200)
  await response.text()
}

// ------------------------------------------------------------------ tests

describe('own port: plain HTTP/1.1', () => {
  it('fetch gets an answer from the request handler (sanity)', async () => {
    const { port } = await start({
      request(req, res) {
        res.writeHead(201, { 'x-method': req.method, 'x-agent': String(req.headers['user-agent'] ?? '') })
        res.end('made')
      },
    })
    const response = await fetch(`http://${HOST}:${port}/thing`, { method: 'PUT', body: 'x' })
    assert.equal(response.status, 201)
    assert.equal(response.headers.get('x-method'), 'PUT')
    assert.equal(await response.text(), 'made')
  })

  it('keep-alive: two requests on one socket, each answered; end(body) is length-framed with a date', async () => {
    const { port } = await start({ request: echo })
    const raw = await RawHttp.open(port)
    raw.send(get('/one'))
    const first = await raw.answer()
    assert.equal(first.statusLine, 'HTTP/1.1 200 OK')
    assert.equal(first.body.toString(), 'GET /one ')
    assert.equal(first.headers['content-length'], String(first.body.length))
    assert.equal(first.headers['transfer-encoding'], undefined)
    assert.equal(first.headers.connection, undefined)
    assert.ok(first.headers.date !== undefined && !Number.isNaN(Date.parse(first.headers.date)))
    raw.send(get('/two'))
    const second = await raw.answer()
    assert.equal(second.body.toString(), 'GET /two ')
    assert.equal(raw.ended, false)
    assert.equal(raw.unread.length, 0)
  })

  it('pipelining: three requests in one write are handed over and answered in order, one at a time', async () => {
    const seen: string[] = []
    const seenWhenFirstAnswered: string[] = []
    const { port } = await start({
      request(req, res) {
        seen.push(req.url)
        if (req.url === '/1')
          // Answered later: the two requests behind it wait until then.
          setImmediate(() => {
            seenWhenFirstAnswered.push(...seen)
            res.end('first')
          })
        else res.end(req.url === '/2' ? 'second' : 'third')
      },
    })
    const raw = await RawHttp.open(port)
    raw.send(get('/1') + get('/2') + get('/3'))
    const bodies = [await raw.answer(), await raw.answer(), await raw.answer()].map((a) => a.body.toString())
    assert.deepEqual(bodies, ['first', 'second', 'third'])
    assert.deepEqual(seenWhenFirstAnswered, ['/1'])
    assert.deepEqual(seen, ['/1', '/2', '/3'])
  })

  it('pipelining: 3000 small requests in one write (under the 64 KiB bound) are all answered', async () => {
    const { port, errors } = await start({ request: (_req, res) => void res.end('k') })
    const raw = await RawHttp.open(port)
    const count = 3000
    raw.send('GET / HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(count))
    for (let i = 0; i < count; i++) assert.equal((await raw.answer()).status, 200, `answer ${i}`)
    assert.deepEqual(errors, [])
  })

  it('chunked answer: write, write, end gives byte-sized chunks and 0 CRLF CRLF; the socket serves on', async () => {
    const { port } = await start({
      request(req, res) {
        if (req.url === '/stream') {
          res.write('a')
          res.write('bé')
          res.end()
        } else res.end('next')
      },
    })
    const raw = await RawHttp.open(port)
    raw.send(get('/stream'))
    const streamed = await raw.answer()
    assert.equal(streamed.headers['transfer-encoding'], 'chunked')
    assert.equal(streamed.headers['content-length'], undefined)
    assert.deepEqual(streamed.chunkSizes, ['1', '3', '0'])
    assert.equal(streamed.body.toString('utf8'), 'abé')
    raw.send(get('/after'))
    assert.equal((await raw.answer()).body.toString(), 'next')
    assert.equal(raw.unread.length, 0)
  })

  it('chunked answer: a chunk of 16 bytes or more has its size in hex', async () => {
    const { port } = await start({
      request(_req, res) {
        res.write('x'.repeat(26))
        res.end(Buffer.alloc(300, 0x41))
      },
    })
    const raw = await RawHttp.open(port)
    raw.send(get('/'))
    const answer = await raw.answer()
    assert.deepEqual(answer.chunkSizes, ['1a', '12c', '0'])
    assert.equal(answer.body.length, 326)
  })
})

describe('own port: request bodies', () => {
  it('a Content-Length body is delivered whole', async () => {
    const { port } = await start({ request: echo })
    const raw = await RawHttp.open(port)
    raw.send(post('/p', 'héllo body'))
    assert.equal((await raw.answer()).body.toString(), 'POST /p héllo body')
  })

  it('a chunked body with a chunk extension and a trailer is delivered whole', async () => {
    const { port } = await start({ request: echo })
    const raw = await RawHttp.open(port)
    raw.send(
      'POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n' +
        '5;x=1\r\nhello\r\n' +
        '6\r\n world\r\n' +
        '0\r\nX-Trailer: yes\r\n\r\n',
    )
    assert.equal((await raw.answer()).body.toString(), 'POST /c hello world')
    raw.send(get('/after'))
    assert.equal((await raw.answer()).body.toString(), 'GET /after ')
  })

  it('a body split across many small writes is delivered whole (Content-Length and chunked)', async () => {
    const { port } = await start({ request: echo })
    const raw = await RawHttp.open(port)
    raw.socket.setNoDelay(true)
    const body = 'abcdefghijklmnopqrstuvwxyz0123456789'
    const bytes = Buffer.from(post('/split', body), 'latin1')
    for (let i = 0; i < bytes.length; i += 3) raw.send(bytes.subarray(i, i + 3))
    assert.equal((await raw.answer()).body.toString(), `POST /split ${body}`)
    const chunked = Buffer.from(
      'POST /split2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n3;e=f\r\nxyz\r\n0\r\n\r\n',
      'latin1',
    )
    for (let i = 0; i < chunked.length; i++) raw.send(chunked.subarray(i, i + 1))
    assert.equal((await raw.answer()).body.toString(), 'POST /split2 0123456789xyz')
  })

  it('pipelined POSTs answered at once: the second body is read once, whatever the write boundaries', async () => {
    const { port } = await start({ request: echo })
    const raw = await RawHttp.open(port)
    // The first body ends in this write; the second request's body begins in it and ends later.
    raw.send(`${post('/a', 'abc')}POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nxy`)
    assert.equal((await raw.answer()).body.toString(), 'POST /a abc')
    raw.send('zab')
    assert.equal((await raw.answer({ ms: 2000 })).body.toString(), 'POST /b xyzab')
  })
})

describe('own port: limits and refusals', () => {
  const refusals: [string, number, string, ServerOptions<undefined>['maxRequestBodySize']?][] = [
    ['Content-Length over maxRequestBodySize', 413, post('/big', 'x'.repeat(101)), 100],
    [
      'a chunked body growing past the limit',
      413,
      'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n' +
        `${'y'.repeat(64)}\r\n40\r\n${'y'.repeat(64)}\r\n0\r\n\r\n`,
      100,
    ],
    [
      'both Transfer-Encoding and Content-Length',
      400,
      'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n',
    ],
    ['Transfer-Encoding: gzip', 501, 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n'],
    ['an HTTP/2.0 request line', 505, 'GET / HTTP/2.0\r\nHost: x\r\n\r\n'],
    [
      'a malformed chunk size',
      400,
      'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n',
    ],
    ['an HTTP/1.1 request without Host', 400, 'GET / HTTP/1.1\r\n\r\n'],
    ['an HTTP/1.1 request with two Host headers', 400, 'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n'],
    [
      'a header section over the limit',
      431,
      `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'h'.repeat(20 * 1024)}\r\n\r\n`,
    ],
  ]
  for (const [what, status, request, maxRequestBodySize] of refusals) {
    it(`${what} → ${status}, the handler is not called, the port serves on`, async () => {
      const urls: string[] = []
      const { port } = await start({
        maxRequestBodySize,
        request(req, res) {
          urls.push(req.url)
          res.end('ok')
        },
      })
      const raw = await RawHttp.open(port)
      raw.send(request)
      const answer = await raw.answer()
      assert.equal(answer.status, status)
      await raw.end()
      // The fetch below reaches the handler: had the refused request reached it, it came first.
      await stillServes(port)
      assert.deepEqual(urls, ['/again'])
    })
  }

  it('a refusal on the second request of a kept-alive connection (431 after an answer)', async () => {
    const { port } = await start({ request: echo })
    const raw = await RawHttp.open(port)
    raw.send(get('/first'))
    assert.equal((await raw.answer()).status, 200)
    raw.send(`GET /second HTTP/1.1\r\nHost: x\r\nX-Big: ${'h'.repeat(20 * 1024)}\r\n\r\n`)
    assert.equal((await raw.answer()).status, 431)
    await raw.end()
    await stillServes(port)
  })

  it('Expect: 100-continue gets 100 Continue before the body is sent, then the answer', async () => {
    const { port } = await start({ request: echo })
    const raw = await RawHttp.open(port)
    raw.send('POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n')
    const interim = await raw.answer()
    assert.equal(interim.statusLine, 'HTTP/1.1 100 Continue')
    raw.send('body')
    const final = await raw.answer()
    assert.equal(final.status, 200)
    assert.equal(final.body.toString(), 'POST /e body')
  })
})

describe('own port: HEAD, HTTP/1.0, connection: close', () => {
  it('HEAD: the head carries the length of the body given, and no body bytes follow', async () => {
    const { port } = await start({
      request(req, res) {
        res.end(req.method === 'HEAD' ? 'twelve bytes' : 'got')
      },
    })
    const raw = await RawHttp.open(port)
    raw.send(`HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n${get('/g')}`)
    const head = await raw.answer({ head: true })
    assert.equal(head.status, 200)
    assert.equal(head.headers['content-length'], '12')
    const next = await raw.answer()
    assert.equal(next.body.toString(), 'got')
    assert.equal(raw.unread.length, 0)
  })

  it('HEAD with a streamed answer: no chunks follow the head', async () => {
    const { port } = await start({
      request(req, res) {
        if (req.method === 'HEAD') {
          res.write('abc')
          res.end('def')
        } else res.end('got')
      },
    })
    const raw = await RawHttp.open(port)
    raw.send(`HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n${get('/g')}`)
    await raw.answer({ head: true })
    assert.equal((await raw.answer()).body.toString(), 'got')
    assert.equal(raw.unread.length, 0)
  })

  it('HTTP/1.0: connection: close, and the server ends the socket', async () => {
    const { port } = await start({ request: echo })
    const raw = await RawHttp.open(port)
    raw.send('GET /old HTTP/1.0\r\n\r\n')
    const answer = await raw.answer()
    assert.equal(answer.headers.connection, 'close')
    assert.equal(answer.body.toString(), 'GET /old ')
    await raw.end()
    assert.equal(raw.unread.length, 0)
  })

  it('HTTP/1.0 with a streamed answer: close-delimited, no chunked framing', async () => {
    const { port } = await start({
      request(_req, res) {
        res.write('part1 ')
        res.end('part2')
      },
    })
    const raw = await RawHttp.open(port)
    raw.send('GET /old HTTP/1.0\r\n\r\n')
    await raw.end()
    const answer = await raw.answer()
    assert.equal(answer.headers['transfer-encoding'], undefined)
    assert.equal(answer.headers['content-length'], undefined)
    assert.equal(answer.headers.connection, 'close')
    assert.equal(answer.body.toString(), 'part1 part2')
  })

  it('connection: close from an HTTP/1.1 client: the answer says so and the server ends the socket', async () => {
    const { port } = await start({ request: echo })
    const raw = await RawHttp.open(port)
    raw.send(get('/bye', 'Connection: keep-alive, close\r\n'))
    const answer = await raw.answer()
    assert.equal(answer.headers.connection, 'close')
    await raw.end()
  })

  it('204 with a body given to end(): no body bytes on the wire (the next answer parses)', async () => {
    const { port } = await start({
      request(req, res) {
        if (req.url === '/none') res.writeHead(204).end('oops')
        else res.end('next')
      },
    })
    const raw = await RawHttp.open(port)
    raw.send(get('/none') + get('/next'))
    assert.equal((await raw.answer()).status, 204)
    assert.equal((await raw.answer({ ms: 2000 })).body.toString(), 'next')
  })
})

describe('own port: upgrade and no handler', () => {
  it('a WebSocket upgrade on a connection that served a plain GET: 101, then frames reach message()', async () => {
    const messages = new EventQueue<string>()
    const { port } = await start({
      request: echo,
      message(_ws, data) {
        messages.push(String(data))
      },
    })
    const raw = await RawHttp.open(port)
    raw.send(get('/plain'))
    assert.equal((await raw.answer()).body.toString(), 'GET /plain ')
    raw.send(
      'GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        `Sec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
    )
    const switched = await raw.answer({ head: true })
    assert.equal(switched.statusLine, 'HTTP/1.1 101 Switching Protocols')
    assert.equal(switched.headers['sec-websocket-accept'], computeAcceptKey(KEY))
    raw.send(clientFrame(0x1, 'hello over keep-alive'))
    assert.equal(await messages.next(3000, 'the message'), 'hello over keep-alive')
  })

  it('a plain request without a request handler gets 426', async () => {
    const { port } = await start({})
    const raw = await RawHttp.open(port)
    raw.send(get('/'))
    assert.equal((await raw.answer()).status, 426)
  })
})

describe('own port: leaving clients, bad headers, errors, deadlines', () => {
  it('the client leaves while the answer is held: close is emitted and a later end() does not throw', async () => {
    const held = new EventQueue<RallyHttpResponse>()
    const { port } = await start({
      request(req, res) {
        if (req.url === '/poll') held.push(res)
        else res.end('ok')
      },
    })
    const raw = await RawHttp.open(port)
    raw.send(get('/poll'))
    const res = await held.next()
    const closed = once(res, 'close')
    raw.socket.destroy()
    await closed
    assert.doesNotThrow(() => res.end('x'))
    await stillServes(port)
  })

  it('setHeader with CR LF in a value throws TypeError; the connection serves on', async () => {
    const thrown: unknown[] = []
    const { port } = await start({
      request(req, res) {
        if (req.url === '/inject') {
          try {
            res.setHeader('x', 'a\r\nb: c')
          } catch (error) {
            thrown.push(error)
          }
          // Not caught: the port answers 500.
          res.setHeader('y', 'd\ne')
        }
        res.end('fine')
      },
    })
    const raw = await RawHttp.open(port)
    raw.send(get('/inject'))
    const answer = await raw.answer()
    assert.equal(answer.status, 500)
    assert.equal(answer.headers.b, undefined)
    assert.equal(thrown.length, 1)
    assert.ok(thrown[0] instanceof TypeError)
    raw.send(get('/next'))
    assert.equal((await raw.answer()).body.toString(), 'fine')
  })

  it('a handler that throws: 500, reported, and the connection and port keep working', async () => {
    const { port, errors } = await start({
      request(req, res) {
        if (req.url === '/throw') throw new Error('handler broke')
        res.end('fine')
      },
    })
    const raw = await RawHttp.open(port)
    raw.send(get('/throw'))
    assert.equal((await raw.answer()).status, 500)
    assert.equal((errors[0] as Error).message, 'handler broke')
    raw.send(get('/next'))
    assert.equal((await raw.answer()).body.toString(), 'fine')
    await stillServes(port)
  })

  it('an idle keep-alive connection is ended after handshakeTimeout', async () => {
    const { port } = await start({ request: echo, handshakeTimeout: 300 })
    const raw = await RawHttp.open(port)
    raw.send(get('/once'))
    await raw.answer()
    // The deadline sweep runs once a second.
    await withTimeout(raw.closed, 3000, 'the idle connection to close')
    assert.equal(raw.unread.length, 0)
  })

  it('a second request whose head stalls half-way gets 408', async () => {
    const { port } = await start({ request: echo, handshakeTimeout: 300 })
    const raw = await RawHttp.open(port)
    raw.send(get('/once'))
    await raw.answer()
    raw.send('GET /stall HTTP/1.1\r\nHo')
    const answer = await raw.answer({ ms: 3000 })
    assert.equal(answer.status, 408)
    await raw.end()
  })

  it('a body that stalls half-way gets 408', async () => {
    const { port } = await start({ request: echo, handshakeTimeout: 300 })
    const raw = await RawHttp.open(port)
    raw.send('POST /stall HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc')
    assert.equal((await raw.answer({ ms: 3000 })).status, 408)
  })

  it('a first head that stalls half-way gets 408 (the port’s own head timer)', async () => {
    const { port } = await start({ request: echo, handshakeTimeout: 300 })
    const raw = await RawHttp.open(port)
    raw.send('GET /stall HTTP/1.1\r\nHo')
    assert.equal((await raw.answer({ ms: 3000 })).status, 408)
  })
})
