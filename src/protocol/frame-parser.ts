/**
 * Incremental frame parser (RFC 6455 section 5.2).
 *
 * Bytes arrive in chunks of any size. Only a frame header (at most 14 bytes) can need bytes from
 * two chunks; it is gathered in a small spill buffer. Payload bytes are handed on as they arrive,
 * as views of the chunk, unmasked in place — or, for a frame spanning chunks whose sink offers a
 * buffer for it (`frameBuffer`), unmasked (or copied) straight into that buffer, so that the
 * payload is written once instead of unmasked in place and joined later. Limits are checked on
 * the declared length before a byte of payload is buffered by anyone.
 *
 * Frame-level rules are enforced here (reserved bits, opcodes, control frame rules, masking,
 * length limits); message-level rules (continuations, message size, UTF-8) belong to the
 * connection, which receives the parsed frames through `FrameSink`.
 */
import { ProtocolError, ProtocolErrorCode } from './errors.js'
import { applyMask } from './mask.js'
import { isControlOpcode, isKnownOpcode } from './opcode.js'

export interface FrameHeader {
  fin: boolean
  /** RSV1-3 as the high bits of a byte: 0x40, 0x20, 0x10. */
  rsv: number
  opcode: number
  /** Declared payload length. */
  length: number
}

/** Receives frames as they are parsed. Must not retain `header`: it is reused. */
export interface FrameSink {
  frameStart(header: FrameHeader): void
  /** A piece of unmasked payload; a view into the input chunk. Not called for empty payloads. */
  framePayload(piece: Uint8Array): void
  frameEnd(header: FrameHeader): void
  /**
   * Optional. For a frame whose payload spans chunks: a buffer of `header.length` bytes to
   * assemble the payload in, or undefined to get views of the chunks. Pieces passed to
   * `framePayload` are then views of that buffer, filled in order.
   */
  frameBuffer?(header: FrameHeader): Uint8Array | undefined
}

export interface FrameParserOptions {
  /** Frames from a client must be masked; frames from a server must not (RFC 6455 5.1). */
  expectMasked: boolean
  maxFrameSize: number
  /** Reserved bits that a negotiated extension gives meaning to (0x40 for permessage-deflate). */
  allowedRsv?: number
}

enum State {
  Header,
  Payload,
}

const MAX_HEADER_BYTES = 14

/**
 * A frame buffer is asked for only once the first piece holds at least 1/FRAME_BUFFER_RATIO of
 * the frame: a peer that declares a large frame and sends a few bytes of it must not make us
 * allocate the whole declared length up front.
 */
const FRAME_BUFFER_RATIO = 4

/** The current frame's masking key as bytes, for applyMask; shared, filled before each use. */
const maskScratch = new Uint8Array(4)

/**
 * The parser is its own FrameHeader: the current frame's fields live on it, so that an idle
 * connection holds no header object, and no typed array for the mask (kept as a 32-bit number)
 * or the spill buffer (created the first time a header straddles two chunks). Memory per idle
 * connection is what limits how many a server holds.
 */
export class FrameParser implements FrameHeader {
  private readonly sink: FrameSink
  private readonly expectMasked: boolean
  private readonly maxFrameSize: number
  allowedRsv: number

  // The current frame (FrameHeader).
  fin = false
  rsv = 0
  opcode = 0
  length = 0

  private state = State.Header
  /** Header bytes gathered across a chunk border. */
  private spill: Uint8Array | undefined
  private spillLength = 0
  /** The masking key as a big-endian 32-bit number. */
  private maskKey = 0
  private masked = false
  private remaining = 0
  private payloadOffset = 0
  /** Where the current frame's payload is assembled, when the sink gave a buffer for it. */
  private target: Uint8Array | undefined
  /** Set by `stop()`: the rest of the current chunk and all later input are ignored. */
  private stopped = false
  /** Set by `suspend()`: input is kept, in order, until `resume()`. */
  private suspended = false
  private pendingInput: Uint8Array[] | undefined

  constructor(sink: FrameSink, options: FrameParserOptions) {
    this.sink = sink
    this.expectMasked = options.expectMasked
    this.maxFrameSize = options.maxFrameSize
    this.allowedRsv = options.allowedRsv ?? 0
  }

  /** Stops parsing, including the rest of a chunk being parsed (after a close frame or a failure). */
  stop(): void {
    this.stopped = true
    this.pendingInput = undefined
    this.target = undefined
  }

  get isStopped(): boolean {
    return this.stopped
  }

  /**
   * Stops parsing until `resume()`, keeping the unparsed rest of the current chunk and every
   * later chunk in order (while a message is decompressed off the event loop, for instance).
   */
  suspend(): void {
    this.suspended = true
  }

  get isSuspended(): boolean {
    return this.suspended
  }

