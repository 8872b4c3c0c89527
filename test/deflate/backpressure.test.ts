/**
 * Bytes waiting for compression are buffered bytes (issue 10, bug 2): messages still being
 * compressed, what waits behind them and messages held behind an open fragmented message count
 * in `bufferedAmount` and in the `maxBackpressure` decision — on the server, the WHATWG client
 * and rallyjs/ws. The process-wide zlib limiter's queue is bounded, and a refused job degrades
 * (sent uncompressed; a refused decompression closes with 1013) instead of queueing without end.
 */
import assert from 'node:assert/strict'
import type { Buffer } from 'node:buffer'
import { once as onceEmitter } from 'node:events'
import type { AddressInfo } from 'node:net'
import { availableParallelism } from 'node:os'
import { afterEach, describe, test } from 'node:test'
import { WebSocketServer } from '../../src/adapters/ws/index.js'
import { DeflateCodec, ZlibBusyError, ZlibLimiter, zlibLimiter } from '../../src/node/deflate.js'
import { Connection } from '../../src/protocol/index.js'
import {
  clientFrame,
  deflate,
  disposeAll,
  KiB,
  MiB,
  messageQueue,
  Op,
  openClient,
  Queue,
  RSV1,
  randomBytes,
  recordingHandler,
  startServer,
  type WrittenFrame,
  withTimeout,
} from './helpers.js'

afterEach(disposeAll)

describe('server: bytes waiting for compression count', () => {
  test('64 sends of 512 KiB in one turn, maxBackpressure 1 MiB: most are dropped, bufferedAmount sees them', async () => {
    const statuses = new Queue<{ statuses: string[]; buffered: number }>()
    const drained = new Queue<number>()
    const done = new Queue<number>()
    const chunk = randomBytes(512 * KiB)
    const { url } = await startServer({
      perMessageDeflate: true,
      maxBackpressure: MiB,
      open(ws) {
        // Compressed in the thread pool: nothing reaches the client before its queue listens.
        const seen: string[] = []
        for (let i = 0; i < 64; i++) seen.push(ws.send(chunk, { compress: true }))
        statuses.push({ statuses: seen, buffered: ws.bufferedAmount })
      },
      drain(ws) {
        drained.push(ws.bufferedAmount)
      },
      message(ws) {
        done.push(ws.bufferedAmount)
      },
      error() {},
    })
    const client = await openClient(url)
    const messages = messageQueue(client)
    const { statuses: seen, buffered } = await statuses.next(5000, 'the 64 sends')
    const accepted = seen.filter((status) => status !== 'dropped').length
    assert.ok(buffered >= MiB, `bufferedAmount right after the sends: ${buffered}`)
    // Each accepted message is 512 KiB: over 1 MiB no more is accepted (without compression the
    // same sends give 2 accepted, 62 dropped).
    assert.ok(accepted >= 2 && accepted <= 3, `accepted ${accepted} of 64: ${seen.join(',')}`)
    // 'buffered' promises a drain, and it comes once the compressed bytes are written.
    assert.equal(seen[0], 'buffered')
    await drained.next(5000, 'the drain promised by a buffered send')
    for (let i = 0; i < accepted; i++)
      assert.ok((await messages.next(5000, `message ${i}`)).data.equals(chunk))
    client.send('all received')
    assert.equal(await done.next(5000, 'the server hearing that all arrived'), 0)
  })

  test('sends held behind an open fragmented message count, and are dropped past maxBackpressure', async () => {
    const result = new Queue<{ statuses: string[]; buffered: number }>()
    const body = randomBytes(100 * KiB)
    const { url } = await startServer({
      perMessageDeflate: false,
      maxBackpressure: 256 * KiB,
      message(ws) {
        ws.sendFragment('first ', { binary: false, first: true, fin: false })
        const statuses = [ws.send(body), ws.send(body), ws.send(body), ws.send(body)]
        const buffered = ws.bufferedAmount
        ws.sendFragment('last', { binary: false, first: false, fin: true })
        result.push({ statuses, buffered })
      },
      error() {},
    })
    const client = await openClient(url)
    const messages = messageQueue(client)
    client.send('start')
    const { statuses, buffered } = await result.next(5000, 'the sends')
    assert.ok(buffered >= 300 * KiB, `held sends in bufferedAmount: ${buffered}`)
    assert.deepEqual(
      statuses.map((status) => status === 'dropped'),
      [false, false, false, true],
    )
    assert.equal((await messages.next(5000, 'the fragmented message')).text, 'first last')
    for (let i = 0; i < 3; i++) assert.ok((await messages.next(5000, `held message ${i}`)).data.equals(body))
  })
})

