/**
 * The output side of a connection, sans I/O: it turns sends into frames for the wire, in order,
 * when some of them are compressed off the event loop.
 *
 * THE INVARIANT (everything below keeps it; read it before changing anything here):
 * 1. Order. Frames reach `sink.write` in the order of the calls that made them. A frame is
 *    written at once only when nothing is queued; otherwise it joins the tail of the queue, and
 *    only the queue's head may leave, once it is ready (its compression has finished).
 * 2. What waits where. The queue holds frames behind a message still being compressed (that
 *    message included). `held` holds whole messages sent while a fragmented message is open
 *    (RFC 6455 5.4: no interleaving); they enter the sequence when its last fragment is sent,
 *    in call order, and are dropped with the close frame (RFC 6455 5.5.1: no data after it).
 * 3. What counts. `pendingBytes` is every payload byte that waits here: queued frames (a message
 *    still being compressed counts its uncompressed size) and held messages. The Node layer adds
 *    it to `bufferedAmount` and to the backpressure decision, so that compression cannot hide
 *    bytes from either.
 * 4. When the transport may close. Only once nothing is queued: a close asked for while frames
 *    wait (the peer's close echoed behind our messages) happens right after the last of them —
 *    the close frame — is written. Failing is the one exception: it drops what waits here and
 *    closes at once (RFC 6455 7.1.7).
 */
import { CompressionDeclinedError, type MessageCompression } from './extensions/compression.js'
import { encodeFrameHeader, encodeFrameInto, SMALL_FRAME_LIMIT } from './frame-writer.js'
import { Opcode } from './opcode.js'

/** Where frames go: the part of the connection's handler that concerns output. */
export interface OutputSink {
  /** Bytes for the wire, in order: a frame header and its payload (undefined when empty). */
  write(header: Uint8Array, payload: Uint8Array | undefined): void
  /**
   * Optional: an unmasked frame of at most SMALL_FRAME_LIMIT payload bytes, given as its first
   * header byte (FIN, RSV, opcode) and payload, for a handler that encodes it straight into its
   * own output buffer — no buffer per frame. Without it such frames come through `write`.
   */
  writeSmallFrame?(firstByte: number, payload: Uint8Array): void
  /**
   * Optional: a frame built once for many connections (`server.publish`, the heartbeat's ping).
   * The same object goes to every one of them and its bytes never change, so a handler may
   * recognise it by identity and share what it builds from it among connections. Without it such
   * frames come through `write`.
   */
  writePrepared?(frame: PreparedFrame): void
  /** Close the transport now, after flushing what was written (RFC 6455 7.1.1, 7.1.7). */
  closeTransport(): void
  /**
   * Optional: everything that waited here has been written (`pendingBytes` went back to 0). The
   * Node layer uses it to keep a 'drain' it promised while compressed messages were queued.
   */
  outputFlushed?(): void
}

/** Frame bytes built once for many connections (server side only: they are not masked). */
export interface PreparedFrame {
  header: Uint8Array
  payload: Uint8Array | undefined
}

export interface OutputSequencerOptions {
  /** Client frames are masked (RFC 6455 5.3). */
  masking: boolean
  /** Fixed masking key, for byte-exact tests only. */
  maskKey?: Uint8Array | undefined
}

/**
 * Who hears of a failed compression: the connection, which fails with 1011. An object with a
 * method rather than a callback, so that a connection passes itself and holds no closure (a
 * closure, its context and the options object holding it were about 150 bytes per idle
 * connection, measured in a heap snapshot of 2,000 connections).
 */
export interface CompressionFailureListener {
  /** Compressing a message failed (a zlib error): the connection must fail with 1011. */
  compressionFailed(error: unknown): void
}

/** RSV1 marks a compressed message (RFC 7692 6). */
const RSV1 = 0x40
const EMPTY = new Uint8Array(0)

/** A frame in the queue: ready once its bytes are known. */
interface QueuedFrame {
  opcode: number
  payload: Uint8Array | undefined
  rsv: number
  fin: boolean
  ready: boolean
  /** Bytes this frame counts in pendingBytes while queued. */
  size: number
  /** A frame built elsewhere (a broadcast's shared bytes): written as is. */
  prebuilt?: PreparedFrame
  /** One more message has left the sequencer when this frame is written. */
  endsMessage: boolean
}

/** A message sent while a fragmented message is open. */
interface HeldSend {
  size: number
  release(): void
}

export class OutputSequencer {
  /** The negotiated compression, if any (permessage-deflate). */
  compression: MessageCompression | undefined
  private readonly sink: OutputSink
  private readonly options: OutputSequencerOptions
  private readonly listener: CompressionFailureListener
  private queue: QueuedFrame[] | undefined
  private queuedBytes = 0
  private held: HeldSend[] | undefined
  private heldBytes = 0
  /** A fragmented message is being sent (sendFragment without fin so far). */
  private fragmentOpen = false
  /** The transport is to close once the queue is empty (invariant 4). */
  private closeWhenFlushed = false
  /** Nothing more goes out: the connection failed or the transport is closed. */
  private stopped = false
  /** Messages accepted by sendMessage/sendPrepared, and those of them handed to the sink. */
  private accepted = 0
  private released = 0

