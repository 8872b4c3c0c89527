/**
 * UTF-8 (RFC 6455 8.1, RFC 3629): the incremental validator against Node's TextDecoder in fatal
 * mode as the reference, and text-message failures on the connection.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { isValidUtf8, Opcode, ProtocolErrorCode, Utf8Validator } from '../../src/protocol/index.js'
import {
  assertFails,
  bytes,
  chunksAt,
  concat,
  connect,
  frameFrom,
  hex,
  peerOf,
  receiveEvents,
  utf8,
} from './helpers.js'

/** Reference: the whole buffer is UTF-8. */
function referenceValid(data: Uint8Array): boolean {
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(data)
    return true
  } catch {
    return false
  }
}

/**
 * Reference for an incremental validator: for each piece, whether the bytes so far can still
 * begin valid UTF-8 (a streaming fatal TextDecoder throws at the first byte that rules it out).
 * Returns the index of the first piece that fails, or -1, and whether the end is complete.
 */
function referencePieces(pieces: Uint8Array[]): { firstBad: number; valid: boolean } {
  const decoder = new TextDecoder('utf-8', { fatal: true })
  for (let i = 0; i < pieces.length; i++) {
    try {
      decoder.decode(pieces[i], { stream: true })
    } catch {
      return { firstBad: i, valid: false }
    }
  }
  try {
    decoder.decode()
    return { firstBad: -1, valid: true }
  } catch {
    return { firstBad: -1, valid: false }
  }
}

/** Runs the validator over the pieces: index of the first piece push() refused, or -1. */
function validatorPieces(pieces: Uint8Array[]): { firstBad: number; valid: boolean } {
  const validator = new Utf8Validator()
  for (let i = 0; i < pieces.length; i++) {
    if (!validator.push(pieces[i]!)) return { firstBad: i, valid: false }
  }
  return { firstBad: -1, valid: validator.complete }
}

function cutsFor(length: number, rawCuts: number[]): number[] {
  return [...new Set(rawCuts.map((c) => c % (length + 1)))].sort((a, b) => a - b)
}

/** Bytes that make UTF-8 interesting: ASCII, every lead class, the continuation range edges. */
const interestingByte = fc.constantFrom(
  0x00,
  0x41,
  0x7f,
  0x80,
  0x8f,
  0x90,
  0x9f,
  0xa0,
  0xbf,
  0xc0,
  0xc1,
  0xc2,
  0xdf,
  0xe0,
  0xe1,
  0xec,
  0xed,
  0xee,
  0xef,
  0xf0,
  0xf1,
  0xf3,
  0xf4,
  0xf5,
  0xf8,
  0xfe,
  0xff,
)
/** Byte soup that is often almost UTF-8: random bytes, interesting bytes and valid sequences. */
const utf8ishBytes = fc
  .array(
    fc.oneof(
      fc.uint8Array({ minLength: 1, maxLength: 4 }),
      interestingByte.map((b) => Uint8Array.of(b)),
      fc.string({ unit: 'binary', minLength: 1, maxLength: 4 }).map((s) => utf8(s)),
      fc.string({ unit: 'binary', minLength: 1, maxLength: 3 }).map((s) => utf8(s).subarray(1)),
      fc.constantFrom(
        bytes(0xed, 0xa0, 0x80),
        bytes(0xed, 0x9f, 0xbf),
        bytes(0xe0, 0xa0, 0x80),
        bytes(0xf0, 0x90, 0x80, 0x80),
        bytes(0xf4, 0x8f, 0xbf, 0xbf),
      ),
    ),
    { maxLength: 40 },
  )
  .map((parts) => concat(...parts))

