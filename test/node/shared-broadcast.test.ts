/**
 * Publications shared among subscribers: the socket driver hands subscribers whose turn holds the
 * same prepared frames, in the same order, one buffer of them joined. What each subscriber reads
 * must still be exactly its own frames, in the order they were sent — when another subscriber's
 * turn holds more of them, fewer, others in between (its own sends, another topic's publications)
 * or a frame too large to gather — and the bytes held for the end of the turn count in
 * `bufferedAmount`, down to a reader that does not read at all. The same buffer goes to TLS
 * sockets and HTTP/2 streams alike.
 */
import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import { type RallyServer, type ServerWebSocket, WebSocket } from '../../src/index.js'
import { Opcode } from '../../src/protocol/index.js'
import { makeCertificate, withH2Server } from '../http2/helpers.js'
import { nextDomEvent } from '../support/events.js'
import { disposeAll, EventQueue, RawClient, startServer, turn, waitUntil } from './helpers.js'

interface Subscriber {
  /** The client's side: a raw socket reading the server's frames byte for byte. */
  raw: RawClient
  /** The server's side of the same connection. */
  ws: ServerWebSocket<undefined>
}

interface Setup {
  server: RallyServer<undefined>
  drains: EventQueue<ServerWebSocket<undefined>>
  open(path: string): Promise<Subscriber>
}

/** A server whose sockets subscribe to the topics their path names: `/a+b` to 'a' and 'b'. */
async function setUp(): Promise<Setup> {
  const opens = new EventQueue<ServerWebSocket<undefined>>()
  const drains = new EventQueue<ServerWebSocket<undefined>>()
  const { server, port } = await startServer({
    // A reader that stops reading builds up megabytes here: it must be kept, not dropped.
    maxBackpressure: 256 * 1024 * 1024,
    open(ws) {
      for (const topic of ws.url.slice(1).split('+')) ws.subscribe(topic)
      opens.push(ws)
    },
    drain(ws) {
      drains.push(ws)
    },
  })
  return {
    server,
    drains,
    async open(path) {
      const raw = await RawClient.open(port, { path })
      return { raw, ws: await opens.next() }
    },
  }
}

/** Reads `count` frames and returns their payloads as text (all must be unfragmented text). */
async function readTexts(raw: RawClient, count: number): Promise<string[]> {
  const texts: string[] = []
  for (let i = 0; i < count; i++) {
    const frame = await raw.readFrame()
    assert.equal(frame.opcode, Opcode.Text)
    assert.ok(frame.fin)
    texts.push(frame.payload.toString('latin1'))
  }
  return texts
}

/** Text of `length` characters that starts with `label` (payloads of every length encoding). */
function text(label: string, length = label.length): string {
  return label.padEnd(length, `.${label}`)
}

/** Bytes of an unmasked text frame with a `length`-byte payload. */
function frameSize(length: number): number {
  return (length < 126 ? 2 : length < 65536 ? 4 : 10) + length
}

