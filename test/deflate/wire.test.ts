/**
 * permessage-deflate on the wire, server side, with a hand-driven TCP client: fragmented
 * compressed messages with pings between the fragments, RSV1 rules (RFC 7692 6.1), corrupt
 * compressed data and invalid UTF-8 after inflating (1007), the empty message, context takeover,
 * and which messages the server compresses (`threshold`, `send(data, { compress })`).
 */
import assert from 'node:assert/strict'
import { Buffer } from 'node:buffer'
import { after, describe, test } from 'node:test'
import zlib from 'node:zlib'
import type { ServerWebSocket } from '../../src/index.js'
import { SYNC_LIMIT } from '../../src/node/deflate.js'
import {
  clientFrame,
  compressibleText,
  deflate,
  disposeAll,
  inflate,
  KiB,
  Op,
  type ParsedFrame,
  RawClient,
  RSV1,
  randomBytes,
  startEchoServer,
  startServer,
} from './helpers.js'

after(disposeAll)

/** Splits `data` into `count` pieces of uneven sizes (some may be empty). */
function split(data: Buffer, count: number): Buffer[] {
  const pieces: Buffer[] = []
  let offset = 0
  for (let i = 0; i < count - 1; i++) {
    const size = Math.floor(((data.length - offset) * (i % 2 === 0 ? 1 : 2)) / (count - i + 1))
    pieces.push(data.subarray(offset, offset + size))
    offset += size
  }
  pieces.push(data.subarray(offset))
  return pieces
}

/** A fragmented compressed message: RSV1 on the first frame only, a ping after every fragment but the last. */
function fragmentedCompressed(
  opcode: number,
  message: Buffer,
  count: number,
  emptyFragment = false,
): Buffer[] {
  const pieces = split(deflate(message), count)
  if (emptyFragment) pieces.splice(1, 0, Buffer.alloc(0))
  const frames: Buffer[] = []
  pieces.forEach((piece, i) => {
    const last = i === pieces.length - 1
    frames.push(
      clientFrame(i === 0 ? opcode : Op.Continuation, piece, { fin: last, rsv: i === 0 ? RSV1 : 0 }),
    )
    if (!last) frames.push(clientFrame(Op.Ping, `ping ${i}`))
  })
  return frames
}

/** Reads frames up to the next complete data message, collecting pongs on the way. */
async function readMessage(client: RawClient, ms = 5000) {
  const pongs: string[] = []
  const frames: ParsedFrame[] = []
  while (true) {
    const frame = await client.nextFrame(ms)
    if (frame.opcode === Op.Pong) {
      pongs.push(frame.payload.toString())
      continue
    }
    if (frame.opcode === Op.Close) throw new Error(`server closed with ${frame.payload.readUInt16BE(0)}`)
    frames.push(frame)
    if (frame.fin) break
  }
  const compressed = (frames[0]!.rsv & RSV1) !== 0
  for (const frame of frames.slice(1)) assert.equal(frame.rsv, 0, 'RSV1 only on the first frame')
  const payload = Buffer.concat(frames.map((f) => f.payload))
  return { opcode: frames[0]!.opcode, compressed, data: compressed ? inflate(payload) : payload, pongs }
}

