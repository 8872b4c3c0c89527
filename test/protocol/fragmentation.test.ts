/**
 * Fragmentation (RFC 6455 5.4) and control frames between fragments (5.5).
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { Opcode, ProtocolErrorCode } from '../../src/protocol/index.js'
import {
  assertFails,
  assertSplitInvariant,
  bytes,
  concat,
  connect,
  frameFrom,
  hex,
  peerOf,
  receiveEvents,
  utf8,
} from './helpers.js'

for (const receiver of ['server', 'client'] as const) {
  const sender = peerOf(receiver)
  const frame = (opcode: number, payload?: Uint8Array, fin = true) =>
    frameFrom(sender, opcode, payload, { fin })

  describe(`fragmented messages received by a ${receiver}`, () => {
    it('reassembles text and binary messages from several frames', () => {
      const { events, recorder } = receiveEvents(receiver, [
        concat(
          frame(Opcode.Text, utf8('Hel'), false),
          frame(Opcode.Continuation, utf8('lo, '), false),
          frame(Opcode.Continuation, utf8('world'), true),
          frame(Opcode.Binary, bytes(1, 2), false),
          frame(Opcode.Continuation, bytes(3), true),
        ),
      ])
      assert.deepEqual(events, [
        { type: 'message', data: hex(utf8('Hello, world')), isBinary: false },
        { type: 'message', data: '010203', isBinary: true },
      ])
      assert.equal(recorder.messageData[0]!.length, 12)
    })

    it('accepts empty fragments anywhere in a message', () => {
      const { events } = receiveEvents(receiver, [
        concat(
          frame(Opcode.Text, undefined, false),
          frame(Opcode.Continuation, undefined, false),
          frame(Opcode.Continuation, utf8('x'), false),
          frame(Opcode.Continuation, undefined, true),
          frame(Opcode.Binary, undefined, false),
          frame(Opcode.Continuation, undefined, true),
        ),
      ])
      assert.deepEqual(events, [
        { type: 'message', data: '78', isBinary: false },
        { type: 'message', data: '', isBinary: true },
      ])
    })

    it('delivers control frames interleaved between fragments at once, and auto-pongs them', () => {
      const stream = concat(
        frame(Opcode.Text, utf8('a'), false),
        frame(Opcode.Ping, utf8('ping-1')),
        frame(Opcode.Continuation, utf8('b'), false),
        frame(Opcode.Pong, utf8('pong-1')),
        frame(Opcode.Ping, undefined),
        frame(Opcode.Continuation, utf8('c'), true),
      )
      const events = assertSplitInvariant(receiver, stream)
      assert.deepEqual(events, [
        { type: 'ping', data: hex(utf8('ping-1')) },
        { type: 'pong', data: hex(utf8('pong-1')) },
        { type: 'ping', data: '' },
        { type: 'message', data: hex(utf8('abc')), isBinary: false },
      ])
      const { recorder } = receiveEvents(receiver, [stream])
      const written = recorder.frames()
      assert.deepEqual(
        written.map((f) => [f.opcode, hex(f.payload), f.masked]),
        [
          [Opcode.Pong, hex(utf8('ping-1')), receiver === 'client'],
          [Opcode.Pong, '', receiver === 'client'],
        ],
      )
    })

    it('accepts a code point split across fragments', () => {
      const clef = utf8('𝄞') // f0 9d 84 9e
      const euro = utf8('€') // e2 82 ac
      const stream = concat(
        frame(Opcode.Text, concat(utf8('a'), clef.subarray(0, 1)), false),
        frame(Opcode.Continuation, clef.subarray(1, 2), false),
        frame(Opcode.Continuation, concat(clef.subarray(2), euro.subarray(0, 2)), false),
        frame(Opcode.Continuation, concat(euro.subarray(2), utf8('z')), true),
      )
      const events = assertSplitInvariant(receiver, stream)
      assert.deepEqual(events, [{ type: 'message', data: hex(utf8('a𝄞€z')), isBinary: false }])
    })

    it('a close frame in the middle of a fragmented message drops the partial message', () => {
      const { events } = receiveEvents(receiver, [
        concat(frame(Opcode.Text, utf8('partial'), false), frame(Opcode.Close, bytes(0x03, 0xe8))),
      ])
      assert.deepEqual(events, [
        { type: 'closeReceived', code: 1000, reason: '' },
        ...(receiver === 'server' ? [{ type: 'closeTransport' as const }] : []),
      ])
    })

    it('a continuation frame without a message to continue fails with 1002', () => {
      assertFails(
        receiver,
        frame(Opcode.Continuation, utf8('x')),
        ProtocolErrorCode.UnexpectedContinuation,
        1002,
      )
      assertFails(
        receiver,
        frame(Opcode.Continuation, undefined, false),
        'RALLY_ERR_UNEXPECTED_CONTINUATION',
        1002,
      )
      // After a complete message, too.
      assertFails(
        receiver,
        concat(frame(Opcode.Text, utf8('done')), frame(Opcode.Continuation, utf8('more'))),
        ProtocolErrorCode.UnexpectedContinuation,
        1002,
        { allowMessages: true },
      )
      // Even after a ping that came between.
      assertFails(
        receiver,
        concat(frame(Opcode.Binary, utf8('x'), true), frame(Opcode.Ping), frame(Opcode.Continuation)),
        ProtocolErrorCode.UnexpectedContinuation,
        1002,
        { allowMessages: true },
      )
    })

    it('a new data frame inside a fragmented message fails with 1002', () => {
      for (const [first, second] of [
        [Opcode.Text, Opcode.Text],
        [Opcode.Text, Opcode.Binary],
        [Opcode.Binary, Opcode.Text],
        [Opcode.Binary, Opcode.Binary],
      ] as const) {
        const stream = concat(frame(first, utf8('a'), false), frame(second, utf8('b'), true))
        assertFails(receiver, stream, ProtocolErrorCode.ExpectedContinuation, 1002)
        // Decided on the header: the second frame's payload is not needed.
        assertFails(
          receiver,
          stream.subarray(0, stream.length - 1),
          ProtocolErrorCode.ExpectedContinuation,
          1002,
        )
      }
    })
  })
}

describe('sending fragmented messages', () => {
  it('a client fragmented message with a ping in between is parsed back by a server', () => {
    const client = connect('client')
    client.connection.sendFragment(Opcode.Binary, bytes(1, 2), false)
    client.connection.ping(utf8('mid'))
    client.connection.sendFragment(Opcode.Continuation, bytes(), false)
    client.connection.sendFragment(Opcode.Continuation, bytes(3), true)
    const { events } = receiveEvents('server', [client.recorder.wire()])
    assert.deepEqual(events, [
      { type: 'ping', data: hex(utf8('mid')) },
      { type: 'message', data: '010203', isBinary: true },
    ])
  })

  it('refuses fragments out of sequence with TypeError', () => {
    const { connection, recorder } = connect('server')
    assert.throws(() => connection.sendFragment(Opcode.Continuation, utf8('x'), true), TypeError)
    connection.sendFragment(Opcode.Text, utf8('a'), false)
    assert.throws(() => connection.sendFragment(Opcode.Binary, utf8('x'), true), TypeError)
    assert.throws(() => connection.sendFragment(Opcode.Text, utf8('x'), false), TypeError)
    connection.sendFragment(Opcode.Continuation, utf8('b'), true)
    assert.deepEqual(
      recorder.frames().map((f) => [f.opcode, f.fin, hex(f.payload)]),
      [
        [Opcode.Text, false, '61'],
        [Opcode.Continuation, true, '62'],
      ],
    )
  })

  it('holds whole messages sent while a fragmented one is open, but not control frames (RFC 6455 5.4)', () => {
    const { connection, recorder } = connect('client')
    connection.sendFragment(Opcode.Binary, bytes(1), false)
    assert.equal(connection.sendText('held'), true)
    assert.equal(connection.ping(utf8('now')), true)
    connection.sendFragment(Opcode.Continuation, bytes(2), true)
    assert.deepEqual(
      recorder.frames().map((f) => [f.opcode, f.fin, hex(f.payload)]),
      [
        [Opcode.Binary, false, '01'],
        [Opcode.Ping, true, hex(utf8('now'))],
        [Opcode.Continuation, true, '02'],
        [Opcode.Text, true, hex(utf8('held'))],
      ],
    )
    const { events } = receiveEvents('server', [recorder.wire()])
    assert.deepEqual(events, [
      { type: 'ping', data: hex(utf8('now')) },
      { type: 'message', data: '0102', isBinary: true },
      { type: 'message', data: hex(utf8('held')), isBinary: false },
    ])
  })

  it('refuses to send fragments once closing has begun', () => {
    const { connection, recorder } = connect('server')
    assert.equal(connection.sendFragment(Opcode.Text, utf8('a'), false), true)
    connection.close(1000)
    assert.equal(connection.sendFragment(Opcode.Continuation, utf8('b'), true), false)
    assert.deepEqual(
      recorder.frames().map((f) => f.opcode),
      [Opcode.Text, Opcode.Close],
    )
  })
})
