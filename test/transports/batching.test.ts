/**
 * The HTTP transports write a session's envelopes once per turn of the event loop: publications
 * made in one step reach an SSE stream as one HTTP chunk (read here from a raw socket, where the
 * chunked framing is visible) and a held poll as one answer carrying all of them, instead of a
 * chunk or an answer for the first and the rest later.
 */
import assert from 'node:assert/strict'
import { connect, type Socket } from 'node:net'
import { after, before, describe, test } from 'node:test'
import {
  HTTP_KINDS,
  handled,
  openSession,
  PATH,
  startTransportServer,
  type TransportServer,
  within,
} from './helpers.js'

const COMMANDS = [
  { id: 1, cmd: 'connect', version: 1 },
  { id: 2, cmd: 'subscribe', channel: 'chat:batch' },
]

async function send(
  url: string,
  session: { session: string; token: string },
  body: unknown[],
): Promise<void> {
  const response = await fetch(`${url}/send?session=${session.session}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-rally-token': session.token },
    body: JSON.stringify(body),
  })
  assert.equal(response.status, 204)
}

/** The chunks of a chunked HTTP/1.1 response body read from a raw socket (RFC 9112 §7.1). */
class ChunkReader {
  private text = ''
  private bodyAt = -1
  private parsed = 0
  readonly chunks: string[] = []
  private waiter: (() => void) | undefined
  constructor(socket: Socket) {
    socket.setEncoding('latin1')
    socket.on('data', (data: string) => {
      this.text += data
      this.parse()
      this.waiter?.()
    })
  }

  private parse(): void {
    if (this.bodyAt === -1) {
      // The stream's response; a pipelined request's answer before it is skipped.
      const start = this.text.indexOf('HTTP/1.1 200 ')
      const end = start === -1 ? -1 : this.text.indexOf('\r\n\r\n', start)
      if (end === -1) return
      assert.match(this.text.slice(0, end), /transfer-encoding: chunked/i)
      this.bodyAt = end + 4
      this.parsed = this.bodyAt
    }
    for (;;) {
      const line = this.text.indexOf('\r\n', this.parsed)
      if (line === -1) return
      const size = Number.parseInt(this.text.slice(this.parsed, line), 16)
      const dataEnd = line + 2 + size
      if (this.text.length < dataEnd + 2) return
      assert.equal(this.text.slice(dataEnd, dataEnd + 2), '\r\n', 'a chunk ends with CRLF')
      this.chunks.push(this.text.slice(line + 2, dataEnd))
      this.parsed = dataEnd + 2
    }
  }

  /** Resolves once a chunk matches `match`, with its index. */
  async until(match: (chunk: string) => boolean): Promise<number> {
    for (;;) {
      const index = this.chunks.findIndex(match)
      if (index !== -1) return index
      await new Promise<void>((resolve) => {
        this.waiter = resolve
      })
      this.waiter = undefined
    }
  }
}

for (const http of HTTP_KINDS)
  describe(`HTTP transports on ${http}: one write per session and turn`, () => {
    let server: TransportServer
    before(async () => {
      server = await startTransportServer({}, {}, http)
    })
    after(async () => {
      await server.close()
    })

    /** An SSE session subscribed to chat:batch, its stream read from a raw socket. */
    async function subscribedStream(): Promise<{ socket: Socket; reader: ChunkReader }> {
      const session = await openSession(server.url, 'sse')
      await send(server.url, session, COMMANDS)
      const socket = connect(server.port, '127.0.0.1')
      const reader = new ChunkReader(socket)
      socket.write(`GET ${PATH}/sse?session=${session.session} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`)
      await within(
        reader.until((chunk) => chunk.includes('"id":2,"result"')),
        10_000,
        'the subscribe reply',
      )
      return { socket, reader }
    }

    test('publications made in one step reach an SSE stream in one chunk, in order', async () => {
      const { socket, reader } = await subscribedStream()
      const before = reader.chunks.length
      for (let n = 0; n < 5; n++) void server.realtime.publish('chat:batch', { n })
      const index = await within(
        reader.until((chunk) => chunk.includes('"push":"pub"')),
        10_000,
        'the publications',
      )
      assert.ok(index >= before)
      const events = reader.chunks[index]!.split('\n\n').filter((event) => event.includes('"push":"pub"'))
      assert.equal(events.length, 5, `one chunk with every publication: ${reader.chunks[index]}`)
      const data = events.map((event) => JSON.parse(event.slice(event.indexOf('data: ') + 6)).data.n)
      assert.deepEqual(data, [0, 1, 2, 3, 4])
      socket.destroy()
    })

    test('two streams get the same non-ASCII publications, each event id their own, chunk sizes in bytes', async () => {
      // Each publication is encoded to UTF-8 once and shared by every stream (ids differ per
      // session): the bytes must be the text's, and each chunk's size line count them, not characters.
      const streams = [await subscribedStream(), await subscribedStream()]
      const texts = ['café', 'naïve – 😀', 'plain']
      for (const text of texts) void server.realtime.publish('chat:batch', { text })
      for (const { socket, reader } of streams) {
        const index = await within(
          reader.until((chunk) => chunk.includes('"push":"pub"')),
          10_000,
          'the publications',
        )
        // ChunkReader reads latin1 (one character per byte) and checks each chunk's size line.
        const chunk = Buffer.from(reader.chunks[index]!, 'latin1').toString('utf8')
        const events = chunk.split('\n\n').filter((event) => event.includes('"push":"pub"'))
        assert.deepEqual(
          events.map((event) => JSON.parse(event.slice(event.indexOf('data: ') + 6)).data.text),
          texts,
        )
        const ids = events.map((event) => Number(/^id: (\d+)$/m.exec(event)?.[1]))
        assert.deepEqual(ids, [ids[0]!, ids[0]! + 1, ids[0]! + 2])
        socket.destroy()
      }
    })

    test('a stream requested behind a pipelined held poll waits for it, its headers first', async () => {
      const stream = await openSession(server.url, 'sse')
      await send(server.url, stream, COMMANDS)
      const polled = await openSession(server.url, 'long-polling')
      const socket = connect(server.port, '127.0.0.1')
      const reader = new ChunkReader(socket)
      let raw = ''
      socket.on('data', (data: string) => {
        raw += data
      })
      // Both requests in one write: the stream's response waits for the held poll's (RFC 9112
      // §9.3.2), so nothing of the stream may reach the socket before the poll's answer is out.
      // node:http reads both at once (the stream's handler runs, its answer queued behind the
      // poll's); Rally's own port reads the second once the first is answered.
      const bothHandled = handled(server.transports, http === 'node:http' ? 2 : 1)
      socket.write(
        `GET ${PATH}/poll?session=${polled.session} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n` +
          `GET ${PATH}/sse?session=${stream.session} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`,
      )
      await within(bothHandled, 10_000, 'the pipelined requests')
      // The poll's session leaves: its held poll is answered (404, reconnect), then the stream goes.
      const closed = await fetch(`${server.url}/close?session=${polled.session}`, {
        method: 'POST',
        headers: { 'x-rally-token': polled.token },
      })
      assert.equal(closed.status, 204)
      await within(
        reader.until((chunk) => chunk.includes('"id":2,"result"')),
        10_000,
        'the subscribe reply on the stream',
      )
      assert.match(raw, /^HTTP\/1\.1 404 /)
      assert.match(reader.chunks[0]!, /^retry: 1000\n\nevent: ready\n/)
      socket.destroy()
    })

    test('a held poll answers with every publication made in one step', async () => {
      const session = await openSession(server.url, 'long-polling')
      await send(server.url, session, COMMANDS)
      let ack = 0
      for (let subscribed = false; !subscribed; ) {
        const batch = (await (
          await fetch(`${server.url}/poll?session=${session.session}&ack=${ack}`)
        ).json()) as {
          first: number
          messages: { id?: number; result?: unknown }[]
        }
        subscribed = batch.messages.some((m) => m.id === 2 && m.result !== undefined)
        ack = Math.max(ack, batch.first + batch.messages.length - 1)
      }
      // The server's handler runs before this listener: once it fires, the poll is held.
      const held = handled(server.transports)
      const answer = fetch(`${server.url}/poll?session=${session.session}&ack=${ack}`)
      await held
      for (let n = 0; n < 5; n++) void server.realtime.publish('chat:batch', { n })
      const response = await within(answer, 10_000, 'the held poll')
      assert.equal(response.status, 200)
      const batch = (await response.json()) as {
        first: number
        messages: { push?: string; data?: { n: number } }[]
      }
      assert.equal(batch.first, ack + 1)
      assert.deepEqual(
        batch.messages.map((m) => [m.push, m.data?.n]),
        [0, 1, 2, 3, 4].map((n) => ['pub', n]),
      )
    })
  })