describe('fragmented compressed messages from a raw client, echoed', () => {
  const cases: [string, number, Buffer, number][] = [
    ['text, 10 KiB, 4 fragments', Op.Text, Buffer.from(compressibleText(10 * KiB)), 4],
    ['text, 3 KiB with multi-byte characters, 9 fragments', Op.Text, Buffer.from('ü€😀'.repeat(300)), 9],
    ['binary, 200 KiB random (async inflate), 7 fragments', Op.Binary, randomBytes(200 * KiB), 7],
    ['binary, 1 MiB compressible, 3 fragments', Op.Binary, Buffer.from(compressibleText(1024 * KiB)), 3],
  ]
  for (const [name, opcode, message, count] of cases) {
    test(name, async () => {
      const received: Buffer[] = []
      const { port } = await startEchoServer({
        perMessageDeflate: true,
        message(ws, data, isBinary) {
          received.push(Buffer.from(data as Buffer))
          ws.send(data, { binary: isBinary })
        },
      })
      const client = await RawClient.connect(port)
      assert.equal(
        client.extensions,
        'permessage-deflate; server_no_context_takeover; client_no_context_takeover',
      )
      client.send(...fragmentedCompressed(opcode, message, count))
      const echoed = await readMessage(client)
      assert.deepEqual(
        echoed.pongs,
        Array.from({ length: count - 1 }, (_, i) => `ping ${i}`),
        'every ping answered, in order',
      )
      assert.equal(echoed.opcode, opcode)
      // Random data does not shrink, and the server may then send it as it is.
      if (!name.includes('random'))
        assert.equal(echoed.compressed, true, 'the echo (≥ 1024 bytes) is compressed')
      assert.ok(echoed.data.equals(message), 'echo content')
      assert.equal(received.length, 1)
      assert.ok(received[0]!.equals(message), 'server saw the message')
    })
  }

  test('an empty continuation fragment in the middle is fine', async () => {
    const { port } = await startEchoServer({ perMessageDeflate: true })
    const client = await RawClient.connect(port)
    const message = Buffer.from(compressibleText(5000))
    client.send(...fragmentedCompressed(Op.Text, message, 3, true))
    const echoed = await readMessage(client)
    assert.ok(echoed.data.equals(message), 'echoed.data.equals(message)')
  })

  test('an uncompressed message between compressed ones (RSV1 per message)', async () => {
    const { port } = await startEchoServer({ perMessageDeflate: true })
    const client = await RawClient.connect(port)
    const a = Buffer.from(compressibleText(3000))
    const b = Buffer.from('plain, not compressed')
    const c = randomBytes(2000)
    client.send(
      clientFrame(Op.Text, deflate(a), { rsv: RSV1 }),
      clientFrame(Op.Text, b),
      clientFrame(Op.Binary, deflate(c), { rsv: RSV1 }),
    )
    for (const expected of [a, b, c])
      assert.ok(
        (await readMessage(client)).data.equals(expected),
        '(await readMessage(client)).data.equals(expected)',
      )
  })

  test('the empty message: payload 0x00 with RSV1, and an empty payload with RSV1', async () => {
    const received: Buffer[] = []
    const { port } = await startEchoServer({
      perMessageDeflate: true,
      message(ws, data, isBinary) {
        received.push(Buffer.from(data as Buffer))
        ws.send(data, { binary: isBinary })
      },
    })
    const client = await RawClient.connect(port)
    assert.deepEqual(deflate(Buffer.alloc(0)), Buffer.from([0x00]), 'RFC 7692 7.2.3.6')
    client.send(
      clientFrame(Op.Text, Buffer.from([0x00]), { rsv: RSV1 }),
      clientFrame(Op.Binary, Buffer.alloc(0), { rsv: RSV1 }),
    )
    const first = await readMessage(client)
    assert.equal(first.opcode, Op.Text)
    assert.equal(first.data.length, 0)
    assert.equal(first.compressed, false, 'an empty echo is below the threshold')
    const second = await readMessage(client)
    assert.equal(second.opcode, Op.Binary)
    assert.equal(second.data.length, 0)
    assert.deepEqual(
      received.map((r) => r.length),
      [0, 0],
    )
  })
})

