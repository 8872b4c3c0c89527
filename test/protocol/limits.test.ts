/**
 * Limits on everything a peer can grow (frame size, message size, fragment count), checked on the
 * declared lengths before a byte of payload is buffered.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import {
  Connection,
  DEFAULT_LIMITS,
  Opcode,
  ProtocolErrorCode,
  resolveLimits,
} from '../../src/protocol/index.js'
import {
  assertFails,
  bytes,
  concat,
  frameFrom,
  hex,
  MASK_KEY,
  patternBytes,
  peerOf,
  Recorder,
  receiveEvents,
  utf8,
} from './helpers.js'

describe('resolveLimits', () => {
  it('has safe defaults', () => {
    assert.deepEqual(resolveLimits(), {
      maxMessageSize: 16 * 1024 * 1024,
      maxFrameSize: 16 * 1024 * 1024,
      maxFragments: 4096,
      maxHeaderBytes: 16 * 1024,
      maxHeaderCount: 100,
    })
    assert.deepEqual(resolveLimits(), { ...DEFAULT_LIMITS })
    assert.ok(Object.isFrozen(DEFAULT_LIMITS))
  })

  it('maxFrameSize follows maxMessageSize unless set', () => {
    assert.equal(resolveLimits({ maxMessageSize: 1000 }).maxFrameSize, 1000)
    assert.equal(resolveLimits({ maxMessageSize: 1000, maxFrameSize: 10 }).maxFrameSize, 10)
    assert.equal(resolveLimits({ maxFragments: 3 }).maxMessageSize, DEFAULT_LIMITS.maxMessageSize)
  })

  it('refuses limits that are not non-negative safe integers', () => {
    for (const bad of [-1, 1.5, Number.NaN, Infinity, 2 ** 53]) {
      assert.throws(() => resolveLimits({ maxMessageSize: bad }), RangeError, `${bad}`)
      assert.throws(() => resolveLimits({ maxFragments: bad }), RangeError, `${bad}`)
      assert.throws(() => resolveLimits({ maxHeaderBytes: bad }), RangeError, `${bad}`)
    }
    assert.throws(
      () => new Connection('server', new Recorder(), { limits: { maxFrameSize: -5 } }),
      RangeError,
    )
  })
})

for (const receiver of ['server', 'client'] as const) {
  const sender = peerOf(receiver)

  describe(`limits on a ${receiver}`, () => {
    it('a frame over maxFrameSize fails with 1009 as soon as its header is complete', () => {
      const limits = { maxFrameSize: 1000 }
      for (const length of [1001, 65536, 2 ** 32]) {
        // Only the header: not a byte of payload is ever sent.
        const header = frameFrom(sender, Opcode.Binary, new Uint8Array(0), { declaredLength: length })
        assertFails(receiver, header, ProtocolErrorCode.FrameTooLarge, 1009, { limits })
        // Header fed one byte at a time.
        assertFails(
          receiver,
          Array.from(header, (b) => Uint8Array.of(b)),
          'RALLY_ERR_FRAME_TOO_LARGE',
          1009,
          {
            limits,
          },
        )
      }
      // At the limit exactly: accepted.
      const { events } = receiveEvents(receiver, [frameFrom(sender, Opcode.Binary, patternBytes(1000))], {
        limits,
      })
      assert.equal(events.length, 1)
    })

    it('maxFrameSize defaults to maxMessageSize', () => {
      const header = frameFrom(sender, Opcode.Text, new Uint8Array(0), { declaredLength: 101 })
      assertFails(receiver, header, ProtocolErrorCode.FrameTooLarge, 1009, {
        limits: { maxMessageSize: 100 },
      })
    })

    it('a message over maxMessageSize across fragments fails with 1009 on the header of the frame that passes it', () => {
      const limits = { maxMessageSize: 100, maxFrameSize: 60 }
      const first = frameFrom(sender, Opcode.Binary, patternBytes(60), { fin: false })
      const second = frameFrom(sender, Opcode.Continuation, new Uint8Array(0), {
        declaredLength: 41,
        fin: false,
      })
      assertFails(receiver, concat(first, second), ProtocolErrorCode.MessageTooLarge, 1009, { limits })
      // 100 exactly is fine, control frames in between do not count.
      const { events, recorder } = receiveEvents(
        receiver,
        [
          concat(
            frameFrom(sender, Opcode.Text, utf8('a'.repeat(60)), { fin: false }),
            frameFrom(sender, Opcode.Ping, patternBytes(50)),
            frameFrom(sender, Opcode.Continuation, utf8('b'.repeat(40))),
          ),
        ],
        { limits },
      )
      assert.equal(recorder.errors.length, 0)
      assert.deepEqual(events.at(-1), {
        type: 'message',
        data: hex(utf8(`${'a'.repeat(60)}${'b'.repeat(40)}`)),
        isBinary: false,
      })
    })

    it('the message size count starts again with each message', () => {
      const limits = { maxMessageSize: 10 }
      const stream = concat(
        frameFrom(sender, Opcode.Binary, patternBytes(10)),
        frameFrom(sender, Opcode.Binary, patternBytes(6), { fin: false }),
        frameFrom(sender, Opcode.Continuation, patternBytes(4)),
      )
      const { recorder } = receiveEvents(receiver, [stream], { limits })
      assert.equal(recorder.errors.length, 0)
      assert.equal(recorder.events.length, 2)
    })

    it('more than maxFragments frames in one message fails with 1009', () => {
      const limits = { maxFragments: 3 }
      const frames = [
        frameFrom(sender, Opcode.Text, utf8('a'), { fin: false }),
        frameFrom(sender, Opcode.Ping),
        frameFrom(sender, Opcode.Continuation, utf8('b'), { fin: false }),
        frameFrom(sender, Opcode.Pong),
        frameFrom(sender, Opcode.Continuation, utf8('c'), { fin: false }),
      ]
      assertFails(
        receiver,
        concat(...frames, frameFrom(sender, Opcode.Continuation, utf8('d'))),
        ProtocolErrorCode.TooManyFragments,
        1009,
        { limits, autoPong: false },
      )
      // Three fragments (control frames do not count) is fine.
      const ok = receiveEvents(
        receiver,
        [concat(...frames.slice(0, 4), frameFrom(sender, Opcode.Continuation, utf8('c')))],
        {
          limits,
          autoPong: false,
        },
      )
      assert.equal(ok.recorder.errors.length, 0)
      assert.deepEqual(ok.events.at(-1), { type: 'message', data: hex(utf8('abc')), isBinary: false })
    })

    it('the default fragment limit stops a flood of empty fragments', () => {
      const fragment = frameFrom(sender, Opcode.Continuation, undefined, { fin: false })
      const flood = [frameFrom(sender, Opcode.Binary, undefined, { fin: false })]
      for (let i = 1; i < DEFAULT_LIMITS.maxFragments; i++) flood.push(fragment)
      const { recorder } = receiveEvents(receiver, [concat(...flood)])
      assert.equal(recorder.errors.length, 0)
      assertFails(receiver, concat(...flood, fragment), ProtocolErrorCode.TooManyFragments, 1009)
    })
  })
}

describe('limit failures write the right close frame', () => {
  it('server: 1009 close frame, unmasked, reason from the error', () => {
    const { recorder, error } = assertFails(
      'server',
      frameFrom('client', Opcode.Binary, undefined, { declaredLength: 11 }),
      ProtocolErrorCode.FrameTooLarge,
      1009,
      { limits: { maxMessageSize: 10 } },
    )
    const frames = recorder.frames()
    assert.equal(frames.length, 1)
    assert.equal(frames[0]!.masked, false)
    assert.equal(hex(frames[0]!.payload.subarray(0, 2)), '03f1')
    assert.equal(new TextDecoder().decode(frames[0]!.payload.subarray(2)), error.message)
  })

  it('client: 1009 close frame, masked', () => {
    const { recorder } = assertFails(
      'client',
      frameFrom('server', Opcode.Binary, undefined, { declaredLength: 11 }),
      ProtocolErrorCode.FrameTooLarge,
      1009,
      { limits: { maxMessageSize: 10 } },
    )
    const [frame] = recorder.frames()
    assert.equal(frame!.masked, true)
    assert.equal(hex(frame!.mask), hex(MASK_KEY))
    assert.equal(hex(frame!.payload.subarray(0, 2)), hex(bytes(0x03, 0xf1)))
  })
})
