/**
 * Base framing (RFC 6455 5.2): the frame writer byte for byte, the parser for every frame type in
 * both directions and every way of cutting the input, and the frame-level violations.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import {
  encodeFrame,
  encodeFrameHeader,
  encodeFrameInto,
  encodeSmallFrameAt,
  FrameParser,
  Opcode,
  ProtocolError,
  ProtocolErrorCode,
  SMALL_FRAME_LIMIT,
} from '../../src/protocol/index.js'
import {
  assertFails,
  assertSplitInvariant,
  bytes,
  chunksAt,
  closePayload,
  concat,
  connect,
  FrameRecorder,
  frameFrom,
  hex,
  MASK_KEY,
  oneByteChunks,
  patternBytes,
  rawFrame,
  receiveEvents,
  utf8,
  xorMask,
} from './helpers.js'

const KEY = bytes(0xa1, 0xb2, 0xc3, 0xd4)

describe('frame writer', () => {
  const cases: { length: number; lengthField: number[] }[] = [
    { length: 0, lengthField: [0x00] },
    { length: 1, lengthField: [0x01] },
    { length: 125, lengthField: [0x7d] },
    { length: 126, lengthField: [0x7e, 0x00, 0x7e] },
    { length: 65535, lengthField: [0x7e, 0xff, 0xff] },
    { length: 65536, lengthField: [0x7f, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00] },
  ]
  for (const { length, lengthField } of cases) {
    it(`writes a ${length}-byte masked binary frame byte for byte`, () => {
      const payload = patternBytes(length, length + 7)
      const original = payload.slice()
      const frame = encodeFrame(Opcode.Binary, payload, { mask: true, maskKey: KEY })
      const expectedHeader = [0x82, lengthField[0]! | 0x80, ...lengthField.slice(1), ...KEY]
      assert.equal(hex(frame.header), hex(Uint8Array.from(expectedHeader)))
      if (length === 0) {
        assert.equal(frame.payload, undefined)
      } else {
        assert.ok(frame.payload !== payload, 'a masked payload is a copy')
        assert.equal(hex(frame.payload), hex(xorMask(original, KEY)))
      }
      assert.deepEqual(payload, original, 'the caller buffer is left alone')
    })

    it(`writes a ${length}-byte unmasked binary frame without copying the payload`, () => {
      const payload = patternBytes(length, length + 3)
      const frame = encodeFrame(Opcode.Binary, payload)
      assert.equal(hex(frame.header), hex(Uint8Array.from([0x82, ...lengthField])))
      if (length === 0) assert.equal(frame.payload, undefined)
      else assert.equal(frame.payload, payload, 'same object, not a copy')
    })

    it(`encodeFrameInto builds the same ${length}-byte frame in one buffer`, () => {
      const payload = patternBytes(length, length + 11)
      const original = payload.slice()
      const masked = encodeFrameInto(Opcode.Binary, payload, { mask: true, maskKey: KEY })
      assert.equal(hex(masked), hex(rawFrame(Opcode.Binary, original, { mask: KEY })))
      const plain = encodeFrameInto(Opcode.Text, payload, { fin: false, rsv: 0x40 })
      assert.equal(hex(plain), hex(concat(Uint8Array.from([0x41, ...lengthField]), original)))
      assert.deepEqual(payload, original)
    })
  }

  it('encodes 64-bit lengths above 2^32 in network byte order', () => {
    const header = encodeFrameHeader(Opcode.Binary, 2 ** 32 + 0x01020304)
    assert.equal(hex(header), '827f0000000101020304')
    const big = encodeFrameHeader(Opcode.Binary, 2 ** 53 - 1)
    assert.equal(hex(big), '827f001fffffffffffff')
  })

  it('sets FIN, RSV and opcode bits', () => {
    assert.equal(hex(encodeFrameHeader(Opcode.Text, 0, { fin: false })), '0100')
    assert.equal(hex(encodeFrameHeader(Opcode.Continuation, 0, { fin: false })), '0000')
    assert.equal(hex(encodeFrameHeader(Opcode.Continuation, 3)), '8003')
    assert.equal(hex(encodeFrameHeader(Opcode.Text, 5, { rsv: 0x40 })), 'c105')
    assert.equal(hex(encodeFrameHeader(Opcode.Binary, 5, { rsv: 0x70, fin: false })), '7205')
    assert.equal(hex(encodeFrameHeader(Opcode.Close, 2)), '8802')
    assert.equal(hex(encodeFrameHeader(Opcode.Ping, 0)), '8900')
    assert.equal(hex(encodeFrameHeader(Opcode.Pong, 125)), '8a7d')
  })

  it('encodeSmallFrameAt writes the same bytes as encodeFrameInto, at an offset', () => {
    for (const length of [0, 1, 125, 126, 300, SMALL_FRAME_LIMIT]) {
      const payload = patternBytes(length, 9)
      for (const [opcode, fin, rsv] of [
        [Opcode.Binary, true, 0],
        [Opcode.Text, false, 0x40],
        [Opcode.Continuation, true, 0],
      ] as const) {
        const target = new Uint8Array(length + 20).fill(0xee)
        const end = encodeSmallFrameAt(target, 7, (fin ? 0x80 : 0) | rsv | opcode, payload)
        const expected = encodeFrameInto(opcode, payload, { fin, rsv })
        assert.equal(end, 7 + expected.length, `length ${length}`)
        assert.equal(hex(target.subarray(7, end)), hex(expected), `length ${length}`)
        assert.ok(
          target.subarray(0, 7).every((b) => b === 0xee) && target.subarray(end).every((b) => b === 0xee),
          'nothing written outside the frame',
        )
      }
    }
  })

  it('matches the RFC 6455 5.7 examples', () => {
    const hello = utf8('Hello')
    assert.equal(hex(concat(encodeFrameHeader(Opcode.Text, 5), hello)), '810548656c6c6f')
    const masked = encodeFrame(Opcode.Text, hello, { mask: true, maskKey: MASK_KEY })
    assert.equal(hex(concat(masked.header, masked.payload!)), '818537fa213d7f9f4d5158')
    assert.equal(hex(encodeFrameHeader(Opcode.Text, 3, { fin: false })), '0103')
    assert.equal(hex(encodeFrameHeader(Opcode.Continuation, 2)), '8002')
    assert.equal(hex(encodeFrameHeader(Opcode.Binary, 256)), '827e0100')
    assert.equal(hex(encodeFrameHeader(Opcode.Binary, 65536)), '827f0000000000010000')
  })

  it('draws a random mask key when none is given', () => {
    const payload = patternBytes(40)
    const keys = new Set<string>()
    for (let i = 0; i < 64; i++) {
      const frame = encodeFrame(Opcode.Binary, payload, { mask: true })
      assert.equal(frame.header[1], 0x80 | 40)
      const key = frame.header.subarray(2, 6)
      keys.add(hex(key))
      assert.equal(hex(xorMask(frame.payload!, key)), hex(payload))
    }
    assert.ok(keys.size > 60, `mask keys should be random, got ${keys.size} distinct of 64`)
  })
})

describe('Connection output', () => {
  it(`server frames over ${SMALL_FRAME_LIMIT} bytes are unmasked and the payload is not copied`, () => {
    const { connection, recorder } = connect('server')
    const payload = patternBytes(SMALL_FRAME_LIMIT + 1)
    assert.equal(connection.sendBinary(payload), true)
    assert.equal(recorder.writes.length, 1)
    assert.equal(hex(recorder.writes[0]!.header), '827e0201')
    assert.equal(recorder.writes[0]!.payload, payload, 'same object, not a copy')
    const big = patternBytes(65536)
    connection.sendText(big)
    assert.equal(hex(recorder.writes[1]!.header), '817f0000000000010000')
    assert.equal(recorder.writes[1]!.payload, big)
  })

  it(`server frames up to ${SMALL_FRAME_LIMIT} bytes go out as one unmasked buffer`, () => {
    const { connection, recorder } = connect('server')
    const payload = patternBytes(SMALL_FRAME_LIMIT)
    connection.sendBinary(payload)
    connection.sendText('Hello')
    assert.equal(recorder.writes[0]!.payload, undefined)
    assert.equal(hex(recorder.writes[0]!.header), `827e0200${hex(payload)}`)
    assert.equal(hex(recorder.writes[1]!.header), '810548656c6c6f')
  })

  it('client frames are masked with the injected key, the caller payload left alone', () => {
    const { connection, recorder } = connect('client', { maskKey: MASK_KEY })
    connection.sendText('Hello')
    assert.equal(hex(recorder.wire()), '818537fa213d7f9f4d5158')
    for (const length of [0, 125, 126, 65535, 65536, 70000]) {
      const payload = patternBytes(length, 9)
      const before = payload.slice()
      const mark = recorder.wire().length
      connection.sendBinary(payload)
      const expected = rawFrame(Opcode.Binary, before, { mask: MASK_KEY })
      assert.equal(hex(recorder.wire().subarray(mark)), hex(expected), `${length} bytes`)
      assert.deepEqual(payload, before, 'caller payload unchanged')
    }
    assert.equal(hex(recorder.frames()[6]!.mask), hex(MASK_KEY))
  })

  it('client frames without an injected key carry a random one', () => {
    const { connection, recorder } = connect('client', { maskKey: undefined })
    connection.sendText('abc')
    connection.sendText('abc')
    const [a, b] = recorder.frames()
    assert.equal(a!.masked, true)
    assert.equal(hex(a!.payload), hex(utf8('abc')))
    assert.equal(hex(b!.payload), hex(utf8('abc')))
  })

  it('writes ping, pong and empty frames', () => {
    const { connection, recorder } = connect('server')
    connection.ping()
    connection.ping(utf8('hi'))
    connection.pong(utf8('yo'))
    connection.sendText('')
    connection.sendBinary(new Uint8Array(0))
    assert.equal(hex(recorder.wire()), `8900${'8902'}6869${'8a02'}796f81008200`)
    assert.equal(recorder.writes[0]!.payload, undefined)
  })

  it('writes fragments with FIN only on the last', () => {
    const { connection, recorder } = connect('server')
    assert.equal(connection.sendFragment(Opcode.Text, utf8('He'), false), true)
    connection.sendFragment(Opcode.Continuation, utf8('l'), false)
    connection.sendFragment(Opcode.Continuation, utf8('lo'), true)
    assert.equal(hex(recorder.wire()), '0102486500016c80026c6f')
    assert.throws(() => connection.sendFragment(Opcode.Ping, utf8('x'), true), TypeError)
    assert.throws(() => connection.sendFragment(Opcode.Close, utf8('x'), true), TypeError)
  })
})

describe('frame parser: every frame type in both directions', () => {
  for (const sender of ['client', 'server'] as const) {
    const receiver = sender === 'client' ? 'server' : 'client'
    it(`${receiver} parses text, binary, empty, ping, pong and close frames from a ${sender}`, () => {
      const stream = concat(
        frameFrom(sender, Opcode.Text, utf8('Hello')),
        frameFrom(sender, Opcode.Text, new Uint8Array(0)),
        frameFrom(sender, Opcode.Binary, bytes(0, 1, 2, 0xff)),
        frameFrom(sender, Opcode.Binary, new Uint8Array(0)),
        frameFrom(sender, Opcode.Ping, utf8('p1')),
        frameFrom(sender, Opcode.Ping, new Uint8Array(0)),
        frameFrom(sender, Opcode.Pong, utf8('p2')),
        frameFrom(sender, Opcode.Close, closePayload(1000, 'bye')),
      )
      const { events, recorder } = receiveEvents(receiver, [stream], { autoPong: false })
      assert.deepEqual(events, [
        { type: 'message', data: hex(utf8('Hello')), isBinary: false },
        { type: 'message', data: '', isBinary: false },
        { type: 'message', data: '000102ff', isBinary: true },
        { type: 'message', data: '', isBinary: true },
        { type: 'ping', data: hex(utf8('p1')) },
        { type: 'ping', data: '' },
        { type: 'pong', data: hex(utf8('p2')) },
        { type: 'closeReceived', code: 1000, reason: 'bye' },
        ...(receiver === 'server' ? [{ type: 'closeTransport' as const }] : []),
      ])
      assert.equal(recorder.errors.length, 0)
    })
  }

  it('parses 7-, 16- and 64-bit lengths, at the boundaries', () => {
    for (const length of [0, 125, 126, 65535, 65536]) {
      for (const sender of ['client', 'server'] as const) {
        const payload = patternBytes(length, length + 1)
        const receiver = sender === 'client' ? 'server' : 'client'
        const { events } = receiveEvents(receiver, [frameFrom(sender, Opcode.Binary, payload)])
        assert.deepEqual(events, [{ type: 'message', data: hex(payload), isBinary: true }], `${length}`)
      }
    }
  })

  it('accepts non-minimal length encodings (the minimal-encoding MUST is on the sender)', () => {
    const a = receiveEvents('client', [rawFrame(Opcode.Text, utf8('ab'), { lengthBits: 16 })])
    const b = receiveEvents('client', [rawFrame(Opcode.Text, utf8('ab'), { lengthBits: 64 })])
    const expected = [{ type: 'message', data: hex(utf8('ab')), isBinary: false }]
    assert.deepEqual(a.events, expected)
    assert.deepEqual(b.events, expected)
  })

  it('hands a single-chunk payload over without copying it', () => {
    const { connection, recorder } = connect('client')
    const frame = rawFrame(Opcode.Binary, patternBytes(200))
    connection.receive(frame)
    assert.equal(recorder.messageData[0]!.buffer, frame.buffer, 'a view into the input chunk')
  })
})

describe('frame parser: input cut anywhere gives the same events', () => {
  for (const sender of ['client', 'server'] as const) {
    const receiver = sender === 'client' ? 'server' : 'client'
    it(`${receiver} side: split at every byte boundary and one byte at a time`, () => {
      const stream = concat(
        frameFrom(sender, Opcode.Text, utf8('héllo wörld €𝄞')),
        frameFrom(sender, Opcode.Binary, patternBytes(130, 5)), // 16-bit length
        frameFrom(sender, Opcode.Text, utf8('frag'), { fin: false }),
        frameFrom(sender, Opcode.Ping, utf8('between')),
        frameFrom(sender, Opcode.Continuation, utf8('𝄞'), { fin: false }),
        frameFrom(sender, Opcode.Pong, new Uint8Array(0)),
        frameFrom(sender, Opcode.Continuation, utf8('ment'), { fin: true }),
        frameFrom(sender, Opcode.Binary, new Uint8Array(0)),
        frameFrom(sender, Opcode.Binary, bytes(1, 2, 3), { lengthBits: 64 }),
        frameFrom(sender, Opcode.Close, closePayload(1001, 'going')),
      )
      const events = assertSplitInvariant(receiver, stream)
      assert.deepEqual(events, [
        { type: 'message', data: hex(utf8('héllo wörld €𝄞')), isBinary: false },
        { type: 'message', data: hex(patternBytes(130, 5)), isBinary: true },
        { type: 'ping', data: hex(utf8('between')) },
        { type: 'pong', data: '' },
        { type: 'message', data: hex(utf8('frag𝄞ment')), isBinary: false },
        { type: 'message', data: '', isBinary: true },
        { type: 'message', data: '010203', isBinary: true },
        { type: 'closeReceived', code: 1001, reason: 'going' },
        ...(receiver === 'server' ? [{ type: 'closeTransport' as const }] : []),
      ])
    })
  }

  it('a short stream cut at every pair of boundaries gives the same events', () => {
    const stream = concat(
      frameFrom('client', Opcode.Text, utf8('a€'), { fin: false }),
      frameFrom('client', Opcode.Ping, utf8('x')),
      frameFrom('client', Opcode.Continuation, utf8('b')),
      frameFrom('client', Opcode.Binary, bytes(9, 8, 7)),
    )
    const whole = receiveEvents('server', [stream.slice()])
    for (let i = 1; i < stream.length; i++) {
      for (let j = i + 1; j < stream.length; j++) {
        const split = receiveEvents('server', chunksAt(stream, [i, j]))
        assert.deepEqual(split.events, whole.events, `cut at ${i} and ${j}`)
        assert.equal(split.wire, whole.wire)
      }
    }
    assert.equal(whole.events.length, 3)
  })

  it('unmasks a payload that arrives in pieces, whatever the mask phase and alignment', () => {
    const payload = patternBytes(301, 77)
    const key = bytes(0x01, 0x80, 0x7f, 0xfe)
    const frame = rawFrame(Opcode.Binary, payload, { mask: key })
    const headerLength = 2 + 2 + 4
    // Cuts inside the payload at every phase, with pieces both below and above the word-loop size.
    const cutSets = [
      [headerLength + 1],
      [headerLength + 2, headerLength + 3],
      [headerLength + 5, headerLength + 45, headerLength + 46, headerLength + 100],
      [headerLength + 33, headerLength + 67, headerLength + 101, headerLength + 203],
      [3, headerLength + 64, headerLength + 300],
    ]
    for (const cuts of cutSets) {
      for (const shift of [0, 1, 2, 3]) {
        // Place each chunk at a different byteOffset inside a bigger buffer.
        const chunks = chunksAt(frame, cuts).map((chunk) => {
          const big = new Uint8Array(chunk.length + 8)
          big.set(chunk, shift)
          return big.subarray(shift, shift + chunk.length)
        })
        const sink = new FrameRecorder()
        const parser = new FrameParser(sink, { expectMasked: true, maxFrameSize: 1 << 20 })
        for (const chunk of chunks) parser.push(chunk)
        assert.deepEqual(sink.events.at(-1), {
          type: 'end',
          fin: true,
          opcode: Opcode.Binary,
          length: 301,
          payload: hex(payload),
        })
        assert.ok(parser.atFrameBoundary)
      }
    }
  })

  it('a 65536-byte frame cut at many places reassembles exactly', () => {
    const payload = patternBytes(65536, 3)
    const frame = rawFrame(Opcode.Binary, payload, { mask: KEY })
    const cuts = [1, 2, 5, 9, 13, 14, 15, 16, 17, 18, 1000, 1001, 1003, 40000, 65549]
    for (const cut of cuts) {
      const sink = new FrameRecorder()
      const parser = new FrameParser(sink, { expectMasked: true, maxFrameSize: 65536 })
      for (const chunk of chunksAt(frame, [cut])) parser.push(chunk)
      assert.equal(sink.events.length, 2)
      assert.deepEqual(sink.events[0], { type: 'start', fin: true, rsv: 0, opcode: 2, length: 65536 })
      assert.equal((sink.events[1] as { payload: string }).payload, hex(payload), `cut at ${cut}`)
    }
  })

  it('a frame spanning chunks is assembled in the buffer the sink offers, once a quarter of it is here', () => {
    const payload = patternBytes(1000, 5)
    for (const mask of [KEY, undefined]) {
      const frame = rawFrame(Opcode.Binary, payload, { mask })
      const headerLength = frame.length - payload.length
      for (let cut = 1; cut < frame.length; cut++) {
        const offered: Uint8Array[] = []
        const pieces: Uint8Array[] = []
        const parser = new FrameParser(
          {
            frameStart: () => {},
            framePayload: (piece) => pieces.push(piece),
            frameEnd: () => {},
            frameBuffer: (header) => {
              const buffer = new Uint8Array(header.length)
              offered.push(buffer)
              return buffer
            },
          },
          { expectMasked: mask !== undefined, maxFrameSize: 1000 },
        )
        for (const chunk of chunksAt(frame, [cut])) parser.push(chunk)
        const firstPiece = cut - headerLength
        // Asked for only when the payload spans both chunks and the first piece is ≥ 1/4 of it.
        const expectBuffer = firstPiece > 0 && firstPiece * 4 >= payload.length
        assert.equal(offered.length, expectBuffer ? 1 : 0, `cut at ${cut}`)
        assert.equal(hex(concat(...pieces)), hex(payload), `cut at ${cut}`)
        if (expectBuffer) {
          assert.equal(hex(offered[0]!), hex(payload), `cut at ${cut}: the buffer holds the payload`)
          for (const piece of pieces) assert.equal(piece.buffer, offered[0]!.buffer, 'pieces are views of it')
        }
      }
    }
  })

  it('a one-frame message spanning reads is delivered as a fresh buffer, byte-exact, text checked', () => {
    const text = 'é'.repeat(500)
    const frame = rawFrame(Opcode.Text, utf8(text), { mask: KEY })
    const chunks = chunksAt(frame, [700])
    const { events, recorder } = receiveEvents('server', chunks)
    assert.deepEqual(events, [{ type: 'message', data: hex(utf8(text)), isBinary: false }])
    const data = recorder.messageData[0]!
    assert.ok(data.buffer !== chunks[0]!.buffer && data.buffer !== chunks[1]!.buffer, 'not a view of a read')
    // An invalid byte in the second read fails with 1007 as it arrives, before the frame ends.
    const bad = utf8(text)
    bad[800] = 0xff
    const [first, second] = chunksAt(rawFrame(Opcode.Text, bad, { mask: KEY }), [700, 850])
    assertFails('server', [first!, second!], ProtocolErrorCode.InvalidUtf8, 1007)
  })

  it('FrameParser reports headers and never an empty payload piece', () => {
    const sink = new FrameRecorder()
    const parser = new FrameParser(sink, { expectMasked: false, maxFrameSize: 1000 })
    const stream = concat(
      rawFrame(Opcode.Text, new Uint8Array(0), { fin: false }),
      rawFrame(Opcode.Continuation, utf8('x')),
    )
    for (const chunk of oneByteChunks(stream)) {
      parser.push(chunk)
      parser.push(new Uint8Array(0))
    }
    assert.deepEqual(sink.events, [
      { type: 'start', fin: false, rsv: 0, opcode: 1, length: 0 },
      { type: 'end', fin: false, opcode: 1, length: 0, payload: '' },
      { type: 'start', fin: true, rsv: 0, opcode: 0, length: 1 },
      { type: 'end', fin: true, opcode: 0, length: 1, payload: '78' },
    ])
  })

  it('FrameParser accepts the RSV bits an extension allows, and only those', () => {
    const sink = new FrameRecorder()
    const parser = new FrameParser(sink, { expectMasked: false, maxFrameSize: 100, allowedRsv: 0x40 })
    parser.push(rawFrame(Opcode.Text, utf8('z'), { rsv: 0x40 }))
    assert.deepEqual(sink.events[0], { type: 'start', fin: true, rsv: 0x40, opcode: 1, length: 1 })
    assert.throws(
      () => parser.push(rawFrame(Opcode.Text, utf8('z'), { rsv: 0x20 })),
      (e: unknown) => e instanceof ProtocolError && e.code === ProtocolErrorCode.ReservedBits,
    )
  })

  it('FrameParser.stop() drops the rest of the chunk being parsed', () => {
    let parser!: FrameParser
    const seen: number[] = []
    parser = new FrameParser(
      {
        frameStart: (h) => seen.push(h.opcode),
        framePayload: () => {},
        frameEnd: () => parser.stop(),
      },
      { expectMasked: false, maxFrameSize: 100 },
    )
    parser.push(concat(rawFrame(Opcode.Text, utf8('a')), rawFrame(Opcode.Binary, utf8('b'))))
    assert.deepEqual(seen, [1])
    assert.equal(parser.isStopped, true)
  })
})

describe('frame-level protocol violations', () => {
  it('reserved bits without an extension fail with 1002', () => {
    for (const rsv of [0x40, 0x20, 0x10, 0x70]) {
      assertFails(
        'server',
        frameFrom('client', Opcode.Text, utf8('x'), { rsv }),
        'RALLY_ERR_RESERVED_BITS',
        1002,
      )
      assertFails(
        'client',
        frameFrom('server', Opcode.Ping, undefined, { rsv }),
        'RALLY_ERR_RESERVED_BITS',
        1002,
      )
    }
  })

  it('unknown opcodes 0x3-0x7 and 0xB-0xF fail with 1002', () => {
    for (const opcode of [0x3, 0x4, 0x5, 0x6, 0x7, 0xb, 0xc, 0xd, 0xe, 0xf]) {
      assertFails('server', frameFrom('client', opcode, utf8('x')), ProtocolErrorCode.UnknownOpcode, 1002)
      assertFails('client', frameFrom('server', opcode), ProtocolErrorCode.UnknownOpcode, 1002)
    }
  })

  it('a server refuses an unmasked frame and a client a masked one, with 1002', () => {
    for (const opcode of [Opcode.Text, Opcode.Binary, Opcode.Ping, Opcode.Close, Opcode.Continuation]) {
      assertFails('server', rawFrame(opcode, utf8('x')), ProtocolErrorCode.MaskRequired, 1002)
      assertFails('client', rawFrame(opcode, utf8('x'), { mask: KEY }), ProtocolErrorCode.MaskForbidden, 1002)
    }
  })

  it('rejects masking from the first two bytes, before the rest of the header', () => {
    assertFails('server', bytes(0x81, 0x7e), ProtocolErrorCode.MaskRequired, 1002)
    assertFails('client', bytes(0x81, 0xff), ProtocolErrorCode.MaskForbidden, 1002)
    assertFails('client', [bytes(0x81), bytes(0xfe)], ProtocolErrorCode.MaskForbidden, 1002)
  })

  it('a control frame over 125 bytes fails with 1002', () => {
    for (const opcode of [Opcode.Ping, Opcode.Pong, Opcode.Close]) {
      const payload = patternBytes(126)
      assertFails('server', frameFrom('client', opcode, payload), ProtocolErrorCode.ControlFrameTooLong, 1002)
      assertFails('client', frameFrom('server', opcode, payload), ProtocolErrorCode.ControlFrameTooLong, 1002)
      // A 16-bit length of just 5 is still refused: the 7-bit field says 126.
      const lying = frameFrom('server', opcode, utf8('hello'), { lengthBits: 16 })
      assertFails('client', lying, ProtocolErrorCode.ControlFrameTooLong, 1002)
    }
    // 125 is fine.
    const { events } = receiveEvents('client', [frameFrom('server', Opcode.Ping, patternBytes(125))], {
      autoPong: false,
    })
    assert.deepEqual(events, [{ type: 'ping', data: hex(patternBytes(125)) }])
  })

  it('a fragmented control frame fails with 1002', () => {
    for (const opcode of [Opcode.Ping, Opcode.Pong, Opcode.Close]) {
      const frame = frameFrom('client', opcode, utf8('x'), { fin: false })
      assertFails('server', frame, ProtocolErrorCode.ControlFrameFragmented, 1002)
      // Decided by the first two bytes.
      assertFails('server', frame.subarray(0, 2), ProtocolErrorCode.ControlFrameFragmented, 1002)
    }
  })

  it('a 64-bit length with its most significant bit set fails with 1002 before any payload', () => {
    const header = bytes(0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1, ...MASK_KEY)
    assertFails('server', header, ProtocolErrorCode.LengthOutOfRange, 1002)
    assertFails(
      'client',
      bytes(0x82, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff),
      'RALLY_ERR_LENGTH_OUT_OF_RANGE',
      1002,
    )
  })

  it('a 64-bit length beyond 2^53 fails with 1009 (too big), not a crash', () => {
    assertFails(
      'client',
      bytes(0x82, 0x7f, 0x00, 0x20, 0, 0, 0, 0, 0, 0),
      ProtocolErrorCode.FrameTooLarge,
      1009,
    )
    assertFails(
      'client',
      bytes(0x82, 0x7f, 0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0),
      ProtocolErrorCode.FrameTooLarge,
      1009,
    )
  })

  it('the failure close frame is written even mid-stream, after earlier good frames', () => {
    const { recorder } = assertFails(
      'server',
      concat(frameFrom('client', Opcode.Binary, bytes(1)), frameFrom('client', 0x3)),
      ProtocolErrorCode.UnknownOpcode,
      1002,
      { allowMessages: true },
    )
    assert.deepEqual(recorder.events, [
      { type: 'message', data: '01', isBinary: true },
      { type: 'closeTransport' },
      { type: 'protocolError', code: ProtocolErrorCode.UnknownOpcode, closeCode: 1002 },
    ])
    const frames = recorder.frames()
    assert.equal(frames.length, 1)
    assert.equal(frames[0]!.opcode, Opcode.Close)
    assert.equal(frames[0]!.masked, false)
    assert.equal(hex(frames[0]!.payload.subarray(0, 2)), '03ea')
  })
})