describe('RSV1 and compressed-data errors', () => {
  async function expectClose(
    frames: Buffer[],
    expected: number,
    options: { extensions?: string | null; deflate?: boolean } = {},
  ): Promise<void> {
    const messages: number[] = []
    const { port } = await startEchoServer({
      perMessageDeflate: options.deflate ?? true,
      message(_ws, data) {
        messages.push((data as Buffer).length)
      },
    })
    const client = await RawClient.connect(port, options.extensions)
    client.send(...frames)
    assert.equal(await client.closeCode(), expected)
    await client.waitForClose()
    assert.deepEqual(messages, [], 'no message delivered')
  }

  test('RSV1 on a continuation frame → 1002', () =>
    expectClose(
      [
        clientFrame(Op.Text, deflate('hello').subarray(0, 2), { fin: false, rsv: RSV1 }),
        clientFrame(Op.Continuation, deflate('hello').subarray(2), { rsv: RSV1 }),
      ],
      1002,
    ))

  test('RSV1 on a continuation of an uncompressed message → 1002', () =>
    expectClose(
      [
        clientFrame(Op.Text, 'hel', { fin: false }),
        clientFrame(Op.Continuation, deflate('lo'), { rsv: RSV1 }),
      ],
      1002,
    ))

  test('RSV1 on a ping → 1002', () => expectClose([clientFrame(Op.Ping, 'x', { rsv: RSV1 })], 1002))

  test('RSV1 on a close frame → 1002', () =>
    expectClose([clientFrame(Op.Close, Buffer.from([0x03, 0xe8]), { rsv: RSV1 })], 1002))

  test('RSV1 when the client offered nothing → 1002', () =>
    expectClose([clientFrame(Op.Text, deflate('hello'), { rsv: RSV1 })], 1002, { extensions: null }))

  test('RSV1 when the server has permessage-deflate off (offer declined) → 1002', async () => {
    const { port } = await startEchoServer({ perMessageDeflate: false })
    const probe = await RawClient.connect(port)
    assert.equal(probe.extensions, '', 'offer declined')
    probe.destroy()
    await expectClose([clientFrame(Op.Text, deflate('hello'), { rsv: RSV1 })], 1002, { deflate: false })
  })

  test('RSV2 or RSV3 with permessage-deflate negotiated → 1002', async () => {
    await expectClose([clientFrame(Op.Text, deflate('hello'), { rsv: 0x20 })], 1002)
    await expectClose([clientFrame(Op.Text, deflate('hello'), { rsv: RSV1 | 0x10 })], 1002)
  })

  test('invalid compressed data (sync path) → 1007', () =>
    // 0xff: BFINAL=1, BTYPE=11, a reserved block type.
    expectClose([clientFrame(Op.Binary, Buffer.from([0xff, 0xff, 0xff, 0xff]), { rsv: RSV1 })], 1007))

  test('invalid compressed data over SYNC_LIMIT (async path) → 1007', () => {
    const garbage = randomBytes(SYNC_LIMIT + 10 * KiB)
    garbage[0] = 0x07 // BTYPE=11 in the first block header
    return expectClose([clientFrame(Op.Binary, garbage, { rsv: RSV1 })], 1007)
  })

  test('a message compressed with BFINAL set (Z_FINISH, RFC 7692 7.2.3.4) is accepted', async () => {
    const { port } = await startEchoServer({ perMessageDeflate: true })
    const client = await RawClient.connect(port)
    for (const message of [Buffer.from(compressibleText(3000)), randomBytes(SYNC_LIMIT * 2)]) {
      const finished = zlib.deflateRawSync(message) // ends with a final block, no 00 00 ff ff
      client.send(clientFrame(Op.Binary, finished, { rsv: RSV1 }))
      assert.ok((await readMessage(client)).data.equals(message), `${message.length} B`)
    }
  })

  test('compressed text that inflates to invalid UTF-8 → 1007', () =>
    expectClose([clientFrame(Op.Text, deflate(Buffer.from([0x61, 0xc3, 0x28, 0x62])), { rsv: RSV1 })], 1007))

  test('compressed text that inflates to invalid UTF-8, fragmented, over SYNC_LIMIT → 1007', () => {
    // Random printable ASCII keeps the compressed size over SYNC_LIMIT: the async path is taken.
    const text = randomBytes(SYNC_LIMIT * 3)
    for (let i = 0; i < text.length; i++) text[i] = 0x20 + (text[i]! % 90)
    text[text.length - 1] = 0xc3 // a lead byte with nothing after it
    const payload = deflate(text)
    assert.ok(payload.length > SYNC_LIMIT, `compressed to ${payload.length} B`)
    const [a, b] = split(payload, 2)
    return expectClose(
      [clientFrame(Op.Text, a!, { fin: false, rsv: RSV1 }), clientFrame(Op.Continuation, b!)],
      1007,
    )
  })

  test('text whose compressed bytes are not UTF-8 but inflate to valid UTF-8 is accepted', async () => {
    const { port } = await startEchoServer({ perMessageDeflate: true })
    const client = await RawClient.connect(port)
    const message = Buffer.from('é'.repeat(700))
    const payload = deflate(message)
    // Split the compressed bytes so that no fragment is valid UTF-8 on its own.
    client.send(
      clientFrame(Op.Text, payload.subarray(0, 1), { fin: false, rsv: RSV1 }),
      clientFrame(Op.Continuation, payload.subarray(1)),
    )
    assert.ok(
      (await readMessage(client)).data.equals(message),
      '(await readMessage(client)).data.equals(message)',
    )
  })
})

