/**
 * Zip bombs: one compressed message that inflates far beyond the message limit. With the default
 * limit (16 MiB) the receiver must close with 1009 without ever holding the inflated message:
 * memory growth (rss and arrayBuffers, sampled during the test) stays bounded.
 *
 * Paths covered (src/node/deflate.ts): no context takeover with the compressed payload under
 * SYNC_LIMIT (one-shot, synchronous) and over it (one-shot, thread pool); context takeover
 * (a persistent inflate stream); and the Rally client receiving a bomb from a server.
 */
import assert from 'node:assert/strict'
import { Buffer } from 'node:buffer'
import { after, before, describe, test } from 'node:test'
import zlib from 'node:zlib'
import { type CloseEvent, ProtocolError, WebSocket } from '../../src/index.js'
import { SYNC_LIMIT } from '../../src/node/deflate.js'
import {
  clientFrame,
  disposeAll,
  MiB,
  Op,
  once,
  Queue,
  RawClient,
  RawServer,
  RSV1,
  startServer,
  track,
  withTimeout,
} from './helpers.js'

after(disposeAll)

const MEMORY_BUDGET = 200 * MiB

/**
 * `mib` MiB of zeros, deflated as one permessage-deflate message (Z_SYNC_FLUSH, tail stripped),
 * built by streaming the same 1 MiB buffer so that the test never holds the inflated size.
 */
async function zeroBomb(mib: number): Promise<Buffer> {
  const deflater = zlib.createDeflateRaw({ level: 9 })
  const chunks: Buffer[] = []
  deflater.on('data', (chunk: Buffer) => chunks.push(chunk))
  const zeros = Buffer.alloc(MiB)
  for (let i = 0; i < mib; i++) {
    if (!deflater.write(zeros)) await once(deflater, 'drain', 10_000)
  }
  await withTimeout(
    new Promise<void>((resolve) => deflater.flush(zlib.constants.Z_SYNC_FLUSH, () => resolve())),
    10_000,
    'deflate flush',
  )
  deflater.close()
  const out = Buffer.concat(chunks)
  assert.deepEqual([...out.subarray(out.length - 4)], [0x00, 0x00, 0xff, 0xff])
  return out.subarray(0, out.length - 4)
}

/** Samples memory every few ms; `growth()` is the peak rise over the baseline taken at start. */
function memoryWatch() {
  const base = process.memoryUsage()
  let peakRss = base.rss
  let peakArrayBuffers = base.arrayBuffers
  const sample = (): void => {
    const now = process.memoryUsage()
    peakRss = Math.max(peakRss, now.rss)
    peakArrayBuffers = Math.max(peakArrayBuffers, now.arrayBuffers)
  }
  const timer = setInterval(sample, 2)
  timer.unref()
  return {
    stop(): { rss: number; arrayBuffers: number } {
      sample()
      clearInterval(timer)
      return { rss: peakRss - base.rss, arrayBuffers: peakArrayBuffers - base.arrayBuffers }
    },
  }
}

let gigaBomb: Buffer
let smallBomb: Buffer

before(async () => {
  gigaBomb = await zeroBomb(1024) // 1 GiB of zeros, about 1 MiB compressed
  smallBomb = await zeroBomb(48) // 48 MiB of zeros, under SYNC_LIMIT compressed
})

function assertBounded(growth: { rss: number; arrayBuffers: number }, what: string): void {
  const mib = (n: number): string => `${(n / MiB).toFixed(1)} MiB`
  assert.ok(growth.rss < MEMORY_BUDGET, `${what}: rss grew by ${mib(growth.rss)}`)
  assert.ok(growth.arrayBuffers < MEMORY_BUDGET, `${what}: arrayBuffers grew by ${mib(growth.arrayBuffers)}`)
}

