/**
 * Shared helpers for the protocol core tests: a recording ConnectionHandler, an independent frame
 * builder and decoder (written from RFC 6455 5.2, not from the code under test), and ways to feed
 * a byte stream in every possible split.
 */
import assert from 'node:assert/strict'
import {
  Connection,
  type ConnectionHandler,
  type ConnectionOptions,
  type FrameHeader,
  type FrameSink,
  ProtocolError,
  type Side,
} from '../../src/protocol/index.js'

export const MASK_KEY = Uint8Array.of(0x37, 0xfa, 0x21, 0x3d)

// ------------------------------------------------------------------ bytes

export function bytes(...values: number[]): Uint8Array {
  return Uint8Array.from(values)
}

export function utf8(text: string): Uint8Array {
  return new TextEncoder().encode(text)
}

export function hex(data: Uint8Array | undefined): string {
  return data === undefined ? '' : Buffer.from(data.buffer, data.byteOffset, data.length).toString('hex')
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  const total = parts.reduce((sum, part) => sum + part.length, 0)
  const out = new Uint8Array(total)
  let offset = 0
  for (const part of parts) {
    out.set(part, offset)
    offset += part.length
  }
  return out
}

/** Deterministic pseudo-random bytes (xorshift32), for large payloads without fast-check cost. */
export function patternBytes(length: number, seed = 1): Uint8Array {
  const out = new Uint8Array(length)
  let x = seed | 0 || 1
  for (let i = 0; i < length; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    out[i] = x & 0xff
  }
  return out
}

/** Reference masking: byte i XOR key[i mod 4] (RFC 6455 5.3). */
export function xorMask(payload: Uint8Array, key: Uint8Array, phase = 0): Uint8Array {
  const out = new Uint8Array(payload.length)
  for (let i = 0; i < payload.length; i++) out[i] = payload[i]! ^ key[(phase + i) % 4]!
  return out
}

// ------------------------------------------------------------------ frames (independent encoder)

export interface RawFrameOptions {
  fin?: boolean
  /** RSV bits already shifted: 0x40, 0x20, 0x10. */
  rsv?: number
  /** Mask key; undefined means an unmasked frame. */
  mask?: Uint8Array | undefined
  /** Force a length encoding: 7, 16 or 64 bits (default: minimal). */
  lengthBits?: 7 | 16 | 64
  /** Declared length, if different from the payload's (for truncated or lying frames). */
  declaredLength?: number
}

/** Builds one frame's bytes by hand, straight from the RFC 6455 5.2 diagram. */
export function rawFrame(opcode: number, payload: Uint8Array = new Uint8Array(0), o: RawFrameOptions = {}) {
  const fin = o.fin ?? true
  const length = o.declaredLength ?? payload.length
  const bits = o.lengthBits ?? (length < 126 ? 7 : length < 0x10000 ? 16 : 64)
  const head: number[] = [(fin ? 0x80 : 0) | (o.rsv ?? 0) | opcode]
  const maskBit = o.mask ? 0x80 : 0
  if (bits === 7) {
    head.push(maskBit | length)
  } else if (bits === 16) {
    head.push(maskBit | 126, (length >>> 8) & 0xff, length & 0xff)
  } else {
    head.push(maskBit | 127)
    const high = Math.floor(length / 2 ** 32)
    const low = length % 2 ** 32
    head.push((high >>> 24) & 0xff, (high >>> 16) & 0xff, (high >>> 8) & 0xff, high & 0xff)
    head.push((low >>> 24) & 0xff, (low >>> 16) & 0xff, (low >>> 8) & 0xff, low & 0xff)
  }
  if (o.mask) head.push(...o.mask)
  const body = o.mask ? xorMask(payload, o.mask) : payload
  return concat(Uint8Array.from(head), body)
}

/** A frame as the given side sends it: masked (with MASK_KEY) from a client, plain from a server. */
export function frameFrom(sender: Side, opcode: number, payload?: Uint8Array, o: RawFrameOptions = {}) {
  return rawFrame(opcode, payload, { mask: sender === 'client' ? MASK_KEY : undefined, ...o })
}

/** A close frame payload: 2-byte code and reason. */
export function closePayload(code: number, reason: string | Uint8Array = ''): Uint8Array {
  const reasonBytes = typeof reason === 'string' ? utf8(reason) : reason
  return concat(bytes(code >>> 8, code & 0xff), reasonBytes)
}

export interface DecodedFrame {
  fin: boolean
  rsv: number
  opcode: number
  masked: boolean
  mask: Uint8Array | undefined
  /** Unmasked payload. */
  payload: Uint8Array
}

