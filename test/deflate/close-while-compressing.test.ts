/**
 * A close that arrives while compressed frames are still queued (issue 10, bug 1): the frames
 * queued before the close echo go out first, then the close echo, then TCP ends — the peer sees
 * every message and a clean 1000 (RFC 6455 7.1.2: the close frame is the last frame sent;
 * 7.1.1: TCP is closed only after it). Messages of 300 KiB are compressed in the thread pool, so
 * they are still queued when the close is handled.
 */
import assert from 'node:assert/strict'
import { Buffer } from 'node:buffer'
import { afterEach, describe, test } from 'node:test'
import type { CloseEvent } from '../../src/index.js'
import { encodeFrameHeader } from '../../src/protocol/index.js'
import {
  compressibleText,
  deflate,
  disposeAll,
  KiB,
  messageQueue,
  once,
  openClient,
  Queue,
  RawServer,
  RSV1,
  randomBytes,
  randomText,
  startServer,
} from './helpers.js'

afterEach(disposeAll)

const SIZE = 300 * KiB

type Payload = { kind: 'text' | 'binary'; make(): string | Buffer }
const payloads: Payload[] = [
  { kind: 'binary', make: () => randomBytes(SIZE) },
  { kind: 'text', make: () => randomText(SIZE) },
]
const takeovers = [
  {
    name: 'without context takeover',
    deflate: { serverNoContextTakeover: true, clientNoContextTakeover: true },
  },
  {
    name: 'with context takeover',
    deflate: { serverNoContextTakeover: false, clientNoContextTakeover: false },
  },
]

function bytesOf(data: string | Buffer): Buffer {
  return typeof data === 'string' ? Buffer.from(data) : data
}

describe('server: the peer closes while compressed messages are queued', () => {
  for (const { name, deflate } of takeovers) {
    for (const payload of payloads) {
      test(`${payload.kind}, ${name}: message, then close echo, then TCP end`, async () => {
        const sent = payload.make()
        const statuses: string[] = []
        const { url } = await startServer({
          perMessageDeflate: deflate,
          message(ws) {
            statuses.push(ws.send(sent, { compress: true }))
          },
          error() {},
        })
        const client = await openClient(url, { perMessageDeflate: deflate })
        const messages = messageQueue(client)
        const closed = once<CloseEvent>(client, 'close')
        client.send('go')
        client.close(1000, 'bye')
        const message = await messages.next(5000, 'the 300 KiB message')
        assert.equal(message.binary, payload.kind === 'binary')
        assert.ok(message.data.equals(bytesOf(sent)), 'the message arrives whole')
        const event = await closed
        assert.equal(event.code, 1000)
        assert.equal(event.wasClean, true)
        assert.equal(statuses.length, 1)
        assert.notEqual(statuses[0], 'dropped')
      })
    }

    test(`fragmented message queued behind a compressed one, ${name}`, async () => {
      const big = randomBytes(SIZE)
      const { url } = await startServer({
        perMessageDeflate: deflate,
        message(ws) {
          ws.send(big, { compress: true })
          ws.sendFragment('frag-1 ', { binary: false, first: true, fin: false })
          ws.sendFragment('frag-2 ', { binary: false, first: false, fin: false })
          ws.sendFragment(compressibleText(2 * KiB), { binary: false, first: false, fin: true })
        },
        error() {},
      })
      const client = await openClient(url, { perMessageDeflate: deflate })
      const messages = messageQueue(client)
      const closed = once<CloseEvent>(client, 'close')
      client.send('go')
      client.close(1000)
      assert.ok((await messages.next(5000, 'the compressed message')).data.equals(big))
      const second = await messages.next(5000, 'the fragmented message')
      assert.equal(second.text, `frag-1 frag-2 ${compressibleText(2 * KiB)}`)
      const event = await closed
      assert.equal(event.code, 1000)
      assert.equal(event.wasClean, true)
    })
  }
})

describe('client: the server closes while the client compresses', () => {
  for (const { name, deflate } of takeovers) {
    for (const payload of payloads) {
      test(`${payload.kind}, ${name}: the server gets the message, both sides close cleanly`, async () => {
        const sent = payload.make()
        const received = new Queue<{ data: Buffer; isBinary: boolean }>()
        const serverClosed = new Queue<number>()
        const { url } = await startServer({
          perMessageDeflate: deflate,
          decodeText: false,
          message(ws, data, isBinary) {
            // The first message asks for the close; the large one is then still being compressed
            // on the client when the close frame reaches it.
            if (received.all.length === 0 && !isBinary && data.toString() === 'go') ws.close(1000, 'done')
            received.push({ data: data as Buffer, isBinary })
          },
          close(_ws, code) {
            serverClosed.push(code)
          },
          error() {},
        })
        const client = await openClient(url, { perMessageDeflate: deflate })
        const closed = once<CloseEvent>(client, 'close')
        client.send('go')
        client.send(sent)
        assert.equal((await received.next(5000, "the client's 'go'")).data.toString(), 'go')
        const message = await received.next(5000, 'the large message on the server')
        assert.equal(message.isBinary, payload.kind === 'binary')
        assert.ok(message.data.equals(bytesOf(sent)))
        const event = await closed
        assert.equal(event.code, 1000)
        assert.equal(event.wasClean, true)
        assert.equal(await serverClosed.next(5000, 'the server close handler'), 1000)
      })
    }
  }
})

describe('client: TCP ends while a received message is still being decompressed', () => {
  for (const payload of payloads) {
    test(`${payload.kind}: the message, then the close frame, are delivered before the close event`, async () => {
      // A peer that writes a compressed message, its close frame and its FIN at once: the client
      // decompresses the message off the event loop, and the TCP end arrives meanwhile.
      const raw = await RawServer.start(
        'permessage-deflate; server_no_context_takeover; client_no_context_takeover',
      )
      const client = await openClient(raw.url)
      const messages = messageQueue(client)
      const closed = once<CloseEvent>(client, 'close')
      const { socket } = await raw.connections.next(5000, 'the raw connection')
      const sent = payload.make()
      const compressed = deflate(sent)
      const opcode = payload.kind === 'binary' ? 0x2 : 0x1
      socket.write(Buffer.concat([encodeFrameHeader(opcode, compressed.length, { rsv: RSV1 }), compressed]))
      socket.write(Buffer.from([0x88, 0x02, 0x03, 0xe8]))
      socket.end()
      const message = await messages.next(5000, 'the compressed message')
      assert.ok(message.data.equals(bytesOf(sent)))
      const event = await closed
      assert.equal(event.code, 1000)
      assert.equal(event.wasClean, true)
    })
  }
})