describe('zip bombs against the server (default 16 MiB limit)', { timeout: 60_000 }, () => {
  async function bombServer(
    perMessageDeflate: object | boolean,
    offer: string,
    frames: Buffer[],
  ): Promise<void> {
    const events = new Queue<string>()
    const errors: unknown[] = []
    const { port } = await startServer({
      perMessageDeflate,
      message(_ws, data) {
        events.push(`message ${(data as Buffer).length}`)
      },
      close(_ws, code) {
        events.push(`close ${code}`)
      },
      error(error) {
        errors.push(error)
      },
    })
    const client = await RawClient.connect(port, offer)
    const watch = memoryWatch()
    try {
      client.send(...frames)
      assert.equal(await client.closeCode(15_000), 1009)
      // The server failed the connection; the raw client sends no close frame back: 1006.
      assert.equal(await events.next(15_000), 'close 1006')
    } finally {
      assertBounded(watch.stop(), 'server')
    }
    assert.equal(errors.length, 1)
    assert.ok(errors[0] instanceof ProtocolError, 'errors[0] instanceof ProtocolError')
    assert.equal((errors[0] as ProtocolError).closeCode, 1009)
  }

  test('1 GiB of zeros, no context takeover: compressed > SYNC_LIMIT (thread-pool one-shot path)', async () => {
    assert.ok(gigaBomb.length > SYNC_LIMIT && gigaBomb.length < 2 * MiB, `bomb is ${gigaBomb.length} B`)
    await bombServer(true, 'permessage-deflate; client_max_window_bits', [
      clientFrame(Op.Binary, gigaBomb, { rsv: RSV1 }),
    ])
  })

  test('48 MiB of zeros, no context takeover: compressed <= SYNC_LIMIT (synchronous path)', async () => {
    assert.ok(smallBomb.length <= SYNC_LIMIT, `bomb is ${smallBomb.length} B`)
    await bombServer(true, 'permessage-deflate', [clientFrame(Op.Text, smallBomb, { rsv: RSV1 })])
  })

  test('1 GiB of zeros, context takeover (persistent inflate stream)', async () => {
    await bombServer(
      { serverNoContextTakeover: false, clientNoContextTakeover: false },
      'permessage-deflate',
      [clientFrame(Op.Binary, gigaBomb, { rsv: RSV1 })],
    )
  })

  test('1 GiB of zeros in 16 fragments, context takeover', async () => {
    const pieces: Buffer[] = []
    const size = Math.ceil(gigaBomb.length / 16)
    for (let i = 0; i < 16; i++) {
      const piece = gigaBomb.subarray(i * size, (i + 1) * size)
      pieces.push(
        clientFrame(i === 0 ? Op.Binary : Op.Continuation, piece, { fin: i === 15, rsv: i === 0 ? RSV1 : 0 }),
      )
    }
    await bombServer(
      { serverNoContextTakeover: false, clientNoContextTakeover: false },
      'permessage-deflate',
      pieces,
    )
  })

  test('48 MiB of zeros with context takeover after a good message on the same stream', async () => {
    const messages: number[] = []
    const { port } = await startServer({
      perMessageDeflate: { serverNoContextTakeover: false, clientNoContextTakeover: false },
      message(_ws, data) {
        messages.push((data as Buffer).length)
      },
      error() {},
    })
    const client = await RawClient.connect(port, 'permessage-deflate')
    // Two messages on one deflate stream: the bomb continues the good message's stream.
    const deflater = zlib.createDeflateRaw()
    /** Writes `chunks` through the stream, one Z_SYNC_FLUSH at the end, tail stripped. */
    const compress = (chunks: Buffer[]): Promise<Buffer> =>
      new Promise((resolve) => {
        const output: Buffer[] = []
        const onData = (chunk: Buffer): void => {
          output.push(chunk)
        }
        deflater.on('data', onData)
        for (const chunk of chunks) deflater.write(chunk)
        deflater.flush(zlib.constants.Z_SYNC_FLUSH, () => {
          deflater.removeListener('data', onData)
          const out = Buffer.concat(output)
          resolve(out.subarray(0, out.length - 4))
        })
      })
    const watch = memoryWatch()
    try {
      const good = await compress([Buffer.from('hello '.repeat(100))])
      const zeros = Buffer.alloc(MiB)
      const bomb = await compress(Array.from({ length: 48 }, () => zeros))
      assert.ok(bomb.length < SYNC_LIMIT, `bomb is ${bomb.length} B`)
      client.send(clientFrame(Op.Text, good, { rsv: RSV1 }), clientFrame(Op.Binary, bomb, { rsv: RSV1 }))
      assert.equal(await client.closeCode(15_000), 1009)
      assert.deepEqual(messages, [600])
    } finally {
      assertBounded(watch.stop(), 'server')
      deflater.close()
    }
  })
})

describe('zip bomb against the Rally client (default 16 MiB limit)', { timeout: 30_000 }, () => {
  for (const [name, takeover] of [
    ['no context takeover', false],
    ['context takeover', true],
  ] as const) {
    test(`1 GiB of zeros from the server, ${name} → the client closes with 1009`, async () => {
      const raw = await RawServer.start(
        takeover
          ? 'permessage-deflate'
          : 'permessage-deflate; server_no_context_takeover; client_no_context_takeover',
      )
      const ws = track(new WebSocket(raw.url))
      const events: string[] = []
      ws.addEventListener('error', () => events.push('error'))
      const closed = once<CloseEvent>(ws, 'close', 15_000)
      await once(ws, 'open')
      const { socket, reader } = await raw.connections.next()
      const watch = memoryWatch()
      try {
        const header = Buffer.from([0x80 | RSV1 | Op.Binary, 127, 0, 0, 0, 0, 0, 0, 0, 0])
        header.writeUInt32BE(gigaBomb.length, 6)
        socket.write(Buffer.concat([header, gigaBomb]))
        let frame = await reader.frames.next(15_000, "the client's close frame")
        while (frame.opcode !== Op.Close) frame = await reader.frames.next(15_000, "the client's close frame")
        assert.equal(frame.payload.readUInt16BE(0), 1009)
        socket.end()
        const event = await closed
        assert.equal(event.code, 1006, 'a failed connection reports 1006 to the application')
        assert.deepEqual(events, ['error'])
      } finally {
        assertBounded(watch.stop(), 'client')
      }
    })
  }
})
