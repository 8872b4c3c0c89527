/**
 * Fuzz target: the bytes a peer sends after the handshake, through the sans-I/O Connection (frame
 * parser, fragmentation, UTF-8, control frames, limits, permessage-deflate's RSV1 rules and the
 * inflate path).
 *
 * Input: one configuration byte, then the wire bytes.
 *   bit 0  0: we are the server (frames must be masked); 1: we are the client
 *   bit 1  permessage-deflate negotiated
 *   bit 2  with deflate: the codec answers through promises (the path that suspends the parser)
 *   bit 3  with deflate: the peer keeps context between messages (a zlib stream per connection)
 *   bit 4  automatic pongs off
 *
 * Invariants:
 * - `receive` never throws: every peer fault becomes a close frame with the code its error maps
 *   to, and a `protocolError` event;
 * - the outcome (messages, control frames, errors, bytes written) is the same whether the bytes
 *   come at once, in two chunks split at any point, or one at a time — and, with deflate, whether
 *   the codec answers at once or later;
 * - nothing is delivered after the peer's close frame or after a failure;
 * - a peer's close frame is answered with the same code (RFC 6455 5.5.1), and a server then
 *   closes the transport (7.1.1);
 * - no message passes `maxMessageSize`, and no buffer is allocated ahead of the bytes that fill
 *   it (a frame that declares a large length allocates nothing until most of it is here).
 */
import assert from 'node:assert/strict'
import { Buffer } from 'node:buffer'
import { DeflateCodec, ZlibLimiter } from '../../../src/node/deflate.js'
import { CloseCode } from '../../../src/protocol/close.js'
import { Connection, type ConnectionHandler } from '../../../src/protocol/connection.js'
import { ProtocolError } from '../../../src/protocol/errors.js'
import type { MessageCompression } from '../../../src/protocol/extensions/compression.js'
import { withDeflateSlack } from '../../../src/protocol/frame-parser.js'
import type { FuzzTarget } from '../engine.js'
import { expectedEvents } from './frame-oracle.js'

const LIMITS = { maxMessageSize: 1024, maxFrameSize: 1024, maxFragments: 8 }
const MASK_KEY = Uint8Array.of(0x11, 0x22, 0x33, 0x44)
/** Off while the codec runs: the allocation bound is on the connection's own buffers. */
let allocationChecks = true
/** One limiter for every codec the target makes: its queue is process-wide state. */
const limiter = new ZlibLimiter(2)

interface Config {
  side: 'server' | 'client'
  deflate: boolean
  asyncCodec: boolean
  contextTakeover: boolean
  autoPong: boolean
}

function readConfig(byte: number): Config {
  const deflate = (byte & 2) !== 0
  return {
    side: (byte & 1) === 0 ? 'server' : 'client',
    deflate,
    asyncCodec: deflate && (byte & 4) !== 0,
    contextTakeover: deflate && (byte & 8) !== 0,
    autoPong: (byte & 16) === 0,
  }
}

/** Wraps the real codec; with `later`, its answers come through promises, as for large messages. */
class TrackedCodec implements MessageCompression {
  readonly threshold = Number.POSITIVE_INFINITY
  readonly sharedKey: string | undefined
  readonly pending = new Set<Promise<unknown>>()
  private readonly codec: DeflateCodec

  constructor(
    contextTakeover: boolean,
    private readonly later: boolean,
  ) {
    const direction = { noContextTakeover: !contextTakeover, windowBits: 15 }
    this.codec = new DeflateCodec({
      compress: direction,
      decompress: direction,
      threshold: this.threshold,
      level: 1,
      memLevel: 8,
      limiter,
    })
    this.sharedKey = this.codec.sharedKey
  }

  compress(): Uint8Array {
    throw new Error('The frames target sends nothing that is compressed')
  }

  decompress(
    pieces: readonly Uint8Array[],
    length: number,
    maxSize: number,
  ): Uint8Array | Promise<Uint8Array> {
    let answer: Uint8Array | Promise<Uint8Array>
    try {
      // zlib's own buffers (16 KiB output chunks) are not the connection's allocations.
      allocationChecks = false
      answer = this.codec.decompress(pieces, length, maxSize)
    } catch (error) {
      if (!this.later) throw error
      answer = Promise.reject(error)
    } finally {
      allocationChecks = true
    }
    if (!(answer instanceof Promise)) {
      if (!this.later) return answer
      answer = Promise.resolve(answer)
    }
    const tracked = answer
    this.pending.add(tracked)
    const forget = (): void => {
      this.pending.delete(tracked)
    }
    tracked.then(forget, forget)
    return tracked
  }

  close(): void {
    this.codec.close()
  }
}

function hex(data: Uint8Array): string {
  return Buffer.from(data.buffer, data.byteOffset, data.length).toString('hex')
}