  /** Parses the input kept while suspended. May suspend again, or throw like `push`. */
  resume(): void {
    this.suspended = false
    while (
      !this.suspended &&
      !this.stopped &&
      this.pendingInput !== undefined &&
      this.pendingInput.length > 0
    )
      this.push(this.pendingInput.shift()!)
  }

  /** Whether the parser is between frames (no partial frame buffered). */
  get atFrameBoundary(): boolean {
    return this.state === State.Header && this.spillLength === 0
  }

  /** Parses a chunk. Throws ProtocolError on a frame that breaks the protocol or a limit. */
  push(chunk: Uint8Array): void {
    // While suspended, input waits, in order, for resume() (nothing used to queue it here, so
    // frames after a message being inflated overtook it, and a close frame after it dropped it).
    if (this.suspended) {
      if (!this.stopped) (this.pendingInput ??= []).push(chunk)
      return
    }
    let offset = 0
    const length = chunk.length
    while (offset < length && !this.stopped) {
      if (this.suspended) {
        // The sink suspended us mid-chunk: keep the rest, ahead of any input queued after it.
        ;(this.pendingInput ??= []).unshift(chunk.subarray(offset))
        return
      }
      if (this.state === State.Header) {
        offset =
          this.spillLength === 0 ? this.readHeader(chunk, offset) : this.readSpilledHeader(chunk, offset)
      } else {
        offset = this.readPayload(chunk, offset)
      }
    }
  }

  /** Header straight from the chunk when it is all there; otherwise start spilling. */
  private readHeader(chunk: Uint8Array, offset: number): number {
    const available = chunk.length - offset
    if (available >= 2) {
      const needed = headerLength(chunk[offset + 1]!)
      if (available >= needed) {
        this.decodeHeader(chunk, offset)
        return offset + needed
      }
    }
    const spill = (this.spill ??= new Uint8Array(MAX_HEADER_BYTES))
    spill.set(chunk.subarray(offset), 0)
    this.spillLength = available
    // The first two bytes are enough to reject a bad frame before the rest of its header.
    if (available >= 2) this.checkFirstBytes(spill[0]!, spill[1]!)
    return chunk.length
  }

  private readSpilledHeader(chunk: Uint8Array, offset: number): number {
    const spill = this.spill!
    if (this.spillLength < 2) {
      spill[this.spillLength++] = chunk[offset++]!
      if (this.spillLength < 2) return offset
      this.checkFirstBytes(spill[0]!, spill[1]!)
    }
    const needed = headerLength(spill[1]!)
    const take = Math.min(needed - this.spillLength, chunk.length - offset)
    spill.set(chunk.subarray(offset, offset + take), this.spillLength)
    this.spillLength += take
    offset += take
    if (this.spillLength === needed) {
      this.spillLength = 0
      this.decodeHeader(spill, 0)
    }
    return offset
  }

  /** Rules that the first two bytes alone decide. */
  private checkFirstBytes(b0: number, b1: number): void {
    const rsv = b0 & 0x70
    // RFC 6455 5.2: "MUST be 0 unless an extension is negotiated that defines meanings for
    // non-zero values. If a nonzero value is received and none of the negotiated extensions
    // defines the meaning of such a nonzero value, the receiving endpoint MUST _Fail_".
    if ((rsv & ~this.allowedRsv) !== 0) {
      throw new ProtocolError(
        ProtocolErrorCode.ReservedBits,
        'Reserved bits set without a negotiated extension',
      )
    }
    const opcode = b0 & 0x0f
    // RFC 6455 5.2: "If an unknown opcode is received, the receiving endpoint MUST _Fail_".
    if (!isKnownOpcode(opcode)) {
      throw new ProtocolError(ProtocolErrorCode.UnknownOpcode, `Unknown opcode 0x${opcode.toString(16)}`)
    }
    const masked = (b1 & 0x80) !== 0
    // RFC 6455 5.1: "a server MUST close the connection upon receiving a frame that is not masked"
    // and "A client MUST close a connection if it detects a masked frame."
    if (masked !== this.expectMasked) {
      throw this.expectMasked
        ? new ProtocolError(ProtocolErrorCode.MaskRequired, 'Client frames must be masked')
        : new ProtocolError(ProtocolErrorCode.MaskForbidden, 'Server frames must not be masked')
    }
    if (isControlOpcode(opcode)) {
      // RFC 6455 5.5: "All control frames MUST have a payload length of 125 bytes or less and
      // MUST NOT be fragmented."
      if ((b0 & 0x80) === 0) {
        throw new ProtocolError(
          ProtocolErrorCode.ControlFrameFragmented,
          'Control frames must not be fragmented',
        )
      }
      if ((b1 & 0x7f) > 125) {
        throw new ProtocolError(ProtocolErrorCode.ControlFrameTooLong, 'Control frame payload over 125 bytes')
      }
    }
  }