/** A raw client's persistent zlib streams, for context takeover on both sides. */
class StreamCodec {
  private readonly deflater = zlib.createDeflateRaw({ windowBits: 15 })
  private readonly inflater = zlib.createInflateRaw({ windowBits: 15 })

  compress(data: Buffer): Promise<Buffer> {
    return this.through(this.deflater, data).then((out) => out.subarray(0, out.length - 4))
  }

  decompress(data: Buffer): Promise<Buffer> {
    return this.through(this.inflater, Buffer.concat([data, Buffer.from([0, 0, 0xff, 0xff])]))
  }

  private through(stream: zlib.DeflateRaw | zlib.InflateRaw, data: Buffer): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = []
      const onData = (chunk: Buffer): void => {
        chunks.push(chunk)
      }
      stream.on('data', onData)
      stream.once('error', reject)
      stream.write(data)
      stream.flush(zlib.constants.Z_SYNC_FLUSH, () => {
        stream.removeListener('data', onData)
        stream.removeListener('error', reject)
        resolve(Buffer.concat(chunks))
      })
    })
  }

  close(): void {
    this.deflater.destroy()
    this.inflater.destroy()
  }
}

describe('context takeover with a raw client', () => {
  test('the server inflates messages that refer to earlier ones, and compresses with context', async () => {
    const { port } = await startEchoServer({
      perMessageDeflate: { serverNoContextTakeover: false, clientNoContextTakeover: false },
    })
    const client = await RawClient.connect(port, 'permessage-deflate')
    assert.equal(client.extensions, 'permessage-deflate')
    const codec = new StreamCodec()
    try {
      const message = Buffer.from(compressibleText(4000))
      const sizes: number[] = []
      for (let i = 0; i < 4; i++) {
        const payload = await codec.compress(message)
        sizes.push(payload.length)
        client.send(clientFrame(Op.Text, payload, { rsv: RSV1 }))
        const frame = await client.nextDataFrame()
        assert.equal(frame.rsv, RSV1)
        assert.ok((await codec.decompress(frame.payload)).equals(message), `echo ${i}`)
        if (i > 0)
          assert.ok(
            frame.payload.length < 100,
            `server frame ${i} uses its context: ${frame.payload.length} B`,
          )
      }
      assert.ok(sizes[1]! < 100, 'our second message refers to the first')
    } finally {
      codec.close()
    }
  })
})