/** Decodes a complete byte stream of frames (independent reference decoder). */
export function decodeFrames(data: Uint8Array): DecodedFrame[] {
  const frames: DecodedFrame[] = []
  let p = 0
  while (p < data.length) {
    assert.ok(p + 2 <= data.length, 'truncated frame header')
    const b0 = data[p]!
    const b1 = data[p + 1]!
    p += 2
    let length = b1 & 0x7f
    if (length === 126) {
      length = data[p]! * 256 + data[p + 1]!
      p += 2
    } else if (length === 127) {
      length = 0
      for (let i = 0; i < 8; i++) length = length * 256 + data[p + i]!
      p += 8
    }
    const masked = (b1 & 0x80) !== 0
    let mask: Uint8Array | undefined
    if (masked) {
      mask = data.slice(p, p + 4)
      p += 4
    }
    assert.ok(p + length <= data.length, 'truncated frame payload')
    const raw = data.slice(p, p + length)
    p += length
    frames.push({
      fin: (b0 & 0x80) !== 0,
      rsv: b0 & 0x70,
      opcode: b0 & 0x0f,
      masked,
      mask,
      payload: mask ? xorMask(raw, mask) : raw,
    })
  }
  return frames
}

// ------------------------------------------------------------------ recording handler

export type Event =
  | { type: 'message'; data: string; isBinary: boolean }
  | { type: 'ping'; data: string }
  | { type: 'pong'; data: string }
  | { type: 'closeReceived'; code: number; reason: string }
  | { type: 'protocolError'; code: string; closeCode: number }
  | { type: 'closeTransport' }

/** Records everything a Connection asks for. Data is copied (hex) at the moment it is reported. */
export class Recorder implements ConnectionHandler {
  readonly events: Event[] = []
  readonly writes: { header: Uint8Array; payload: Uint8Array | undefined }[] = []
  readonly errors: ProtocolError[] = []
  /** Raw message data objects as handed over (to check zero-copy behaviour). */
  readonly messageData: Uint8Array[] = []
  closeTransportCalls = 0

  write(header: Uint8Array, payload: Uint8Array | undefined): void {
    // Copy: the written bytes must be ours to keep, whatever the connection does later.
    this.writes.push({ header: new Uint8Array(header), payload })
  }
  closeTransport(): void {
    this.closeTransportCalls++
    this.events.push({ type: 'closeTransport' })
  }
  message(data: Uint8Array, isBinary: boolean): void {
    this.messageData.push(data)
    this.events.push({ type: 'message', data: hex(data), isBinary })
  }
  ping(data: Uint8Array): void {
    this.events.push({ type: 'ping', data: hex(data) })
  }
  pong(data: Uint8Array): void {
    this.events.push({ type: 'pong', data: hex(data) })
  }
  closeReceived(code: number, reason: string): void {
    this.events.push({ type: 'closeReceived', code, reason })
  }
  protocolError(error: ProtocolError): void {
    assert.ok(error instanceof ProtocolError, 'protocolError must receive a ProtocolError')
    this.errors.push(error)
    this.events.push({ type: 'protocolError', code: error.code, closeCode: error.closeCode })
  }

  /** Everything written so far, as one byte stream. */
  wire(): Uint8Array {
    return concat(...this.writes.flatMap((w) => (w.payload ? [w.header, w.payload] : [w.header])))
  }

  /** The written frames, decoded. */
  frames(): DecodedFrame[] {
    return decodeFrames(this.wire())
  }
}

export function connect(side: Side, options: ConnectionOptions = {}) {
  const recorder = new Recorder()
  const connection = new Connection(side, recorder, { maskKey: MASK_KEY, ...options })
  return { connection, recorder }
}

/** The side that receives what `sender` sends. */
export function peerOf(sender: Side): Side {
  return sender === 'client' ? 'server' : 'client'
}

// ------------------------------------------------------------------ feeding

/** Fresh copies of `data` cut at the given offsets (the parser unmasks input in place). */
export function chunksAt(data: Uint8Array, cuts: readonly number[]): Uint8Array[] {
  const out: Uint8Array[] = []
  let start = 0
  for (const cut of [...cuts, data.length]) {
    out.push(data.slice(start, cut))
    start = cut
  }
  return out
}

export function oneByteChunks(data: Uint8Array): Uint8Array[] {
  return Array.from(data, (b) => Uint8Array.of(b))
}

/** Feeds a receiving connection the chunks and returns its events. */
export function receiveEvents(side: Side, chunks: Uint8Array[], options: ConnectionOptions = {}) {
  const { connection, recorder } = connect(side, options)
  for (const chunk of chunks) connection.receive(chunk)
  return { connection, recorder, events: recorder.events, wire: hex(recorder.wire()) }
}

