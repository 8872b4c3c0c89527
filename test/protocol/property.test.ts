/**
 * Property tests: whatever one Connection writes, the other reads back exactly, however the bytes
 * are cut; and whatever garbage arrives, a Connection never throws, never hangs, and only ever
 * reports documented ProtocolErrors through its handler.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { Opcode, ProtocolError, ProtocolErrorCode, type Side } from '../../src/protocol/index.js'
import {
  concat,
  connect,
  type Event,
  frameFrom,
  hex,
  patternBytes,
  peerOf,
  receiveEvents,
  utf8,
} from './helpers.js'

interface MessagePlan {
  binary: boolean
  data: Uint8Array
  /** Text sent as a JS string (unfragmented only), to exercise that path too. */
  asString: string | undefined
  /** Byte offsets at which the message is cut into fragments. */
  cuts: number[]
  /** Ping payloads, one slot per fragment: sent after that fragment (before the next one). */
  pings: (Uint8Array | null)[]
}

const messageSize = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 0, max: 200 }) },
  { weight: 3, arbitrary: fc.integer({ min: 100, max: 1000 }) },
  { weight: 1, arbitrary: fc.integer({ min: 60000, max: 70000 }) },
)

const messagePlan: fc.Arbitrary<MessagePlan> = fc
  .record({
    binary: fc.boolean(),
    size: messageSize,
    seed: fc.integer({ min: 1, max: 0x7fffffff }),
    text: fc.string({ unit: 'binary', minLength: 1, maxLength: 24 }),
    rawCuts: fc.array(fc.nat(), { maxLength: 5 }),
    pings: fc.array(fc.option(fc.uint8Array({ maxLength: 125 }), { freq: 3 }), { maxLength: 6 }),
    useString: fc.boolean(),
  })
  .map(({ binary, size, seed, text, rawCuts, pings }) => {
    let data: Uint8Array
    if (binary) {
      data = patternBytes(size, seed)
    } else {
      const unit = utf8(text)
      data = utf8(text.repeat(Math.ceil(size / unit.length)))
    }
    const cuts = [...new Set(rawCuts.map((c) => c % (data.length + 1)))].sort((a, b) => a - b)
    const asString = !binary && cuts.length === 0 ? new TextDecoder().decode(data) : undefined
    return { binary, data, asString, cuts, pings: pings.slice(0, cuts.length + 1) }
  })

const chunkSizes = fc.array(
  fc.oneof(
    fc.integer({ min: 1, max: 16 }),
    fc.integer({ min: 1, max: 2000 }),
    fc.integer({ min: 1, max: 70000 }),
  ),
  { minLength: 1, maxLength: 12 },
)

function cutStream(stream: Uint8Array, sizes: number[]): Uint8Array[] {
  const chunks: Uint8Array[] = []
  let offset = 0
  for (let i = 0; offset < stream.length; i++) {
    const size = sizes[i % sizes.length]!
    chunks.push(stream.slice(offset, offset + size))
    offset += size
  }
  return chunks
}

/** Sends the plan from `sender`; returns the wire bytes and the events the peer should report. */
function send(sender: Side, plans: MessagePlan[], randomMask: boolean) {
  const { connection, recorder } = connect(sender, randomMask ? { maskKey: undefined } : {})
  const expected: Event[] = []
  const pongs: string[] = []
  for (const plan of plans) {
    const opcode = plan.binary ? Opcode.Binary : Opcode.Text
    if (plan.cuts.length === 0) {
      const sent =
        plan.asString !== undefined
          ? connection.sendText(plan.asString)
          : plan.binary
            ? connection.sendBinary(plan.data)
            : connection.sendText(plan.data)
      assert.equal(sent, true)
    }
    const bounds = [0, ...plan.cuts, plan.data.length]
    for (let i = 0; i + 1 < bounds.length; i++) {
      const last = i + 2 === bounds.length
      if (plan.cuts.length > 0) {
        const piece = plan.data.subarray(bounds[i], bounds[i + 1])
        assert.equal(connection.sendFragment(i === 0 ? opcode : Opcode.Continuation, piece, last), true)
      }
      if (last) expected.push({ type: 'message', data: hex(plan.data), isBinary: plan.binary })
      // A ping after this fragment: between fragments, or after the message for the last slot.
      const ping = plan.pings[i]
      if (ping !== undefined && ping !== null) {
        assert.equal(connection.ping(ping), true)
        expected.push({ type: 'ping', data: hex(ping) })
        pongs.push(hex(ping))
      }
    }
  }
  connection.close(1000, 'done')
  expected.push({ type: 'closeReceived', code: 1000, reason: 'done' })
  if (peerOf(sender) === 'server') expected.push({ type: 'closeTransport' })
  assert.equal(recorder.errors.length, 0)
  return { wire: recorder.wire(), expected, pongs }
}

