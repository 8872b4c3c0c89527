/**
 * Close frames and the closing handshake (RFC 6455 5.5.1, 7.1, 7.4), pings and pongs (5.5.2-3).
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import {
  CloseCode,
  ConnectionState,
  encodeClosePayload,
  isValidWireCloseCode,
  MAX_CLOSE_REASON_BYTES,
  Opcode,
  ProtocolErrorCode,
} from '../../src/protocol/index.js'
import {
  assertFails,
  bytes,
  closePayload,
  concat,
  connect,
  expectedCloseFrame,
  frameFrom,
  hex,
  MASK_KEY,
  patternBytes,
  peerOf,
  rawFrame,
  receiveEvents,
  utf8,
} from './helpers.js'

const INVALID_CODES = [0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]
const VALID_CODES = [
  1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999,
]

describe('close codes and payloads', () => {
  it('isValidWireCloseCode accepts exactly 1000-1003, 1007-1014 and 3000-4999', () => {
    for (const code of VALID_CODES) assert.equal(isValidWireCloseCode(code), true, `${code}`)
    for (const code of INVALID_CODES) assert.equal(isValidWireCloseCode(code), false, `${code}`)
    for (const code of [1000.5, Number.NaN, -1000, Infinity]) assert.equal(isValidWireCloseCode(code), false)
    let count = 0
    for (let code = 0; code < 70000; code++) if (isValidWireCloseCode(code)) count++
    assert.equal(count, 4 + 8 + 2000)
  })

  it('encodeClosePayload writes the code big-endian and the reason as UTF-8', () => {
    assert.equal(hex(encodeClosePayload()), '')
    assert.equal(hex(encodeClosePayload(1000)), '03e8')
    assert.equal(hex(encodeClosePayload(4999, 'é')), '1387c3a9')
    const longest = 'x'.repeat(MAX_CLOSE_REASON_BYTES)
    assert.equal(encodeClosePayload(1000, longest).length, 125)
  })

  it('encodeClosePayload refuses codes that may not be sent and reasons over 123 bytes', () => {
    for (const code of INVALID_CODES) assert.throws(() => encodeClosePayload(code), RangeError)
    assert.throws(() => encodeClosePayload(1000, 'x'.repeat(124)), RangeError)
    assert.throws(() => encodeClosePayload(1000, 'é'.repeat(62)), RangeError) // 124 bytes
    assert.doesNotThrow(() => encodeClosePayload(1000, `${'é'.repeat(61)}x`)) // 123 bytes
    assert.throws(() => encodeClosePayload(undefined, 'reason without code'), TypeError)
  })
})

for (const receiver of ['server', 'client'] as const) {
  const sender = peerOf(receiver)
  const closeFrame = (payload: Uint8Array) => frameFrom(sender, Opcode.Close, payload)

  describe(`close frames received by a ${receiver}`, () => {
    it('accepts every valid close code and echoes it', () => {
      for (const code of VALID_CODES) {
        const { events, recorder, connection } = receiveEvents(receiver, [
          closeFrame(closePayload(code, 'r')),
        ])
        assert.deepEqual(events[0], { type: 'closeReceived', code, reason: 'r' })
        assert.equal(hex(recorder.wire()), expectedCloseFrame(receiver, code, 'r'), `echo of ${code}`)
        assert.equal(connection.state, ConnectionState.CLOSING)
      }
    })

    it('refuses invalid close codes with 1002', () => {
      for (const code of INVALID_CODES) {
        assertFails(receiver, closeFrame(closePayload(code)), ProtocolErrorCode.InvalidCloseCode, 1002)
      }
    })

    it('refuses a 1-byte close payload with 1002', () => {
      assertFails(receiver, closeFrame(bytes(0x03)), ProtocolErrorCode.InvalidClosePayload, 1002)
    })

    it('refuses a close reason that is not UTF-8 with 1007', () => {
      for (const bad of [bytes(0xff), bytes(0xc3), bytes(0xed, 0xa0, 0x80), bytes(0x61, 0x80)]) {
        assertFails(receiver, closeFrame(closePayload(1000, bad)), ProtocolErrorCode.InvalidCloseReason, 1007)
      }
    })

    it('decodes a UTF-8 reason of up to 123 bytes, even split across chunks', () => {
      const reason = `${'€'.repeat(40)}abc` // 123 bytes
      const frame = closeFrame(closePayload(4000, reason))
      const { events } = receiveEvents(receiver, [frame.slice(0, 20), frame.slice(20, 21), frame.slice(21)])
      assert.deepEqual(events[0], { type: 'closeReceived', code: 4000, reason })
    })

    it('an empty close frame is reported as 1005 and answered with an empty close frame', () => {
      const { events, recorder, connection } = receiveEvents(receiver, [closeFrame(new Uint8Array(0))])
      assert.deepEqual(events[0], { type: 'closeReceived', code: CloseCode.NoStatus, reason: '' })
      assert.equal(
        hex(recorder.wire()),
        hex(rawFrame(Opcode.Close, undefined, { mask: receiver === 'client' ? MASK_KEY : undefined })),
      )
      const info = connection.transportClosed()
      assert.deepEqual(info, { code: 1005, reason: '', wasClean: true, error: undefined })
    })

    it('ignores everything after the close frame', () => {
      const { events, recorder } = receiveEvents(receiver, [
        concat(
          closeFrame(closePayload(1000)),
          frameFrom(sender, Opcode.Text, utf8('late')),
          frameFrom(sender, Opcode.Ping, utf8('late')),
          bytes(0xff, 0xff),
        ),
        frameFrom(sender, Opcode.Binary, utf8('later')),
      ])
      assert.deepEqual(
        events.filter((e) => e.type !== 'closeTransport'),
        [{ type: 'closeReceived', code: 1000, reason: '' }],
      )
      assert.equal(recorder.frames().length, 1, 'only the close echo was written')
      assert.equal(recorder.errors.length, 0)
    })
  })
}

describe('closing handshake', () => {
  it('server receives a close: echoes the code and reason and asks to close the transport', () => {
    const { connection, recorder } = connect('server')
    connection.receive(frameFrom('client', Opcode.Close, closePayload(1001, 'bye')))
    assert.deepEqual(recorder.events, [
      { type: 'closeReceived', code: 1001, reason: 'bye' },
      { type: 'closeTransport' },
    ])
    // 0x88, length 5, code 1001 (03e9), "bye" (627965)
    assert.equal(hex(recorder.wire()), '880503e9627965')
    assert.equal(connection.state, ConnectionState.CLOSING)
    assert.equal(connection.closeHandshakeDone, true)
    assert.deepEqual(connection.transportClosed(), {
      code: 1001,
      reason: 'bye',
      wasClean: true,
      error: undefined,
    })
    assert.equal(connection.state, ConnectionState.CLOSED)
  })

  it('client receives a close: echoes the code and reason (masked) and waits for the server to close', () => {
    const { connection, recorder } = connect('client')
    connection.receive(frameFrom('server', Opcode.Close, closePayload(1000, 'done')))
    assert.deepEqual(recorder.events, [{ type: 'closeReceived', code: 1000, reason: 'done' }])
    assert.equal(recorder.closeTransportCalls, 0)
    assert.equal(
      hex(recorder.wire()),
      hex(rawFrame(Opcode.Close, closePayload(1000, 'done'), { mask: MASK_KEY })),
    )
    assert.equal(connection.isCloseSent, true)
    assert.deepEqual(connection.transportClosed(), {
      code: 1000,
      reason: 'done',
      wasClean: true,
      error: undefined,
    })
  })

  for (const side of ['server', 'client'] as const) {
    it(`${side} closes first, the peer replies: clean close`, () => {
      const { connection, recorder } = connect(side)
      connection.close(4001, 'see you')
      assert.equal(connection.state, ConnectionState.CLOSING)
      assert.equal(connection.canSend, false)
      assert.equal(hex(recorder.wire()), expectedCloseFrame(side, 4001, 'see you'))
      // Messages that were already in flight are still delivered while closing.
      connection.receive(frameFrom(peerOf(side), Opcode.Text, utf8('in flight')))
      connection.receive(frameFrom(peerOf(side), Opcode.Close, closePayload(4001)))
      assert.deepEqual(recorder.events, [
        { type: 'message', data: hex(utf8('in flight')), isBinary: false },
        { type: 'closeReceived', code: 4001, reason: '' },
        ...(side === 'server' ? [{ type: 'closeTransport' as const }] : []),
      ])
      assert.equal(recorder.frames().length, 1, 'no second close frame')
      assert.deepEqual(connection.transportClosed(), {
        code: 4001,
        reason: '',
        wasClean: true,
        error: undefined,
      })
    })

    it(`${side}: the transport closing without a close frame is 1006, not clean`, () => {
      const { connection } = connect(side)
      assert.deepEqual(connection.transportClosed(), {
        code: 1006,
        reason: '',
        wasClean: false,
        error: undefined,
      })
      const other = connect(side).connection
      other.close(1000)
      assert.deepEqual(other.transportClosed(), { code: 1006, reason: '', wasClean: false, error: undefined })
      assert.equal(other.state, ConnectionState.CLOSED)
    })

    it(`${side}: sending after close returns false and writes nothing`, () => {
      const { connection, recorder } = connect(side)
      connection.close()
      const written = recorder.wire().length
      assert.equal(connection.sendText('x'), false)
      assert.equal(connection.sendBinary(bytes(1)), false)
      assert.equal(connection.ping(), false)
      assert.equal(connection.pong(), false)
      connection.close(1000) // a second close does nothing
      assert.equal(recorder.wire().length, written)
      connection.transportClosed()
      assert.equal(connection.sendText('x'), false)
      connection.close(1000)
      assert.equal(recorder.wire().length, written)
    })

    it(`${side}: close() with an empty payload sends an empty close frame`, () => {
      const { connection, recorder } = connect(side)
      connection.close()
      const [frame] = recorder.frames()
      assert.equal(frame!.opcode, Opcode.Close)
      assert.equal(frame!.payload.length, 0)
    })

    it(`${side}: close() refuses invalid codes and long reasons with RangeError, sending nothing`, () => {
      const { connection, recorder } = connect(side)
      for (const code of INVALID_CODES) assert.throws(() => connection.close(code), RangeError)
      assert.throws(() => connection.close(1000, 'x'.repeat(124)), RangeError)
      assert.throws(() => connection.close(undefined, 'x'), TypeError)
      assert.equal(recorder.writes.length, 0)
      assert.equal(connection.state, ConnectionState.OPEN)
      connection.close(1000, 'x'.repeat(123))
      assert.equal(recorder.frames()[0]!.payload.length, 125)
    })

    it(`${side}: fail() sends the close code and asks for the transport to close`, () => {
      const { connection, recorder } = connect(side)
      connection.fail(1011)
      assert.equal(hex(recorder.wire()), expectedCloseFrame(side, 1011, ''))
      assert.equal(recorder.closeTransportCalls, 1)
      connection.receive(frameFrom(peerOf(side), Opcode.Text, utf8('ignored')))
      assert.deepEqual(recorder.events, [{ type: 'closeTransport' }])
    })
  }
})

describe('ping and pong', () => {
  for (const side of ['server', 'client'] as const) {
    const sender = peerOf(side)

    it(`${side} answers a ping with a pong carrying the same payload`, () => {
      const payload = patternBytes(125, 4)
      const { connection, recorder } = connect(side)
      connection.receive(frameFrom(sender, Opcode.Ping, payload))
      assert.deepEqual(recorder.events, [{ type: 'ping', data: hex(payload) }])
      assert.equal(
        hex(recorder.wire()),
        hex(rawFrame(Opcode.Pong, payload, { mask: side === 'client' ? MASK_KEY : undefined })),
      )
    })

    it(`${side} does not auto-pong with autoPong false`, () => {
      const { connection, recorder } = connect(side, { autoPong: false })
      connection.receive(frameFrom(sender, Opcode.Ping, utf8('x')))
      assert.deepEqual(recorder.events, [{ type: 'ping', data: '78' }])
      assert.equal(recorder.writes.length, 0)
    })

    it(`${side} does not pong once its close frame was sent, but still reports the ping`, () => {
      const { connection, recorder } = connect(side)
      connection.close(1000)
      connection.receive(frameFrom(sender, Opcode.Ping, utf8('late')))
      assert.deepEqual(recorder.events, [{ type: 'ping', data: hex(utf8('late')) }])
      assert.deepEqual(
        recorder.frames().map((f) => f.opcode),
        [Opcode.Close],
      )
    })

    it(`${side}: ping and pong payloads over 125 bytes throw RangeError`, () => {
      const { connection, recorder } = connect(side)
      assert.throws(() => connection.ping(new Uint8Array(126)), RangeError)
      assert.throws(() => connection.pong(new Uint8Array(126)), RangeError)
      assert.equal(recorder.writes.length, 0)
      assert.equal(connection.ping(new Uint8Array(125)), true)
      assert.equal(connection.pong(utf8('p')), true)
      assert.deepEqual(
        recorder.frames().map((f) => [f.opcode, f.payload.length]),
        [
          [Opcode.Ping, 125],
          [Opcode.Pong, 1],
        ],
      )
    })
  }
})