  constructor(sink: OutputSink, options: OutputSequencerOptions, listener: CompressionFailureListener) {
    this.sink = sink
    this.options = options
    this.listener = listener
  }

  /** Payload bytes waiting here: queued behind a compression, or held behind fragments. */
  get pendingBytes(): number {
    return this.queuedBytes + this.heldBytes
  }

  /** Messages (sendMessage, sendPrepared) accepted so far, written or not. */
  get messagesAccepted(): number {
    return this.accepted
  }

  /** Of those, how many have been handed to the sink; they leave in order. */
  get messagesReleased(): number {
    return this.released
  }

  get isFragmentOpen(): boolean {
    return this.fragmentOpen
  }

  /**
   * Sends a data message, compressed when the compression says so. With compression,
   * `compress` undefined compresses messages of `threshold` bytes or more; true or false decides.
   */
  sendMessage(opcode: number, data: Uint8Array, compress: boolean | undefined): void {
    this.accepted++
    this.sequenceMessage(opcode, data, compress)
  }

  private sequenceMessage(opcode: number, data: Uint8Array, compress: boolean | undefined): void {
    if (this.fragmentOpen) {
      this.hold(data.length, () => this.sequenceMessage(opcode, data, compress))
      return
    }
    const compression = this.compression
    if (
      compression === undefined ||
      compress === false ||
      (compress === undefined && data.length < compression.threshold)
    ) {
      this.writeFrame(opcode, data, true, 0, true)
      return
    }
    const result = compression.compress(data)
    if (!(result instanceof Promise)) {
      const [payload, rsv] = chooseCompressed(compression, data, result, compress)
      this.writeFrame(opcode, payload, true, rsv, true)
      return
    }
    // Later frames wait behind this one, so that order is kept (RFC 7692 does not reorder).
    const queued = this.enqueue({
      opcode,
      payload: undefined,
      rsv: RSV1,
      fin: true,
      ready: false,
      size: data.length,
      endsMessage: true,
    })
    result.then(
      (compressed) => {
        const [payload, rsv] = chooseCompressed(compression, data, compressed, compress)
        queued.payload = payload
        queued.rsv = rsv
        queued.ready = true
        this.flushQueue()
      },
      (error: unknown) => {
        if (!(error instanceof CompressionDeclinedError)) {
          this.compressionFailed(error)
          return
        }
        // The codec refused the work (too much queued process-wide): RFC 7692 lets any message
        // go uncompressed, and the codec's context never saw this one.
        queued.payload = data
        queued.rsv = 0
        queued.ready = true
        this.flushQueue()
      },
    )
  }

  /**
   * Sends a frame serialized elsewhere, once for many connections (`server.publish`). A promise
   * stands for a frame still being compressed; `size` is what it counts in pendingBytes meanwhile
   * (the uncompressed message's size).
   */
  sendPrepared(frame: PreparedFrame | Promise<PreparedFrame>, size = 0): void {
    if (this.options.masking)
      throw new TypeError('A client must mask each frame; prepared frames are server-side only')
    this.accepted++
    this.sequencePrepared(frame, size)
  }

  private sequencePrepared(frame: PreparedFrame | Promise<PreparedFrame>, size: number): void {
    if (this.fragmentOpen) {
      const heldSize = frame instanceof Promise ? size : frameSize(frame)
      this.hold(heldSize, () => this.sequencePrepared(frame, size))
      return
    }
    if (!(frame instanceof Promise)) {
      if (this.queue === undefined) {
        this.writePrepared(frame)
        this.released++
      } else {
        this.enqueue({
          opcode: 0,
          payload: undefined,
          rsv: 0,
          fin: true,
          ready: true,
          size: frameSize(frame),
          prebuilt: frame,
          endsMessage: true,
        })
      }
      return
    }
    const queued = this.enqueue({
      opcode: 0,
      payload: undefined,
      rsv: 0,
      fin: true,
      ready: false,
      size,
      endsMessage: true,
    })
    frame.then(
      (built) => {
        queued.prebuilt = built
        queued.ready = true
        this.flushQueue()
      },
      (error: unknown) => this.compressionFailed(error),
    )
  }

  /**
   * Sends one frame of a fragmented message (never compressed). The caller has checked the
   * opcode sequence; held messages follow the last fragment.
   */
  sendFragment(opcode: number, data: Uint8Array, fin: boolean): void {
    this.writeFrame(opcode, data, fin, 0, false)
    this.fragmentOpen = !fin
    if (fin && this.held !== undefined) {
      // RFC 6455 5.4: fragments of one message are not interleaved with other messages; what
      // was sent meanwhile goes out now, in call order.
      const held = this.held
      this.held = undefined
      this.heldBytes = 0
      for (const send of held) if (!this.stopped) send.release()
    }
  }