/** The close code in a close frame we wrote, or undefined if the bytes are another frame. */
function closeCodeOf(frame: Uint8Array): number | 'none' | undefined {
  if (frame[0] !== 0x88) return undefined
  const masked = (frame[1]! & 0x80) !== 0
  const length = frame[1]! & 0x7f
  if (length === 0) return 'none'
  const at = masked ? 6 : 2
  const first = frame[at]! ^ (masked ? frame[2]! : 0)
  const second = frame[at + 1]! ^ (masked ? frame[3]! : 0)
  return (first << 8) | second
}

/** Everything the connection did, as text, checked as it happens. */
class Recorder implements ConnectionHandler {
  readonly events: string[] = []
  private ended = false
  private failed = false
  private lastWritten: Uint8Array | undefined
  paused = false
  transportCloseAsked = false

  constructor(private readonly side: 'server' | 'client') {}

  write(header: Uint8Array, payload: Uint8Array | undefined): void {
    const frame = payload === undefined ? header : Buffer.concat([header, payload])
    this.lastWritten = frame
    this.events.push(`write ${hex(frame)}`)
  }
  closeTransport(): void {
    this.transportCloseAsked = true
    this.events.push('close transport')
  }
  message(data: Uint8Array, isBinary: boolean): void {
    assert.ok(!this.ended, 'a message was delivered after the close frame or a failure')
    assert.ok(data.length <= LIMITS.maxMessageSize, `a message of ${data.length} bytes passed the limit`)
    this.events.push(`message ${isBinary ? 'binary' : 'text'} ${hex(data)}`)
  }
  ping(data: Uint8Array): void {
    assert.ok(!this.ended, 'a ping was delivered after the close frame or a failure')
    this.events.push(`ping ${hex(data)}`)
  }
  pong(data: Uint8Array): void {
    assert.ok(!this.ended, 'a pong was delivered after the close frame or a failure')
    this.events.push(`pong ${hex(data)}`)
  }
  closeReceived(code: number, reason: string): void {
    assert.ok(!this.ended, 'a second close frame was delivered')
    this.ended = true
    // RFC 6455 5.5.1: the reply echoes the code (and nothing when the peer's frame had none).
    const echoed = this.lastWritten === undefined ? undefined : closeCodeOf(this.lastWritten)
    assert.equal(
      echoed,
      code === CloseCode.NoStatus ? 'none' : code,
      'the close reply does not echo the code',
    )
    this.events.push(`close received ${code} ${JSON.stringify(reason)}`)
    if (this.side === 'server') this.events.push('(server closes the transport next)')
  }
  protocolError(error: ProtocolError): void {
    assert.ok(error instanceof ProtocolError, 'protocolError got something else than a ProtocolError')
    assert.ok(!this.failed, 'a second protocol error after the connection failed')
    this.failed = true
    this.ended = true
    assert.equal(
      this.lastWritten === undefined ? undefined : closeCodeOf(this.lastWritten),
      error.closeCode,
      `the close frame sent for ${error.code} does not carry close code ${error.closeCode}`,
    )
    assert.ok(this.transportCloseAsked, 'a failed connection did not ask to close the transport')
    this.events.push(`protocol error ${error.code} ${error.closeCode}`)
  }
  pauseReading(): void {
    this.paused = true
  }
  resumeReading(): void {
    this.paused = false
  }
  internalError(error: unknown): void {
    throw new Error('internalError from received bytes', { cause: error })
  }
}

/**
 * Largest single Buffer allocation allowed after `fed` bytes: a frame buffer is allocated once a
 * quarter of its frame is here (FRAME_BUFFER_RATIO), a joined message once all of it is.
 */
function allocationBound(fed: number): number {
  return 4 * fed + 256
}