describe('round trip between two Connections', () => {
  for (const sender of ['client', 'server'] as const) {
    const receiver = peerOf(sender)
    it(`${sender} → ${receiver}: random messages, fragments, pings and chunking arrive exactly`, () => {
      fc.assert(
        fc.property(
          fc.array(messagePlan, { minLength: 1, maxLength: 8 }),
          chunkSizes,
          fc.boolean(),
          (plans, sizes, randomMask) => {
            const { wire, expected, pongs } = send(sender, plans, randomMask)
            const { events, recorder } = receiveEvents(receiver, cutStream(wire, sizes))
            assert.deepEqual(events, expected)
            // The receiver answered every ping, in order, then echoed the close.
            const written = recorder.frames()
            assert.deepEqual(
              written.slice(0, -1).map((f) => [f.opcode, hex(f.payload), f.masked]),
              pongs.map((p) => [Opcode.Pong, p, receiver === 'client']),
            )
            assert.equal(written.at(-1)!.opcode, Opcode.Close)
            // Code 1000 and the reason "done", echoed.
            assert.equal(hex(written.at(-1)!.payload), `03e8${Buffer.from('done').toString('hex')}`)
          },
        ),
        { numRuns: 150 },
      )
    })
  }
})

const ALL_CODES = new Set<string>(Object.values(ProtocolErrorCode))
const WIRE_CLOSE_CODES = new Set([1002, 1007, 1009])

/** Valid-looking frames from `sender`, mutated: the garbage that gets furthest into the parser. */
function mutatedFrames(sender: Side) {
  const frame = fc
    .record({
      opcode: fc.oneof(
        { weight: 12, arbitrary: fc.constantFrom(0, 1, 2, 8, 9, 10) },
        { weight: 1, arbitrary: fc.integer({ min: 0, max: 15 }) },
      ),
      fin: fc.oneof(
        { weight: 4, arbitrary: fc.constant(true) },
        { weight: 1, arbitrary: fc.constant(false) },
      ),
      rsv: fc.oneof(
        { weight: 15, arbitrary: fc.constant(0) },
        { weight: 1, arbitrary: fc.constantFrom(0x40, 0x20, 0x10) },
      ),
      payload: fc.oneof(
        fc.uint8Array({ maxLength: 40 }),
        fc.string({ maxLength: 20 }).map(utf8),
        fc.constantFrom(Uint8Array.of(0x03, 0xe8), Uint8Array.of(0x03), Uint8Array.of(0x03, 0xe8, 0xff)),
        fc.integer({ min: 0, max: 2100 }).map((n) => patternBytes(n, n + 1)),
      ),
    })
    .map(({ opcode, fin, rsv, payload }) => frameFrom(sender, opcode, payload, { fin, rsv }))
  return fc
    .record({
      frames: fc.array(frame, { minLength: 1, maxLength: 8 }),
      flips: fc.array(fc.record({ at: fc.nat(), xor: fc.integer({ min: 1, max: 255 }) }), { maxLength: 2 }),
      truncate: fc.option(fc.nat()),
    })
    .map(({ frames, flips, truncate }) => {
      let stream = concat(...frames)
      for (const { at, xor } of flips) if (stream.length > 0) stream[at % stream.length]! ^= xor
      if (truncate !== null && stream.length > 0) stream = stream.subarray(0, truncate % stream.length)
      return stream
    })
}

describe('garbage in, documented errors out', () => {
  for (const side of ['server', 'client'] as const) {
    it(`a ${side} fed random or mutated bytes never throws and reports only ProtocolErrors`, () => {
      const limits = { maxMessageSize: 2000, maxFragments: 8 }
      fc.assert(
        fc.property(
          fc.oneof(
            { weight: 1, arbitrary: fc.uint8Array({ maxLength: 400 }) },
            { weight: 4, arbitrary: mutatedFrames(peerOf(side)) },
          ),
          chunkSizes,
          (input, sizes) => {
            const { connection, recorder } = connect(side, { limits })
            for (const chunk of cutStream(input, sizes)) connection.receive(chunk)
            assert.ok(recorder.errors.length <= 1, 'at most one failure')
            for (const error of recorder.errors) {
              assert.ok(error instanceof ProtocolError)
              assert.ok(ALL_CODES.has(error.code), error.code)
              assert.ok(WIRE_CLOSE_CODES.has(error.closeCode), `${error.closeCode}`)
              assert.equal(recorder.closeTransportCalls, 1)
              const closes = recorder.frames().filter((f) => f.opcode === Opcode.Close)
              assert.equal(closes.length, 1, 'exactly one close frame')
              assert.equal((closes[0]!.payload[0]! << 8) | closes[0]!.payload[1]!, error.closeCode)
              assert.equal(recorder.events.at(-1)!.type, 'protocolError', 'nothing after the failure')
            }
            // What did get through obeys the rules.
            for (const event of recorder.events) {
              if (event.type === 'message') {
                const data = Buffer.from(event.data, 'hex')
                assert.ok(data.length <= limits.maxMessageSize)
                if (!event.isBinary) new TextDecoder('utf-8', { fatal: true }).decode(data)
              } else if (event.type === 'ping' || event.type === 'pong') {
                assert.ok(event.data.length / 2 <= 125)
              }
            }
            for (const frame of recorder.frames()) assert.equal(frame.masked, side === 'client')
            connection.transportClosed()
          },
        ),
        { numRuns: 1500 },
      )
    })
  }
})