describe('clients: bytes waiting for compression count', () => {
  test('WHATWG client: bufferedAmount counts messages being compressed until they are sent', async () => {
    const received = new Queue<number>()
    const { url } = await startServer({
      perMessageDeflate: true,
      message(ws, data) {
        received.push((data as Buffer).length)
        if (received.all.length === 4) ws.send('got them')
      },
      error() {},
    })
    const client = await openClient(url)
    const replies = messageQueue(client)
    const chunk = randomBytes(512 * KiB)
    for (let i = 0; i < 4; i++) client.send(chunk)
    assert.ok(client.bufferedAmount >= 4 * 512 * KiB, `bufferedAmount ${client.bufferedAmount}`)
    assert.equal((await replies.next(5000, "the server's reply")).text, 'got them')
    assert.equal(client.bufferedAmount, 0)
  })

  test('rallyjs/ws: a server socket and a client socket report bytes waiting for compression', async () => {
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', perMessageDeflate: true })
    let client: InstanceType<typeof import('../../src/adapters/ws/index.js').WebSocket> | undefined
    try {
      await onceEmitter(wss, 'listening')
      const port = (wss.address() as AddressInfo).port
      const serverSide = new Queue<number>()
      const chunk = randomBytes(512 * KiB)
      wss.on('connection', (ws) => {
        ws.send(chunk)
        ws.send(chunk)
        serverSide.push(ws.bufferedAmount)
      })
      const { WebSocket } = await import('../../src/adapters/ws/index.js')
      client = new WebSocket(`ws://127.0.0.1:${port}/`, { perMessageDeflate: true })
      client.on('error', () => {})
      const arrived = new Queue<number>()
      client.on('message', (data: Buffer) => arrived.push(data.length))
      await withTimeout(onceEmitter(client, 'open'), 5000, 'rallyjs/ws client open')
      assert.ok((await serverSide.next(5000, 'server bufferedAmount')) >= MiB)
      client.send(chunk)
      assert.ok(client.bufferedAmount >= 512 * KiB, `client bufferedAmount ${client.bufferedAmount}`)
      assert.equal(await arrived.next(5000, 'first message'), 512 * KiB)
      assert.equal(await arrived.next(5000, 'second message'), 512 * KiB)
    } finally {
      client?.terminate()
      for (const socket of wss.clients) socket.terminate()
      await withTimeout(
        new Promise<void>((resolve) => wss.close(() => resolve())),
        5000,
        'WebSocketServer close',
      )
    }
  })
})

describe('the zlib limiter', () => {
  test('runs as many jobs at once as the machine runs in parallel', () => {
    assert.equal(zlibLimiter.concurrency, Math.max(1, availableParallelism()))
  })

  test('its queue is bounded in jobs and in bytes; a refused job fails at once with ZlibBusyError', async () => {
    const limiter = new ZlibLimiter(1, 2, 10 * KiB)
    let release = (): void => {}
    const blocker = limiter.run(() => new Promise<void>((resolve) => (release = resolve)))
    const queued = [limiter.run(async () => 'a', 4 * KiB), limiter.run(async () => 'b', 4 * KiB)]
    await assert.rejects(
      limiter.run(async () => 'c', 0),
      ZlibBusyError,
    )
    assert.equal(limiter.pending, 2)
    release()
    await blocker
    assert.deepEqual(await Promise.all(queued), ['a', 'b'])
    const bytesLimiter = new ZlibLimiter(1, 100, 10 * KiB)
    let releaseAgain = (): void => {}
    const second = bytesLimiter.run(() => new Promise<void>((resolve) => (releaseAgain = resolve)))
    const fits = bytesLimiter.run(async () => 'fits', 8 * KiB)
    await assert.rejects(
      bytesLimiter.run(async () => 'too much', 4 * KiB),
      ZlibBusyError,
    )
    releaseAgain()
    await second
    assert.equal(await fits, 'fits')
  })

  /** A connection whose codec's limiter is full: one job runs forever, none may wait. */
  function saturated(): {
    connection: Connection
    frames: WrittenFrame[]
    end(): void
  } {
    const limiter = new ZlibLimiter(1, 0)
    let end = (): void => {}
    void limiter.run(() => new Promise<void>((resolve) => (end = resolve)))
    const { handler, frames } = recordingHandler()
    const connection = new Connection('server', handler)
    connection.setCompression(
      new DeflateCodec({
        compress: { noContextTakeover: true, windowBits: 15 },
        decompress: { noContextTakeover: true, windowBits: 15 },
        threshold: 0,
        level: 1,
        memLevel: 8,
        limiter,
      }),
    )
    return { connection, frames, end: () => end() }
  }

  test('a compression refused by a full queue sends the message uncompressed', async () => {
    const { connection, frames, end } = saturated()
    const data = randomBytes(200 * KiB)
    connection.sendBinary(data, true)
    connection.sendText('after it', false)
    assert.ok(connection.pendingOutputBytes >= 200 * KiB)
    // Rejected on the spot; the sequencer hears of it one microtask later.
    await new Promise((resolve) => setImmediate(resolve))
    assert.equal(frames.length, 2)
    assert.equal(frames[0]!.first & RSV1, 0, 'RSV1 clear: not compressed')
    assert.ok(frames[0]!.payload.equals(data))
    assert.equal(frames[1]!.payload.toString(), 'after it')
    assert.equal(connection.pendingOutputBytes, 0)
    end()
  })

  test('a decompression refused by a full queue closes with 1013 (Try Again Later)', async () => {
    const { connection, frames, end } = saturated()
    // Over SYNC_LIMIT compressed: decompressed in the thread pool, through the full limiter.
    const payload = deflate(randomBytes(100 * KiB))
    connection.receive(clientFrame(Op.Binary, payload, { rsv: RSV1 }))
    await new Promise((resolve) => setImmediate(resolve))
    const close = frames.find((frame) => (frame.first & 0x0f) === Op.Close)
    assert.ok(close !== undefined, 'a close frame was sent')
    assert.equal(close.payload.readUInt16BE(0), 1013)
    end()
  })
})