/**
 * Asserts that the stream gives the same events (and the same written bytes) fed whole, split at
 * every byte boundary, and one byte at a time. Returns the events of the whole-stream run.
 */
export function assertSplitInvariant(side: Side, data: Uint8Array, options: ConnectionOptions = {}): Event[] {
  const whole = receiveEvents(side, [data.slice()], options)
  for (let cut = 1; cut < data.length; cut++) {
    const split = receiveEvents(side, chunksAt(data, [cut]), options)
    assert.deepEqual(split.events, whole.events, `split at ${cut}`)
    assert.equal(split.wire, whole.wire, `written bytes, split at ${cut}`)
  }
  const single = receiveEvents(side, oneByteChunks(data), options)
  assert.deepEqual(single.events, whole.events, 'one byte at a time')
  assert.equal(single.wire, whole.wire, 'written bytes, one byte at a time')
  return whole.events
}

// ------------------------------------------------------------------ frame parser sink

export type SinkEvent =
  | { type: 'start'; fin: boolean; rsv: number; opcode: number; length: number }
  | { type: 'end'; fin: boolean; opcode: number; length: number; payload: string }

/** Records frames from a FrameParser, joining each frame's payload pieces. */
export class FrameRecorder implements FrameSink {
  readonly events: SinkEvent[] = []
  readonly pieces: Uint8Array[] = []
  private current: Uint8Array[] = []

  frameStart(h: FrameHeader): void {
    this.current = []
    this.events.push({ type: 'start', fin: h.fin, rsv: h.rsv, opcode: h.opcode, length: h.length })
  }
  framePayload(piece: Uint8Array): void {
    assert.ok(piece.length > 0, 'framePayload must not be called with an empty piece')
    this.pieces.push(piece)
    this.current.push(piece.slice())
  }
  frameEnd(h: FrameHeader): void {
    this.events.push({
      type: 'end',
      fin: h.fin,
      opcode: h.opcode,
      length: h.length,
      payload: hex(concat(...this.current)),
    })
  }
}

// ------------------------------------------------------------------ failures

/** The close frame a side writes: unmasked from a server, masked with MASK_KEY from a client. */
export function expectedCloseFrame(side: Side, code: number, reason: string): string {
  return hex(rawFrame(0x8, closePayload(code, reason), { mask: side === 'client' ? MASK_KEY : undefined }))
}

/**
 * Feeds `input` to a fresh connection on `side` and asserts it failed with `errorCode` and
 * `closeCode`: one ProtocolError reported, a close frame with that code (and the error message as
 * reason) written, the transport close asked for once, no message delivered. Then checks that
 * further valid input is ignored. Pass `precedingWire` if the input makes the connection write
 * something before failing (a pong, say).
 */
export function assertFails(
  side: Side,
  input: Uint8Array | Uint8Array[],
  errorCode: string,
  closeCode: number,
  options: ConnectionOptions & { allowMessages?: boolean } = {},
) {
  const { connection, recorder } = connect(side, options)
  const chunks = Array.isArray(input) ? input : [input.slice()]
  for (const chunk of chunks) connection.receive(chunk)
  assert.equal(recorder.errors.length, 1, `one protocol error expected, got ${recorder.errors.length}`)
  const error = recorder.errors[0]!
  assert.ok(error instanceof ProtocolError)
  assert.equal(error.name, 'ProtocolError')
  assert.equal(error.code, errorCode)
  assert.equal(error.closeCode, closeCode)
  assert.equal(recorder.closeTransportCalls, 1)
  if (!options.allowMessages) {
    assert.deepEqual(
      recorder.events.filter((e) => e.type === 'message'),
      [],
      'no message may be delivered',
    )
  }
  const lastWrite = recorder.writes.at(-1)!
  const closeFrame = hex(concat(lastWrite.header, lastWrite.payload ?? new Uint8Array(0)))
  assert.equal(closeFrame, expectedCloseFrame(side, closeCode, error.message))
  const written = recorder.writes.length
  const eventCount = recorder.events.length

  // Everything after the failure is ignored: valid frames and garbage alike.
  const sender = peerOf(side)
  connection.receive(frameFrom(sender, 0x1, utf8('after')))
  connection.receive(frameFrom(sender, 0x9, utf8('ping')))
  connection.receive(bytes(0xff, 0xff, 0xff))
  assert.equal(recorder.writes.length, written, 'nothing written after the failure')
  assert.equal(recorder.events.length, eventCount, 'no events after the failure')
  assert.equal(connection.canSend, false)
  const info = connection.transportClosed()
  assert.equal(info.code, 1006)
  assert.equal(info.wasClean, false)
  assert.equal(info.error, error)
  return { connection, recorder, error }
}
