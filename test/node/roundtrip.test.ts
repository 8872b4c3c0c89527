/**
 * Server ↔ client round trips over real sockets: text and binary at the length-encoding
 * boundaries (0, 125, 126, 65535, 65536) and 16 MiB, both binary types, byte-exact; and order.
 */
import assert from 'node:assert/strict'
import { Buffer } from 'node:buffer'
import { randomFillSync } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import type { ServerWebSocket, WebSocket } from '../../src/index.js'
import {
  collectMessages,
  disposeAll,
  EventQueue,
  openClient,
  type StartedServer,
  startServer,
  withTimeout,
} from './helpers.js'

const SIZES = [0, 125, 126, 65535, 65536, 16 * 1024 * 1024]

interface Received {
  ws: ServerWebSocket<undefined>
  data: string | Buffer
  isBinary: boolean
}

/** ASCII text of exactly `size` bytes, varied so that a shifted or repeated chunk shows. */
function asciiText(size: number): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-_'
  const bytes = Buffer.allocUnsafe(size)
  for (let i = 0; i < size; i++) bytes[i] = alphabet.charCodeAt((i * 7 + (i >>> 10)) % alphabet.length)
  return bytes.toString('latin1')
}

function randomBytes(size: number): Buffer {
  const bytes = Buffer.allocUnsafe(size)
  // randomFillSync takes at most 2^31-1 bytes per call; 16 MiB is fine.
  if (size > 0) randomFillSync(bytes)
  return bytes
}

describe('round trips (echo server)', () => {
  let started: StartedServer<undefined>
  const received = new EventQueue<Received>()

  before(async () => {
    started = await startServer({
      message(ws, data, isBinary) {
        received.push({ ws, data, isBinary })
        // Echo as received: text as text, binary as binary.
        ws.send(data, { binary: isBinary })
      },
    })
  })
  after(disposeAll)

  for (const size of SIZES) {
    it(`binary ${size} bytes, binaryType 'arraybuffer'`, async () => {
      const ws = await openClient(started.url)
      ws.binaryType = 'arraybuffer'
      const messages = collectMessages(ws)
      const payload = randomBytes(size)
      ws.send(payload)
      const atServer = await received.next(10_000, 'the server message')
      assert.equal(atServer.isBinary, true)
      assert.ok(Buffer.isBuffer(atServer.data))
      assert.equal(atServer.data.length, size)
      assert.ok(payload.equals(atServer.data), 'server received the exact bytes')
      const event = await messages.next(10_000, 'the echo')
      assert.ok(event.data instanceof ArrayBuffer, 'arraybuffer binaryType gives an ArrayBuffer')
      assert.equal(event.data.byteLength, size)
      assert.ok(payload.equals(Buffer.from(event.data)), 'client received the exact bytes')
      ws.close()
    })

    it(`binary ${size} bytes, binaryType 'blob' (default)`, async () => {
      const ws = await openClient(started.url)
      assert.equal(ws.binaryType, 'blob')
      const messages = collectMessages(ws)
      const payload = randomBytes(size)
      ws.send(new Uint8Array(payload.buffer, payload.byteOffset, payload.length))
      const atServer = await received.next(10_000, 'the server message')
      assert.equal(atServer.isBinary, true)
      assert.ok(payload.equals(atServer.data as Buffer))
      const event = await messages.next(10_000, 'the echo')
      assert.ok(event.data instanceof Blob, 'blob binaryType gives a Blob')
      assert.equal(event.data.size, size)
      const bytes = Buffer.from(await event.data.arrayBuffer())
      assert.ok(payload.equals(bytes), 'client received the exact bytes')
      ws.close()
    })

    it(`text ${size} bytes`, async () => {
      const ws = await openClient(started.url)
      const messages = collectMessages(ws)
      const text = asciiText(size)
      ws.send(text)
      const atServer = await received.next(10_000, 'the server message')
      assert.equal(atServer.isBinary, false)
      assert.equal(typeof atServer.data, 'string')
      assert.equal((atServer.data as string).length, size)
      assert.ok(atServer.data === text, 'server received the exact text')
      const event = await messages.next(10_000, 'the echo')
      assert.equal(typeof event.data, 'string')
      assert.equal(event.data.length, size)
      assert.ok(event.data === text, 'client received the exact text')
      ws.close()
    })
  }

  it('text with multi-byte UTF-8 (2, 3 and 4-byte sequences) at the 126/65536 boundaries', async () => {
    const ws = await openClient(started.url)
    const messages = collectMessages(ws)
    // 'é' is 2 bytes, '€' 3, '😀' 4 (a surrogate pair in JS).
    const unit = 'aé€😀'
    for (const repeat of [1, 14, 6554]) {
      const text = unit.repeat(repeat)
      ws.send(text)
      const atServer = await received.next(5000, 'the server message')
      assert.equal(atServer.data, text)
      assert.equal(Buffer.byteLength(atServer.data as string), 10 * repeat)
      const event = await messages.next(5000, 'the echo')
      assert.equal(event.data, text)
    }
    ws.close()
  })

  it('server-sent binary from an ArrayBuffer, a DataView and a Uint8Array view with an offset', async () => {
    const ws = await openClient(started.url)
    ws.binaryType = 'arraybuffer'
    const messages = collectMessages(ws)
    ws.send('who')
    const target = (await received.next(5000, 'the server message')).ws
    await messages.next(5000, 'the echo')
    const backing = Buffer.from([9, 8, 7, 6, 5, 4, 3, 2, 1, 0])
    assert.equal(target.send(backing.buffer.slice(backing.byteOffset, backing.byteOffset + 10)), 'sent')
    assert.equal(target.send(new DataView(backing.buffer, backing.byteOffset + 2, 3)), 'sent')
    assert.equal(target.send(backing.subarray(7)), 'sent')
    assert.equal(target.send('as binary', { binary: true }), 'sent')
    assert.deepEqual([...new Uint8Array((await messages.next()).data)], [9, 8, 7, 6, 5, 4, 3, 2, 1, 0])
    assert.deepEqual([...new Uint8Array((await messages.next()).data)], [7, 6, 5])
    assert.deepEqual([...new Uint8Array((await messages.next()).data)], [2, 1, 0])
    assert.equal(Buffer.from((await messages.next()).data).toString(), 'as binary')
    ws.close()
  })
})