describe('publications shared among subscribers in one turn', () => {
  after(disposeAll)

  it('subscribers given the same publications in one turn read exactly those frames, in order', async () => {
    const { server, open } = await setUp()
    const first = await open('/a')
    const second = await open('/a')
    // One more frame at the end of its turn than the others hold: it extends what they share.
    const more = await open('/a+b')

    // 7-bit, 16-bit length (a gathered frame of nearly GATHER_FRAME_LIMIT), then a short one.
    const turn1 = [text('p1'), text('p2', 300), text('p3', 4000)]
    const extra = text('only a+b', 50)
    for (const message of turn1) assert.equal(server.publish('a', message), 3)
    assert.equal(server.publish('b', extra), 1)
    const held = turn1.reduce((sum, message) => sum + frameSize(message.length), 0)
    assert.equal(first.ws.bufferedAmount, held, 'the turn held counts in bufferedAmount')
    assert.equal(second.ws.bufferedAmount, held)
    assert.equal(more.ws.bufferedAmount, held + frameSize(extra.length))

    // A frame too large to gather in the middle of the turn: what is shared goes before it.
    const turn2 = [text('q1'), text('q2 large', 6000), text('q3'), text('q4')]
    await turn()
    for (const message of turn2) assert.equal(server.publish('a', message), 3)

    assert.deepEqual(await readTexts(first.raw, 7), [...turn1, ...turn2])
    assert.deepEqual(await readTexts(second.raw, 7), [...turn1, ...turn2])
    assert.deepEqual(await readTexts(more.raw, 8), [...turn1, extra, ...turn2])
    // Nothing more was sent: a ping sent now is the next frame on each connection.
    for (const { raw, ws } of [first, second, more]) {
      ws.ping('end')
      const ping = await raw.readFrame()
      assert.equal(ping.opcode, Opcode.Ping)
      assert.equal(ping.payload.toString(), 'end')
      assert.equal(ws.bufferedAmount, 0)
    }
  })

  it('a subscriber whose turn also holds its own frames, or another topic, reads them in call order', async () => {
    const { server, open } = await setUp()
    const plain = await open('/a')
    const ownBetween = await open('/a')
    const ownFirst = await open('/a')
    const ownLast = await open('/a')
    // Two subscribers of 'a' and 'b': a turn that parts from the others' after the first frame.
    const both = await open('/a+b')
    const bothToo = await open('/a+b')
    const plainToo = await open('/a')

    ownFirst.ws.send('own first')
    server.publish('a', 'p1')
    ownBetween.ws.send(text('own between', 200))
    server.publish('b', 'b1')
    server.publish('a', 'p2')
    server.publish('a', 'p3')
    ownLast.ws.send('own last')

    assert.deepEqual(await readTexts(plain.raw, 3), ['p1', 'p2', 'p3'])
    assert.deepEqual(await readTexts(plainToo.raw, 3), ['p1', 'p2', 'p3'])
    assert.deepEqual(await readTexts(ownBetween.raw, 4), ['p1', text('own between', 200), 'p2', 'p3'])
    assert.deepEqual(await readTexts(ownFirst.raw, 4), ['own first', 'p1', 'p2', 'p3'])
    assert.deepEqual(await readTexts(ownLast.raw, 4), ['p1', 'p2', 'p3', 'own last'])
    assert.deepEqual(await readTexts(both.raw, 4), ['p1', 'b1', 'p2', 'p3'])
    assert.deepEqual(await readTexts(bothToo.raw, 4), ['p1', 'b1', 'p2', 'p3'])

    // The next turn starts afresh: the same frames again, shared again, and a close after them.
    server.publish('a', 'p4')
    server.publish('a', 'p5')
    plain.ws.close(1000, 'done')
    assert.deepEqual(await readTexts(plain.raw, 2), ['p4', 'p5'])
    const close = await plain.raw.readFrame()
    assert.equal(close.opcode, Opcode.Close)
    assert.equal(close.payload.readUInt16BE(0), 1000)
    assert.deepEqual(await readTexts(plainToo.raw, 2), ['p4', 'p5'])
  })

  it('a subscriber that stops reading gets everything in order once it reads, after a drain', async () => {
    const { server, drains, open } = await setUp()
    const reader = await open('/a')
    const stalled = await open('/a')
    stalled.raw.socket.pause()

    const message = (i: number): string => text(`m${i}`, 1000)
    const perTurn = 3 * frameSize(1000)
    let sent = 0
    // Turns of 3 publications until the stalled socket's writes back up well past its kernel
    // buffers; the reader reads along, so only the stalled one holds bytes.
    while (stalled.ws.bufferedAmount < 1024 * 1024) {
      const before = stalled.ws.bufferedAmount
      for (let j = 0; j < 3; j++) server.publish('a', message(sent++))
      assert.equal(stalled.ws.bufferedAmount - before, perTurn, 'the turn counts in bufferedAmount')
      assert.deepEqual(await readTexts(reader.raw, 3), [sent - 3, sent - 2, sent - 1].map(message))
      await turn()
    }
    assert.equal(reader.ws.bufferedAmount, 0)
    assert.equal(stalled.ws.send('own'), 'buffered', 'a backed-up socket says so')

    stalled.raw.socket.resume()
    const texts = await readTexts(stalled.raw, sent + 1)
    assert.deepEqual(texts, [...Array.from({ length: sent }, (_, i) => message(i)), 'own'])
    assert.equal(await drains.next(), stalled.ws)
    await waitUntil(() => stalled.ws.bufferedAmount === 0, 5000, 'the stalled socket to drain')
  })

  it('subscribers over TLS and over HTTP/2 streams read the same publications in order', async () => {
    const certificate = makeCertificate()
    try {
      await withH2Server(
        certificate,
        {
          open(ws) {
            ws.subscribe('a')
          },
        },
        async (h) => {
          // Two TLS sockets (HTTP/1.1 upgrade) and two HTTP/2 streams.
          const clients: { ws: WebSocket; texts: string[] }[] = []
          for (const http2 of [false, false, true, true]) {
            const ws = new WebSocket(`wss://localhost:${h.port}/`, [], {
              http2,
              tls: { ca: certificate.cert },
              perMessageDeflate: false,
            })
            const client = { ws, texts: [] as string[] }
            ws.addEventListener('message', (event) => client.texts.push(String((event as MessageEvent).data)))
            clients.push(client)
            await nextDomEvent(ws, 'open', 10_000)
          }
          await waitUntil(() => h.rally.subscriberCount('a') === 4, 5000, 'four subscribers')
          const { http1, http2 } = h.rally.stats().transports
          assert.deepEqual({ http1, http2 }, { http1: 2, http2: 2 })

          const sent = [text('t1'), text('t2', 300), text('t3', 4000), text('t4', 20)]
          for (const message of sent) assert.equal(h.rally.publish('a', message), 4)
          for (const [i, client] of clients.entries()) {
            await waitUntil(() => client.texts.length >= sent.length, 10_000, `client ${i}'s messages`)
            assert.deepEqual(client.texts, sent, `client ${i}`)
          }
          for (const { ws } of clients) ws.close()
        },
      )
    } finally {
      certificate.dispose()
    }
  })
})