describe('which messages the server compresses', () => {
  type Sent = { data: Buffer; options: { compress?: boolean; binary?: boolean } }
  const small = Buffer.from('s'.repeat(100))
  const large = Buffer.from(compressibleText(2000))

  async function sendAndRead(perMessageDeflate: object | boolean, sends: Sent[]) {
    let socket: ServerWebSocket<undefined> | undefined
    const { port } = await startServer({
      perMessageDeflate,
      open(ws) {
        socket = ws
      },
      message(ws) {
        for (const { data, options } of sends) ws.send(data, { binary: false, ...options })
      },
    })
    const client = await RawClient.connect(port)
    client.send(clientFrame(Op.Text, 'go'))
    const results: { compressed: boolean; ok: boolean; opcode: number }[] = []
    for (const { data, options } of sends) {
      const message = await client.nextMessage()
      results.push({
        compressed: message.compressed,
        ok: message.data.equals(data),
        opcode: message.opcode,
      })
      assert.equal(message.opcode, options.binary ? Op.Binary : Op.Text)
    }
    assert.ok(socket, 'socket')
    return results
  }

  test('default threshold 1024: 100 B plain, 2000 B compressed; compress: true/false override', async () => {
    const results = await sendAndRead(true, [
      { data: small, options: {} },
      { data: large, options: {} },
      { data: small, options: { compress: true } },
      { data: large, options: { compress: false } },
      { data: small, options: { compress: true, binary: true } },
      { data: large, options: { compress: false, binary: true } },
      { data: Buffer.alloc(1023, 0x61), options: {} },
      { data: Buffer.alloc(1024, 0x61), options: {} },
    ])
    assert.deepEqual(
      results.map((r) => r.compressed),
      [false, true, true, false, true, false, false, true],
    )
    assert.ok(
      results.every((r) => r.ok),
      'results.every((r) => r.ok)',
    )
  })

  test('threshold option: 50 compresses 100 B; 5000 leaves 2000 B plain; 0 compresses 20 B', async () => {
    const low = await sendAndRead({ threshold: 50 }, [
      { data: small, options: {} },
      { data: Buffer.alloc(49, 0x61), options: {} },
    ])
    assert.deepEqual(
      low.map((r) => r.compressed),
      [true, false],
    )
    const high = await sendAndRead({ threshold: 5000 }, [
      { data: large, options: {} },
      { data: large, options: { compress: true } },
    ])
    assert.deepEqual(
      high.map((r) => r.compressed),
      [false, true],
    )
    const zero = await sendAndRead({ threshold: 0 }, [{ data: Buffer.alloc(20, 0x61), options: {} }])
    assert.deepEqual(
      zero.map((r) => r.compressed),
      [true],
    )
    assert.ok(
      [...low, ...high, ...zero].every((r) => r.ok),
      '[...low, ...high, ...zero].every((r) => r.ok)',
    )
  })

  test('without permessage-deflate, compress: true sends plain frames', async () => {
    const results = await sendAndRead(false, [{ data: large, options: { compress: true } }])
    assert.equal(results[0]!.compressed, false)
    assert.ok(results[0]!.ok, 'results[0]!.ok')
  })

  test('server.publish follows the same rules, compressing once for the topic', async () => {
    const { server, port } = await startServer({
      perMessageDeflate: true,
      open(ws) {
        ws.subscribe('t')
      },
      message() {
        server.publish('t', large)
        server.publish('t', small)
        server.publish('t', large, { compress: false })
        server.publish('t', small, { compress: true })
      },
    })
    const clients = [await RawClient.connect(port), await RawClient.connect(port)]
    clients[0]!.send(clientFrame(Op.Text, 'go'))
    for (const client of clients) {
      const flags: boolean[] = []
      for (const expected of [large, small, large, small]) {
        const message = await client.nextMessage()
        assert.ok(message.data.equals(expected), 'message.data.equals(expected)')
        flags.push(message.compressed)
      }
      assert.deepEqual(flags, [true, false, false, true])
    }
  })
})

describe('the handshake: what the server answers', () => {
  test('offers across two header lines: the first acceptable one wins', async () => {
    const { port } = await startEchoServer({ perMessageDeflate: true })
    const client = await RawClient.connect(port, [
      'x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=7',
      'permessage-deflate; server_max_window_bits=10; client_max_window_bits',
    ])
    assert.equal(
      client.extensions,
      'permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10',
    )
    // The server really compresses with at most a 10-bit window: a strict inflater accepts it.
    const message = Buffer.from(compressibleText(50 * KiB) + randomBytes(2 * KiB).toString('hex'))
    client.send(clientFrame(Op.Binary, deflate(message, { windowBits: 15 }), { rsv: RSV1 }))
    const frame = await client.nextDataFrame()
    assert.equal(frame.rsv, RSV1)
    const inflated = zlib.inflateRawSync(Buffer.concat([frame.payload, Buffer.from([0, 0, 0xff, 0xff])]), {
      windowBits: 10,
      finishFlush: zlib.constants.Z_SYNC_FLUSH,
    })
    assert.ok(inflated.equals(message), 'inflated.equals(message)')
  })

  test('only unacceptable offers: no extension in the response, plain frames', async () => {
    const { port } = await startEchoServer({ perMessageDeflate: true })
    const client = await RawClient.connect(
      port,
      'permessage-deflate; foo, permessage-deflate; server_max_window_bits=16',
    )
    assert.equal(client.extensions, '')
    const text = compressibleText(3000)
    client.send(clientFrame(Op.Text, text))
    const message = await client.nextMessage()
    assert.equal(message.compressed, false)
    assert.equal(message.data.toString(), text)
  })

  test('malformed Sec-WebSocket-Extensions with deflate enabled → 400', async () => {
    const { port } = await startEchoServer({ perMessageDeflate: true })
    await assert.rejects(RawClient.connect(port, 'permessage-deflate; ='), /handshake answered 400/)
  })

  test('malformed Sec-WebSocket-Extensions with deflate disabled → ignored (101, no extension)', async () => {
    const { port } = await startEchoServer({ perMessageDeflate: false })
    const client = await RawClient.connect(port, 'permessage-deflate; =')
    assert.equal(client.extensions, '')
  })
})