  private decodeHeader(bytes: Uint8Array, offset: number): void {
    const b0 = bytes[offset]!
    const b1 = bytes[offset + 1]!
    this.checkFirstBytes(b0, b1)
    let length = b1 & 0x7f
    let position = offset + 2
    if (length === 126) {
      length = (bytes[position]! << 8) | bytes[position + 1]!
      position += 2
    } else if (length === 127) {
      const high = readUint32(bytes, position)
      // RFC 6455 5.2: "the most significant bit MUST be 0".
      if (high > 0x7fffffff) {
        throw new ProtocolError(
          ProtocolErrorCode.LengthOutOfRange,
          'Frame length has its most significant bit set',
        )
      }
      // Anything past 2^53 cannot be a JS number, and is far beyond any sane limit anyway.
      if (high > 0x1fffff) {
        throw new ProtocolError(ProtocolErrorCode.FrameTooLarge, 'Frame length exceeds the frame size limit')
      }
      length = high * 0x100000000 + readUint32(bytes, position + 4)
      position += 8
    }
    // Length encodings need not be minimal here: RFC 6455 5.2 puts that MUST on the sender, and
    // a longer encoding of a valid length is harmless to parse.
    // Control frames are bounded by 125 bytes already (checked above), whatever this limit says.
    // With compression negotiated, a frame may be the deflated form of a message at the limit,
    // which incompressible data makes slightly larger than the original.
    const limit = this.allowedRsv === 0 ? this.maxFrameSize : withDeflateSlack(this.maxFrameSize)
    if (length > limit && (b0 & 0x08) === 0) {
      throw new ProtocolError(
        ProtocolErrorCode.FrameTooLarge,
        `Frame of ${length} bytes exceeds the limit of ${this.maxFrameSize}`,
      )
    }
    this.masked = (b1 & 0x80) !== 0
    if (this.masked) this.maskKey = readUint32(bytes, position)
    this.fin = (b0 & 0x80) !== 0
    this.rsv = b0 & 0x70
    this.opcode = b0 & 0x0f
    this.length = length
    this.remaining = length
    this.payloadOffset = 0
    this.sink.frameStart(this)
    if (length === 0) {
      if (!this.stopped) this.sink.frameEnd(this)
    } else {
      this.state = State.Payload
    }
  }

  private readPayload(chunk: Uint8Array, offset: number): number {
    const take = Math.min(this.remaining, chunk.length - offset)
    const source = offset === 0 && take === chunk.length ? chunk : chunk.subarray(offset, offset + take)
    if (
      this.payloadOffset === 0 &&
      take < this.remaining &&
      take * FRAME_BUFFER_RATIO >= this.length &&
      this.sink.frameBuffer !== undefined
    ) {
      this.target = this.sink.frameBuffer(this)
    }
    const target = this.target
    const piece =
      target === undefined ? source : target.subarray(this.payloadOffset, this.payloadOffset + take)
    if (this.masked) {
      // The key goes through one shared scratch array: no typed array per connection.
      const key = this.maskKey
      maskScratch[0] = key >>> 24
      maskScratch[1] = (key >>> 16) & 0xff
      maskScratch[2] = (key >>> 8) & 0xff
      maskScratch[3] = key & 0xff
      applyMask(source, piece, maskScratch, 0, this.payloadOffset & 3)
    } else if (target !== undefined) {
      piece.set(source)
    }
    this.remaining -= take
    this.payloadOffset += take
    if (this.remaining === 0) {
      this.state = State.Header
      this.target = undefined
    }
    this.sink.framePayload(piece)
    if (this.remaining === 0 && !this.stopped) this.sink.frameEnd(this)
    return offset + take
  }
}

/** Header length from the second byte: 2, plus 2 or 8 for extended lengths, plus 4 for the mask. */
function headerLength(b1: number): number {
  const length7 = b1 & 0x7f
  return 2 + (length7 === 126 ? 2 : length7 === 127 ? 8 : 0) + ((b1 & 0x80) !== 0 ? 4 : 0)
}

function readUint32(bytes: Uint8Array, offset: number): number {
  return (
    ((bytes[offset]! << 24) | (bytes[offset + 1]! << 16) | (bytes[offset + 2]! << 8) | bytes[offset + 3]!) >>>
    0
  )
}

/**
 * `n` plus the most DEFLATE can add to incompressible data of that size (zlib's deflateBound,
 * rounded up): stored blocks cost 5 bytes per 64 KiB, plus a few bytes of framing.
 */
export function withDeflateSlack(n: number): number {
  return n + Math.ceil(n / 4096) + Math.ceil(n / 16384) + 64
}