/** Runs the connection over `chunks`, returning what it did. */
async function play(config: Config, chunks: readonly Uint8Array[], waitBetween: boolean): Promise<string[]> {
  const recorder = new Recorder(config.side)
  const connection = new Connection(config.side, recorder, {
    limits: LIMITS,
    autoPong: config.autoPong,
    maskKey: MASK_KEY,
  })
  const codec = config.deflate ? new TrackedCodec(config.contextTakeover, config.asyncCodec) : undefined
  if (codec !== undefined) connection.setCompression(codec)
  const drain = async (): Promise<void> => {
    // Each settled answer may let the parser resume and start the next inflate.
    for (let rounds = 0; codec !== undefined && codec.pending.size > 0; rounds++) {
      assert.ok(rounds < 10_000, 'decompression never finished')
      await Promise.allSettled([...codec.pending])
      await new Promise<void>((resolve) => setImmediate(resolve))
    }
  }

  let fed = 0
  const allocUnsafe = Buffer.allocUnsafe
  const checkedAllocUnsafe: typeof Buffer.allocUnsafe = (size) => {
    if (allocationChecks) {
      assert.ok(size <= allocationBound(fed), `${size} bytes allocated after ${fed} bytes of input`)
    }
    return allocUnsafe(size)
  }
  for (const chunk of chunks) {
    fed += chunk.length
    // Only the connection's own work is checked (not zlib's, see TrackedCodec), and only within
    // receive: inflating later, zlib allocates its output chunks with allocUnsafe too.
    Buffer.allocUnsafe = checkedAllocUnsafe
    try {
      // receive may not throw: peer faults are events, not exceptions. It unmasks in place (the
      // connection owns what it reads), so each run gets its own copy.
      connection.receive(chunk.slice())
    } finally {
      Buffer.allocUnsafe = allocUnsafe
    }
    if (waitBetween) await drain()
  }
  await drain()
  // Reading stays paused only while a message is being inflated, or once the connection ends.
  assert.ok(
    !recorder.paused || recorder.transportCloseAsked,
    'reading was left paused with nothing being inflated',
  )
  const info = connection.transportClosed()
  const cause = info.error instanceof ProtocolError ? info.error.code : (info.error?.name ?? '-')
  recorder.events.push(`closed ${info.code} ${info.wasClean} ${cause}`)
  return recorder.events
}

/** The events an independent reading of RFC 6455 can predict, in its vocabulary. */
function predictable(events: readonly string[]): string[] {
  const out: string[] = []
  for (const event of events) {
    if (event.startsWith('message ') || event.startsWith('ping ') || event.startsWith('pong '))
      out.push(event)
    else if (event.startsWith('close received ')) out.push(`close ${event.slice('close received '.length)}`)
    else if (event.startsWith('protocol error ')) out.push(`fail ${event.split(' ').at(-1)}`)
  }
  return out
}

function sameOutcome(expected: string[], actual: string[], how: string): void {
  assert.deepEqual(actual, expected, `the outcome changes when the input is ${how}`)
}

async function run(data: Uint8Array): Promise<void> {
  if (data.length === 0) return
  const config = readConfig(data[0]!)
  const wire = data.subarray(1)
  // The slow codec paths (thread pool, promises) run fewer splits; the sync ones run them all.
  const threadPool = config.contextTakeover
  const reference = await play({ ...config, asyncCodec: false }, [wire], false)
  // With context takeover a message depends on the ones before it: the oracle reads each alone.
  if (!config.contextTakeover) {
    const deflate = config.deflate
      ? {
          frameLimit: withDeflateSlack(LIMITS.maxFrameSize),
          compressedMessageLimit: withDeflateSlack(LIMITS.maxMessageSize),
        }
      : undefined
    const rfc = expectedEvents(wire, config.side === 'server', LIMITS, deflate)
    assert.deepEqual(predictable(reference), rfc, 'the connection disagrees with RFC 6455 (frame-oracle.ts)')
  }
  if (config.asyncCodec || config.contextTakeover) {
    sameOutcome(reference, await play(config, [wire], false), 'inflated later')
  }
  const every = threadPool ? Math.max(1, Math.floor(wire.length / 6)) : 1
  for (let split = 1; split < wire.length; split += every) {
    const chunks = [wire.subarray(0, split), wire.subarray(split)]
    sameOutcome(reference, await play(config, chunks, false), `split at byte ${split}`)
  }
  const bytewise = Array.from({ length: wire.length }, (_, i) => wire.subarray(i, i + 1))
  sameOutcome(reference, await play(config, bytewise, false), 'fed one byte at a time')
  if (config.asyncCodec || config.contextTakeover) {
    sameOutcome(reference, await play(config, bytewise, true), 'fed one byte at a time, waiting between')
  }
}

const text = (value: string): Uint8Array => new TextEncoder().encode(value)

export const target: FuzzTarget = {
  name: 'frames',
  maxLength: 400,
  coverage: ['/src/protocol/', '/src/node/deflate'],
  dictionary: [
    Uint8Array.of(0x81, 0x80),
    Uint8Array.of(0x82, 0xfe, 0x00, 0x7e),
    Uint8Array.of(0x82, 0xff, 0, 0, 0, 0, 0, 0, 0x04, 0x01),
    Uint8Array.of(0x88, 0x82),
    Uint8Array.of(0x89, 0x80),
    Uint8Array.of(0x8a, 0x80),
    Uint8Array.of(0x01, 0x80),
    Uint8Array.of(0x80, 0x80),
    Uint8Array.of(0xc1, 0x80),
    Uint8Array.of(0x03, 0xe8),
    Uint8Array.of(0xf0, 0x9f, 0x98, 0x80),
    Uint8Array.of(0xed, 0xa0, 0x80),
    text('hello'),
  ],
  run,
}