  /** Ping, pong: in order with everything else (control frames may not be compressed). */
  sendControl(opcode: number, payload: Uint8Array): void {
    this.writeFrame(opcode, payload, true, 0, false)
  }

  /**
   * The close frame: the last frame of the connection (RFC 6455 5.5.1: "the application MUST NOT
   * send any more data frames after sending a Close frame"), so held messages are dropped.
   */
  sendClose(payload: Uint8Array): void {
    this.held = undefined
    this.heldBytes = 0
    this.writeFrame(Opcode.Close, payload, true, 0, false)
  }

  /** Asks for the transport to close once everything queued is written (invariant 4). */
  closeTransportWhenFlushed(): void {
    if (this.stopped) return
    if (this.queue === undefined) this.sink.closeTransport()
    else this.closeWhenFlushed = true
  }

  /** Failing: what waits here will never be sent (the close frame written next goes at once). */
  discard(): void {
    this.queue = undefined
    this.queuedBytes = 0
    this.held = undefined
    this.heldBytes = 0
    this.closeWhenFlushed = false
  }

  /** The transport is gone: nothing more is written. */
  stop(): void {
    this.discard()
    this.stopped = true
  }

  private compressionFailed(error: unknown): void {
    // After discard() (the connection failed) the outcome of a compression no longer matters.
    if (this.stopped || this.queue === undefined) return
    this.listener.compressionFailed(error)
  }

  private hold(size: number, release: () => void): void {
    ;(this.held ??= []).push({ size, release })
    this.heldBytes += size
  }

  private enqueue(frame: QueuedFrame): QueuedFrame {
    ;(this.queue ??= []).push(frame)
    this.queuedBytes += frame.size
    return frame
  }

  private flushQueue(): void {
    const queue = this.queue
    if (queue === undefined || this.stopped) return
    while (queue.length > 0 && queue[0]!.ready) {
      const frame = queue.shift()!
      this.queuedBytes -= frame.size
      if (frame.prebuilt !== undefined) this.writePrepared(frame.prebuilt)
      else this.writeNow(frame.opcode, frame.payload ?? EMPTY, frame.fin, frame.rsv)
      if (frame.endsMessage) this.released++
    }
    if (queue.length > 0) return
    this.queue = undefined
    this.queuedBytes = 0
    if (this.closeWhenFlushed) {
      this.closeWhenFlushed = false
      this.sink.closeTransport()
      return
    }
    if (this.heldBytes === 0) this.sink.outputFlushed?.()
  }

  private writePrepared(frame: PreparedFrame): void {
    const sink = this.sink
    if (sink.writePrepared !== undefined) sink.writePrepared(frame)
    else sink.write(frame.header, frame.payload)
  }

  private writeFrame(
    opcode: number,
    payload: Uint8Array,
    fin: boolean,
    rsv: number,
    endsMessage: boolean,
  ): void {
    if (this.queue !== undefined) {
      this.enqueue({ opcode, payload, rsv, fin, ready: true, size: payload.length, endsMessage })
      return
    }
    this.writeNow(opcode, payload, fin, rsv)
    if (endsMessage) this.released++
  }

  private writeNow(opcode: number, payload: Uint8Array, fin: boolean, rsv: number): void {
    const length = payload.length
    const sink = this.sink
    if (this.options.masking) {
      // The mask forces a copy; header and masked payload share one buffer.
      sink.write(
        encodeFrameInto(opcode, payload, { fin, rsv, mask: true, maskKey: this.options.maskKey }),
        undefined,
      )
    } else if (length <= SMALL_FRAME_LIMIT) {
      if (sink.writeSmallFrame !== undefined) sink.writeSmallFrame((fin ? 0x80 : 0) | rsv | opcode, payload)
      else sink.write(encodeFrameInto(opcode, payload, { fin, rsv }), undefined)
    } else {
      sink.write(encodeFrameHeader(opcode, length, { fin, rsv }), payload)
    }
  }
}

/**
 * The payload and RSV bits to send for a compressed message. Data that does not shrink (already
 * compressed, random) goes as it is, unless the caller insisted: RFC 7692 lets any message be
 * sent uncompressed, and the peer inflates nothing. Only without context takeover: a compressor
 * that keeps context has already taken this message into its window, and the peer's must too.
 */
function chooseCompressed(
  compression: MessageCompression,
  data: Uint8Array,
  compressed: Uint8Array,
  compress: boolean | undefined,
): [Uint8Array, number] {
  if (compress === true || compression.sharedKey === undefined || compressed.length < data.length)
    return [compressed, RSV1]
  return [data, 0]
}

function frameSize(frame: PreparedFrame): number {
  return frame.header.length + (frame.payload?.length ?? 0)
}