describe('Utf8Validator and isValidUtf8 against TextDecoder({ fatal: true })', () => {
  const table: [string, number[], boolean][] = [
    ['empty', [], true],
    ['ASCII', [0x48, 0x69], true],
    ['2-byte é', [0xc3, 0xa9], true],
    ['3-byte €', [0xe2, 0x82, 0xac], true],
    ['4-byte 𝄞', [0xf0, 0x9d, 0x84, 0x9e], true],
    ['U+FFFF', [0xef, 0xbf, 0xbf], true],
    ['U+10FFFF', [0xf4, 0x8f, 0xbf, 0xbf], true],
    ['U+D7FF (just below surrogates)', [0xed, 0x9f, 0xbf], true],
    ['U+E000 (just above surrogates)', [0xee, 0x80, 0x80], true],
    ['surrogate U+D800 (ED A0 80)', [0xed, 0xa0, 0x80], false],
    ['surrogate U+DFFF (ED BF BF)', [0xed, 0xbf, 0xbf], false],
    ['surrogate pair encoded as CESU-8', [0xed, 0xa0, 0xbd, 0xed, 0xb2, 0xa9], false],
    ['overlong NUL (C0 80)', [0xc0, 0x80], false],
    ['overlong C1 BF', [0xc1, 0xbf], false],
    ['overlong 3-byte (E0 80 80)', [0xe0, 0x80, 0x80], false],
    ['overlong 3-byte (E0 9F BF)', [0xe0, 0x9f, 0xbf], false],
    ['overlong 4-byte (F0 80 80 80)', [0xf0, 0x80, 0x80, 0x80], false],
    ['overlong 4-byte (F0 8F BF BF)', [0xf0, 0x8f, 0xbf, 0xbf], false],
    ['above U+10FFFF (F4 90 80 80)', [0xf4, 0x90, 0x80, 0x80], false],
    ['lone continuation byte', [0x80], false],
    ['continuation after ASCII', [0x41, 0xbf], false],
    ['truncated 2-byte', [0xc3], false],
    ['truncated 3-byte', [0xe2, 0x82], false],
    ['truncated 4-byte', [0xf0, 0x9d, 0x84], false],
    ['lead followed by ASCII', [0xe2, 0x41, 0x41], false],
    ['five-byte form (F8 88 80 80 80)', [0xf8, 0x88, 0x80, 0x80, 0x80], false],
  ]
  for (const lead of [0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa, 0xfb, 0xfc, 0xfd, 0xfe, 0xff]) {
    table.push([`byte ${lead.toString(16).toUpperCase()}`, [lead, 0x80, 0x80, 0x80], false])
  }

  for (const [name, input, expected] of table) {
    it(`${name}: ${expected ? 'valid' : 'invalid'}, in every split`, () => {
      const data = Uint8Array.from(input)
      assert.equal(referenceValid(data), expected, 'reference agrees with the table')
      assert.equal(isValidUtf8(data), expected)
      assert.deepEqual(validatorPieces([data]), referencePieces([data]))
      // Embedded in ASCII, cut at every pair of places, and one byte at a time.
      const framed = concat(utf8('ab'), data, utf8('cd'))
      for (let i = 0; i <= framed.length; i++) {
        for (let j = i; j <= framed.length; j++) {
          const pieces = chunksAt(framed, [i, j])
          const got = validatorPieces(pieces)
          assert.deepEqual(got, referencePieces(pieces), `cut at ${i}, ${j}`)
          assert.equal(got.valid, expected)
        }
      }
      const single = Array.from(framed, (b) => Uint8Array.of(b))
      assert.deepEqual(validatorPieces(single), referencePieces(single))
    })
  }

  it('random byte arrays: same verdict, and the failure is found in the same piece', () => {
    fc.assert(
      fc.property(
        fc.oneof(utf8ishBytes, fc.uint8Array({ maxLength: 64 })),
        fc.array(fc.nat(), { maxLength: 8 }),
        (data, rawCuts) => {
          assert.equal(isValidUtf8(data), referenceValid(data))
          const pieces = chunksAt(data, cutsFor(data.length, rawCuts))
          assert.deepEqual(validatorPieces(pieces), referencePieces(pieces))
        },
      ),
      { numRuns: 3000 },
    )
  })

  it('random valid strings split at random byte positions are accepted', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: 'binary', maxLength: 200 }),
        fc.array(fc.nat(), { maxLength: 10 }),
        (text, rawCuts) => {
          const data = utf8(text)
          const pieces = chunksAt(data, cutsFor(data.length, rawCuts))
          assert.deepEqual(validatorPieces(pieces), { firstBad: -1, valid: true })
        },
      ),
      { numRuns: 1000 },
    )
  })

  it('a validator can be reset and reused', () => {
    const validator = new Utf8Validator()
    assert.equal(validator.push(bytes(0xe2, 0x82)), true)
    assert.equal(validator.complete, false)
    validator.reset()
    assert.equal(validator.complete, true)
    assert.equal(validator.push(bytes(0x41)), true)
    assert.equal(validator.complete, true)
  })
})