describe('message order', () => {
  let started: StartedServer<undefined>
  const atServer: string[] = []
  const sockets = new EventQueue<ServerWebSocket<undefined>>()

  before(async () => {
    started = await startServer({
      open(ws) {
        sockets.push(ws)
      },
      message(ws, data, isBinary) {
        atServer.push(isBinary ? `bin:${(data as Buffer).readUInt32BE(0)}` : (data as string))
        ws.send(data, { binary: isBinary })
      },
    })
  })
  after(disposeAll)

  it('1000 small messages arrive in order both ways (text and binary interleaved)', async () => {
    const ws: WebSocket = await openClient(started.url)
    await sockets.next(5000, 'the server socket')
    ws.binaryType = 'arraybuffer'
    const echoes: string[] = []
    const allEchoed = new Promise<void>((resolve) => {
      ws.addEventListener('message', (event) => {
        const data = (event as MessageEvent).data
        echoes.push(typeof data === 'string' ? data : `bin:${new DataView(data as ArrayBuffer).getUint32(0)}`)
        if (echoes.length === 1000) resolve()
      })
    })
    const expected: string[] = []
    for (let i = 0; i < 1000; i++) {
      if (i % 3 === 0) {
        const bytes = new Uint8Array(4)
        new DataView(bytes.buffer).setUint32(0, i)
        ws.send(bytes)
        expected.push(`bin:${i}`)
      } else {
        ws.send(`seq:${i}`)
        expected.push(`seq:${i}`)
      }
    }
    await withTimeout(allEchoed, 10_000, '1000 echoes')
    assert.deepEqual(atServer, expected)
    assert.deepEqual(echoes, expected)
    ws.close()
  })

  it('1000 messages sent by the server in one burst arrive in order', async () => {
    const ws = await openClient(started.url)
    const got: string[] = []
    const all = new Promise<void>((resolve) => {
      ws.addEventListener('message', (event) => {
        got.push((event as MessageEvent).data as string)
        if (got.length === 1001) resolve()
      })
    })
    const target = await sockets.next(5000, 'the server socket')
    target.send('start')
    for (let i = 0; i < 1000; i++) assert.equal(target.send(`s${i}`), 'sent')
    await withTimeout(all, 10_000, '1001 messages')
    assert.deepEqual(got, ['start', ...Array.from({ length: 1000 }, (_, i) => `s${i}`)])
    ws.close()
  })
})