for (const receiver of ['server', 'client'] as const) {
  const sender = peerOf(receiver)
  describe(`text messages received by a ${receiver}`, () => {
    it('invalid UTF-8 fails with 1007 before the rest of the frame arrives', () => {
      const payload = concat(utf8('hello '), bytes(0xff), utf8('x'.repeat(200)))
      const frame = frameFrom(sender, Opcode.Text, payload)
      const headerLength = 2 + 2 + (sender === 'client' ? 4 : 0)
      // Header and the first 7 payload bytes only: the bad byte is the last one fed.
      const prefix = frame.slice(0, headerLength + 7)
      assertFails(receiver, prefix, ProtocolErrorCode.InvalidUtf8, 1007)
      // One byte earlier, nothing is wrong yet.
      const { recorder } = receiveEvents(receiver, [frame.slice(0, headerLength + 6)])
      assert.equal(recorder.errors.length, 0)
      assert.equal(recorder.writes.length, 0)
    })

    it('a surrogate, an overlong or a code point over U+10FFFF fails with 1007 as soon as it is seen', () => {
      for (const bad of [
        bytes(0xed, 0xa0),
        bytes(0xc0),
        bytes(0xe0, 0x80),
        bytes(0xf0, 0x80),
        bytes(0xf4, 0x90),
      ]) {
        const payload = concat(utf8('ok'), bad, utf8('tail that never comes'))
        const frame = frameFrom(sender, Opcode.Text, payload)
        const headerLength = frame.length - payload.length
        assertFails(
          receiver,
          frame.slice(0, headerLength + 2 + bad.length),
          ProtocolErrorCode.InvalidUtf8,
          1007,
        )
      }
    })

    it('a bad continuation at the start of the next fragment fails with 1007 on that fragment', () => {
      const first = frameFrom(sender, Opcode.Text, bytes(0x61, 0xe2), { fin: false })
      const second = frameFrom(sender, Opcode.Continuation, bytes(0x41, 0x82, 0xac))
      const { recorder } = receiveEvents(receiver, [first.slice()])
      assert.equal(recorder.errors.length, 0, 'a cut code point is fine so far')
      const headerLength = second.length - 3
      assertFails(
        receiver,
        [first.slice(), second.slice(0, headerLength + 1)],
        ProtocolErrorCode.InvalidUtf8,
        1007,
      )
    })

    it('text ending inside a code point fails with 1007', () => {
      assertFails(
        receiver,
        frameFrom(sender, Opcode.Text, bytes(0x61, 0xe2, 0x82)),
        ProtocolErrorCode.InvalidUtf8,
        1007,
      )
      assertFails(
        receiver,
        concat(
          frameFrom(sender, Opcode.Text, bytes(0x61), { fin: false }),
          frameFrom(sender, Opcode.Continuation, bytes(0xf0, 0x9f, 0x98)),
        ),
        ProtocolErrorCode.InvalidUtf8,
        1007,
      )
      // The next fragment may not be empty-and-final with a code point still open either.
      assertFails(
        receiver,
        concat(
          frameFrom(sender, Opcode.Text, bytes(0xc3), { fin: false }),
          frameFrom(sender, Opcode.Continuation, new Uint8Array(0)),
        ),
        ProtocolErrorCode.InvalidUtf8,
        1007,
      )
    })

    it('binary messages are not checked for UTF-8', () => {
      const { events } = receiveEvents(receiver, [
        frameFrom(sender, Opcode.Binary, bytes(0xff, 0xc0, 0xed, 0xa0)),
      ])
      assert.deepEqual(events, [{ type: 'message', data: 'ffc0eda0', isBinary: true }])
    })

    it('the validator restarts with each message', () => {
      const { events, recorder } = receiveEvents(receiver, [
        concat(
          frameFrom(sender, Opcode.Text, bytes(0xc3, 0xa9)),
          frameFrom(sender, Opcode.Binary, bytes(0xc3)),
          frameFrom(sender, Opcode.Text, bytes(0xa9)),
        ),
      ])
      assert.equal(recorder.errors[0]?.code, ProtocolErrorCode.InvalidUtf8)
      assert.deepEqual(
        events.filter((e) => e.type === 'message'),
        [
          { type: 'message', data: 'c3a9', isBinary: false },
          { type: 'message', data: 'c3', isBinary: true },
        ],
      )
    })

    it('sendText with a string is UTF-8 encoded', () => {
      const { connection, recorder } = connect(peerOf(receiver))
      connection.sendText('é€𝄞')
      assert.equal(hex(recorder.frames()[0]!.payload), hex(utf8('é€𝄞')))
    })
  })
}
