/**
 * The WebSocket connection state machine, sans I/O (RFC 6455 sections 5-7).
 *
 * Bytes in: `receive(chunk)`, `transportClosed()`. Calls in: `sendText`, `sendBinary`, `ping`,
 * `pong`, `close`, `fail`. Out: the `ConnectionHandler` methods, called synchronously — bytes to
 * write, messages, control frames, and when to close the transport. No sockets, timers or event
 * loop: the Node layer owns those (close timeouts, heartbeats, backpressure).
 *
 * States follow the WebSocket API: CONNECTING (handshake not done; the Node layer handles it),
 * OPEN, CLOSING (a close frame was sent or received), CLOSED (the transport is gone).
 */
import { Buffer } from 'node:buffer'
import { CloseCode, encodeClosePayload, isValidWireCloseCode } from './close.js'
import { ProtocolError, ProtocolErrorCode } from './errors.js'
import { CompressionDeclinedError, type MessageCompression } from './extensions/compression.js'
import { type FrameHeader, FrameParser, type FrameSink, withDeflateSlack } from './frame-parser.js'
import { type Limits, resolveLimits } from './limits.js'
import { Opcode } from './opcode.js'
import {
  type CompressionFailureListener,
  OutputSequencer,
  type OutputSequencerOptions,
  type OutputSink,
  type PreparedFrame,
} from './output-sequencer.js'
import { isValidUtf8, Utf8Validator } from './utf8.js'

export const ConnectionState = {
  CONNECTING: 0,
  OPEN: 1,
  CLOSING: 2,
  CLOSED: 3,
} as const
export type ConnectionState = (typeof ConnectionState)[keyof typeof ConnectionState]

export type Side = 'client' | 'server'

/**
 * What the connection asks of its environment. Called synchronously from inputs and calls.
 * Output (write, writeSmallFrame, closeTransport, outputFlushed) comes through the output
 * sequencer, whose invariant is written at the top of output-sequencer.ts.
 */
export interface ConnectionHandler extends OutputSink {
  /** A complete message. Text has been checked to be UTF-8. `data` may be a view of input bytes. */
  message(data: Uint8Array, isBinary: boolean): void
  ping(data: Uint8Array): void
  pong(data: Uint8Array): void
  /** The peer's close frame arrived; `code` is 1005 when it carried none. */
  closeReceived(code: number, reason: string): void
  /** The peer broke the protocol or a limit; a close frame with `error.closeCode` was sent. */
  protocolError(error: ProtocolError): void
  /**
   * Input is being held (a message is decompressed off the event loop): stop reading from the
   * transport until `resumeReading`, so that held input stays small.
   */
  pauseReading?(): void
  resumeReading?(): void
  /**
   * The input held behind a decompression has been processed (the message delivered and what
   * followed it parsed, or the connection failed): a transport close that waited for it (see
   * `isInputHeld`) may now be reported.
   */
  inputSettled?(): void
  /** Compressing an outgoing message failed (a zlib error): the connection fails with 1011. */
  internalError?(error: unknown): void
}

export interface ConnectionOptions {
  limits?: Partial<Limits>
  /** Answer pings with pongs automatically (RFC 6455 5.5.2). Default true. */
  autoPong?: boolean
  /** Fixed masking key, for byte-exact tests of the client side. Never set it in production. */
  maskKey?: Uint8Array
  /** Start OPEN (the handshake was done elsewhere). Default true. */
  open?: boolean
}

/** How the connection ended, as the WebSocket API reports it (the close event). */
export interface CloseInfo {
  /** The code from the peer's close frame, 1005 if it had none, 1006 if none arrived. */
  code: number
  reason: string
  /** True when close frames went both ways before the transport closed. */
  wasClean: boolean
  /**
   * What ended the connection, if anything went wrong: the peer's protocol fault (a
   * ProtocolError), or the transport's error (a reset...) filled in by the socket layer.
   */
  error: Error | undefined
}

const EMPTY = new Uint8Array(0)

/** A server's frames are not masked (RFC 6455 5.1); the same options for every connection. */
const SERVER_OUTPUT: OutputSequencerOptions = Object.freeze({ masking: false })

/** RSV1 marks a compressed message (RFC 7692 6). */
const RSV1 = 0x40

export type { PreparedFrame }

export class Connection implements FrameSink, CompressionFailureListener {
  readonly side: Side
  readonly limits: Limits
  private readonly handler: ConnectionHandler
  private readonly parser: FrameParser
  /** Everything that leaves: order, queues, what counts as buffered, when TCP may close. */
  private readonly output: OutputSequencer
  private readonly autoPong: boolean

  state: ConnectionState

  // Message being assembled.
  private messageOpcode = 0
  private messageLength = 0
  private fragmentCount = 0
  /** The message's payload so far: usually one piece; more when it came in several. */
  private firstPiece: Uint8Array | undefined
  private morePieces: Uint8Array[] | undefined
  /** The buffer the parser assembles a one-frame message in (see frameBuffer). */
  private messageBuffer: Uint8Array | undefined
  private utf8: Utf8Validator | undefined
  private messageCompressed = false
  /** A message is being decompressed off the event loop; the input after it waits. */
  private inflating = false

  /** The negotiated compression extension, if any (permessage-deflate). */
  private compression: MessageCompression | undefined

  // Control frame being assembled (at most 125 bytes, usually one piece).
  private controlOpcode = 0
  /** The control frame's payload so far (at most 125 bytes). */
  private controlPayload: Uint8Array | undefined

  // Closing handshake.
  private closeSent = false
  private closeFrameReceived = false
  private receivedCode: number = CloseCode.Abnormal
  private receivedReason = ''
  private failure: ProtocolError | undefined

  constructor(side: Side, handler: ConnectionHandler, options: ConnectionOptions = {}) {
    this.side = side
    this.handler = handler
    this.limits = resolveLimits(options.limits)
    // Servers without a fixed mask key (all but byte-exact tests) share one options object.
    this.output = new OutputSequencer(
      handler,
      side === 'server' && options.maskKey === undefined
        ? SERVER_OUTPUT
        : { masking: side === 'client', maskKey: options.maskKey },
      this,
    )
    this.autoPong = options.autoPong ?? true
    this.state = options.open === false ? ConnectionState.CONNECTING : ConnectionState.OPEN
    this.parser = new FrameParser(this, {
      expectMasked: side === 'server',
      maxFrameSize: this.limits.maxFrameSize,
    })
  }

  /**
   * Installs a negotiated compression extension: RSV1 becomes meaningful on the first frame of a
   * data message (RFC 7692 6).
   */
  setCompression(compression: MessageCompression): void {
    this.compression = compression
    this.output.compression = compression
    this.parser.allowedRsv = RSV1
  }

  /** The negotiated compression, if any. */
  get messageCompression(): MessageCompression | undefined {
    return this.compression
  }

  /** The handshake finished elsewhere: start exchanging frames. */
  open(): void {
    if (this.state === ConnectionState.CONNECTING) this.state = ConnectionState.OPEN
  }

  /** Whether data frames may still be sent (OPEN, and no close frame sent yet). */
  get canSend(): boolean {
    return this.state === ConnectionState.OPEN
  }

  /** Whether the closing handshake is complete: close frames sent and received. */
  get closeHandshakeDone(): boolean {
    return this.closeSent && this.closeFrameReceived
  }

  get isCloseSent(): boolean {
    return this.closeSent
  }

  /**
   * Payload bytes sent but not yet handed to the handler: messages being compressed and what
   * waits behind them, and messages held behind an open fragmented message. They count in
   * `bufferedAmount` and in backpressure decisions, as bytes in the socket do.
   */
  get pendingOutputBytes(): number {
    return this.output.pendingBytes
  }

  /** Data messages sent so far (sendText, sendBinary, sendPrepared), written or still pending. */
  get messagesAccepted(): number {
    return this.output.messagesAccepted
  }

  /** Of those, how many have been handed to the handler (they leave in order). */
  get messagesReleased(): number {
    return this.output.messagesReleased
  }

  // ---------------------------------------------------------------- input

  /** Feeds bytes read from the transport. Peer faults fail the connection; they do not throw. */
  receive(chunk: Uint8Array): void {
    if (this.parser.isStopped || chunk.length === 0) return
    try {
      this.parser.push(chunk)
    } catch (error) {
      if (error instanceof ProtocolError) this.failWith(error)
      else throw error
    }
  }

  /**
   * Whether received input is held behind a message being decompressed off the event loop. A
   * transport that closes meanwhile should be reported only after `inputSettled`: the peer sent
   * those bytes (often the message, then its close frame) before it closed.
   */
  get isInputHeld(): boolean {
    return this.inflating
  }

  /** The transport is closed (both directions). Returns how the connection ended. */
  transportClosed(): CloseInfo {
    this.state = ConnectionState.CLOSED
    this.parser.stop()
    this.dropPieces()
    this.controlPayload = undefined
    this.output.stop()
    this.compression?.close()
    return this.closeInfo()
  }

  closeInfo(): CloseInfo {
    // RFC 6455 7.1.5: with no close frame received, the connection close code is 1006.
    return {
      code: this.closeFrameReceived ? this.receivedCode : CloseCode.Abnormal,
      reason: this.closeFrameReceived ? this.receivedReason : '',
      wasClean: this.closeSent && this.closeFrameReceived,
      error: this.failure,
    }
  }

  // ---------------------------------------------------------------- frame sink

  frameStart(header: FrameHeader): void {
    const opcode = header.opcode
    if (opcode >= 0x8) {
      // RFC 7692 6.1: "An endpoint MUST NOT set the 'Per-Message Compressed' bit of control
      // frames"; the parser lets RSV1 through once compression is negotiated, so check it here.
      if (header.rsv !== 0) {
        throw new ProtocolError(ProtocolErrorCode.ReservedBits, 'Reserved bits set on a control frame')
      }
      this.controlOpcode = opcode
      return
    }
    if (opcode === Opcode.Continuation) {
      // RFC 7692 6.1: nor on "non-first fragments of a data message".
      if (header.rsv !== 0) {
        throw new ProtocolError(
          ProtocolErrorCode.CompressedContinuation,
          'Reserved bits set on a continuation frame',
        )
      }
      // RFC 6455 5.4: a fragmented message starts with a non-continuation frame.
      if (this.messageOpcode === 0) {
        throw new ProtocolError(
          ProtocolErrorCode.UnexpectedContinuation,
          'Continuation frame without a message to continue',
        )
      }
    } else {
      // RFC 6455 5.4: "The fragments of one message MUST NOT be interleaved between the fragments
      // of another message".
      if (this.messageOpcode !== 0) {
        throw new ProtocolError(
          ProtocolErrorCode.ExpectedContinuation,
          'New data frame inside a fragmented message',
        )
      }
      this.messageOpcode = opcode
      this.messageLength = 0
      this.fragmentCount = 0
      this.messageCompressed = header.rsv !== 0
      if (opcode === Opcode.Text && !this.messageCompressed) {
        if (this.utf8 === undefined) this.utf8 = new Utf8Validator()
        else this.utf8.reset()
      }
    }
    if (++this.fragmentCount > this.limits.maxFragments) {
      throw new ProtocolError(
        ProtocolErrorCode.TooManyFragments,
        `Message has more than ${this.limits.maxFragments} fragments`,
      )
    }
    // Checked on the declared length, before any of this frame's payload is buffered. (A
    // compressed message is checked again, on its real size, while it is inflated.)
    const limit = this.messageCompressed
      ? withDeflateSlack(this.limits.maxMessageSize)
      : this.limits.maxMessageSize
    if (this.messageLength + header.length > limit) {
      throw new ProtocolError(
        ProtocolErrorCode.MessageTooLarge,
        `Message exceeds the limit of ${this.limits.maxMessageSize} bytes`,
      )
    }
    this.messageLength += header.length
  }

  /**
   * A message that is one frame spanning several reads is assembled by the parser in one buffer,
   * unmasked straight into it: written once, not unmasked in place and then joined.
   */
  frameBuffer(header: FrameHeader): Uint8Array | undefined {
    if (!header.fin || this.controlOpcode !== 0 || this.firstPiece !== undefined) return undefined
    this.messageBuffer = Buffer.allocUnsafe(header.length)
    return this.messageBuffer
  }

  framePayload(piece: Uint8Array): void {
    if (this.controlOpcode !== 0) {
      // Rarely in more than one piece, and never more than 125 bytes: joined as it comes.
      this.controlPayload =
        this.controlPayload === undefined ? piece : Buffer.concat([this.controlPayload, piece])
      return
    }
    // Checked as bytes arrive, so invalid text fails before the rest of the frame is here.
    // (Compressed text is checked once inflated.)
    if (this.messageOpcode === Opcode.Text && !this.messageCompressed && !this.utf8!.push(piece)) {
      throw new ProtocolError(ProtocolErrorCode.InvalidUtf8, 'Text message is not valid UTF-8')
    }
    // Assembled in messageBuffer by the parser: the buffer is the message, filled by frameEnd.
    if (this.messageBuffer !== undefined) this.firstPiece = this.messageBuffer
    else if (this.firstPiece === undefined) this.firstPiece = piece
    else (this.morePieces ??= []).push(piece)
  }

  /** The message's payload as one array: its only piece as is, or the pieces joined. */
  private takePieces(): Uint8Array {
    const first = this.firstPiece
    const more = this.morePieces
    this.firstPiece = undefined
    this.morePieces = undefined
    this.messageBuffer = undefined
    if (first === undefined) return EMPTY
    if (more === undefined) return first
    const joined = Buffer.allocUnsafe(this.messageLength)
    joined.set(first, 0)
    let offset = first.length
    for (const piece of more) {
      joined.set(piece, offset)
      offset += piece.length
    }
    return joined
  }

  private dropPieces(): void {
    this.firstPiece = undefined
    this.morePieces = undefined
    this.messageBuffer = undefined
  }

  frameEnd(header: FrameHeader): void {
    if (this.controlOpcode !== 0) {
      const opcode = this.controlOpcode
      this.controlOpcode = 0
      const payload = this.controlPayload ?? EMPTY
      this.controlPayload = undefined
      this.handleControlFrame(opcode, payload)
      return
    }
    if (!header.fin) return
    const isBinary = this.messageOpcode === Opcode.Binary
    this.messageOpcode = 0
    if (this.messageCompressed) {
      this.inflateMessage(isBinary)
      return
    }
    if (!isBinary && !this.utf8!.complete) {
      throw new ProtocolError(ProtocolErrorCode.InvalidUtf8, 'Text message ends inside a UTF-8 sequence')
    }
    this.handler.message(this.takePieces(), isBinary)
  }

  /**
   * Decompresses a complete message. Done synchronously, it is delivered at once; done off the
   * event loop, input is held (and reading paused) until it is delivered, so that no later
   * message, control frame or close overtakes it.
   */
  private inflateMessage(isBinary: boolean): void {
    const first = this.firstPiece
    const pieces =
      first === undefined ? [] : this.morePieces === undefined ? [first] : [first, ...this.morePieces]
    this.dropPieces()
    const result = this.compression!.decompress(pieces, this.messageLength, this.limits.maxMessageSize)
    if (!(result instanceof Promise)) {
      this.deliverInflated(result, isBinary)
      return
    }
    this.parser.suspend()
    this.inflating = true
    this.handler.pauseReading?.()
    result.then(
      (data) => {
        this.inflating = false
        try {
          if (this.state === ConnectionState.CLOSED || this.parser.isStopped) return
          this.deliverInflated(data, isBinary)
          this.handler.resumeReading?.()
          this.parser.resume()
        } catch (error) {
          if (error instanceof ProtocolError) this.failWith(error)
          else throw error
        } finally {
          // resume() may have met another compressed message and suspended again.
          if (!this.inflating) this.handler.inputSettled?.()
        }
      },
      (error: unknown) => {
        this.inflating = false
        if (this.state !== ConnectionState.CLOSED && error instanceof CompressionDeclinedError) {
          // Not the peer's fault: too much decompression is queued process-wide. RFC 6455 7.4.1
          // registers 1013 (Try Again Later) for a server that cannot serve now.
          this.handler.internalError?.(error)
          this.fail(CloseCode.TryAgainLater, 'Busy: try again later')
        } else if (this.state !== ConnectionState.CLOSED) {
          this.failWith(
            error instanceof ProtocolError
              ? error
              : new ProtocolError(ProtocolErrorCode.InvalidCompressedData, 'Invalid compressed data'),
          )
        }
        this.handler.inputSettled?.()
      },
    )
  }

  private deliverInflated(data: Uint8Array, isBinary: boolean): void {
    // RFC 6455 8.1 applies to the decompressed text.
    if (!isBinary && !isValidUtf8(data)) {
      throw new ProtocolError(ProtocolErrorCode.InvalidUtf8, 'Text message is not valid UTF-8')
    }
    this.handler.message(data, isBinary)
  }

  private handleControlFrame(opcode: number, payload: Uint8Array): void {
    if (opcode === Opcode.Ping) {
      // RFC 6455 5.5.2: "Upon receipt of a Ping frame, an endpoint MUST send a Pong frame in
      // response, unless it already received a Close frame" — and it cannot have: input stops at
      // the close frame. After our own close frame, only the close reply is awaited.
      if (this.autoPong && !this.closeSent) this.output.sendControl(Opcode.Pong, payload)
      this.handler.ping(payload)
    } else if (opcode === Opcode.Pong) {
      this.handler.pong(payload)
    } else {
      this.handleCloseFrame(payload)
    }
  }

  private handleCloseFrame(payload: Uint8Array): void {
    let code: number = CloseCode.NoStatus
    let reason = ''
    if (payload.length === 1) {
      // RFC 6455 5.5.1: a body, if present, starts with a 2-byte code.
      throw new ProtocolError(ProtocolErrorCode.InvalidClosePayload, 'Close frame payload of 1 byte')
    }
    if (payload.length >= 2) {
      code = (payload[0]! << 8) | payload[1]!
      if (!isValidWireCloseCode(code)) {
        throw new ProtocolError(ProtocolErrorCode.InvalidCloseCode, `Invalid close code ${code}`)
      }
      const reasonBytes = payload.subarray(2)
      // RFC 6455 5.5.1: the reason is UTF-8; 8.1 makes invalid UTF-8 a failure.
      if (reasonBytes.length > 0) {
        if (!isValidUtf8(reasonBytes)) {
          throw new ProtocolError(ProtocolErrorCode.InvalidCloseReason, 'Close reason is not valid UTF-8')
        }
        reason = Buffer.from(reasonBytes.buffer, reasonBytes.byteOffset, reasonBytes.length).toString('utf8')
      }
    }
    this.closeFrameReceived = true
    this.receivedCode = code
    this.receivedReason = reason
    // RFC 6455 5.5.1: after a close frame the peer sends nothing more; anything after it is ignored.
    this.parser.stop()
    this.dropPieces()
    if (!this.closeSent) {
      // "If an endpoint receives a Close frame and did not previously send a Close frame, the
      // endpoint MUST send a Close frame in response ... typically echoing the status code".
      this.state = ConnectionState.CLOSING
      // The reason is echoed too, as browsers, ws and python-websockets do; it is already known to
      // be valid UTF-8 of at most 123 bytes.
      this.sendCloseFrame(code === CloseCode.NoStatus ? EMPTY : encodeClosePayload(code, reason))
    }
    this.handler.closeReceived(code, reason)
    // RFC 6455 7.1.1: "the server [...] SHOULD close the underlying TCP connection"; the client
    // waits for it (its Node layer bounds the wait with a timer). Not before the close frame has
    // been written, and it may be queued behind messages still being compressed.
    if (this.side === 'server' && this.state !== ConnectionState.CLOSED)
      this.output.closeTransportWhenFlushed()
  }

  // ---------------------------------------------------------------- output

  /**
   * Sends a text message. Returns false (and sends nothing) once closing has begun. With
   * compression negotiated, `compress` undefined compresses messages of `threshold` bytes or
   * more; true or false decides for this message.
   */
  sendText(data: string | Uint8Array, compress?: boolean): boolean {
    if (this.state !== ConnectionState.OPEN) return false
    this.sendMessage(Opcode.Text, typeof data === 'string' ? Buffer.from(data, 'utf8') : data, compress)
    return true
  }

  /** Sends a binary message. Returns false (and sends nothing) once closing has begun. */
  sendBinary(data: Uint8Array, compress?: boolean): boolean {
    if (this.state !== ConnectionState.OPEN) return false
    this.sendMessage(Opcode.Binary, data, compress)
    return true
  }

  private sendMessage(opcode: number, data: Uint8Array, compress: boolean | undefined): void {
    this.output.sendMessage(opcode, data, compress)
  }

  /**
   * Sends a frame serialized elsewhere, once for many connections (`server.publish`). In order
   * with every other send. A promise stands for a frame still being compressed; `size` is what
   * it counts as pending meanwhile (the message's uncompressed size).
   */
  sendPrepared(frame: PreparedFrame | Promise<PreparedFrame>, size?: number): boolean {
    if (this.state !== ConnectionState.OPEN) return false
    this.output.sendPrepared(frame, size)
    return true
  }

  /**
   * Sends one frame of a fragmented message: the first with `Opcode.Text` or `Opcode.Binary`, the
   * rest with `Opcode.Continuation`, the last with `fin` true. The caller keeps fragments of one
   * message together (RFC 6455 5.4).
   */
  sendFragment(opcode: number, data: Uint8Array, fin: boolean): boolean {
    if (this.state !== ConnectionState.OPEN) return false
    if (opcode !== Opcode.Text && opcode !== Opcode.Binary && opcode !== Opcode.Continuation) {
      throw new TypeError(`Not a data opcode: ${opcode}`)
    }
    const fragmentOpen = this.output.isFragmentOpen
    if (opcode === Opcode.Continuation ? !fragmentOpen : fragmentOpen) {
      throw new TypeError(
        fragmentOpen
          ? 'A fragmented message is open: continue it with Opcode.Continuation'
          : 'No fragmented message to continue: start one with Opcode.Text or Opcode.Binary',
      )
    }
    this.output.sendFragment(opcode, data, fin)
    return true
  }

  ping(data: Uint8Array = EMPTY): boolean {
    checkControlPayload(data)
    if (this.state !== ConnectionState.OPEN) return false
    this.output.sendControl(Opcode.Ping, data)
    return true
  }

  pong(data: Uint8Array = EMPTY): boolean {
    checkControlPayload(data)
    if (this.state !== ConnectionState.OPEN) return false
    this.output.sendControl(Opcode.Pong, data)
    return true
  }

  /**
   * Starts the closing handshake (RFC 6455 7.1.2). Without a code the close frame is empty.
   * Throws RangeError for a code that may not be sent or a reason over 123 bytes. Does nothing
   * once a close frame was sent.
   */
  close(code?: number, reason?: string): void {
    const payload = encodeClosePayload(code, reason)
    if (this.closeSent || this.state === ConnectionState.CLOSED) return
    this.state = ConnectionState.CLOSING
    this.sendCloseFrame(payload)
  }

  /** @internal The output sequencer could not compress a message (a zlib error): 1011. */
  compressionFailed(error: unknown): void {
    this.handler.internalError?.(error)
    this.fail(CloseCode.InternalError)
  }

  /**
   * Fails the connection (RFC 6455 7.1.7): sends a close frame with `code` if none was sent, stops
   * reading and asks for the transport to close. Used for local reasons (1011, 1008, a timeout).
   */
  fail(code: number, reason = ''): void {
    if (this.state === ConnectionState.CLOSED) return
    this.parser.stop()
    // A failing connection does not wait for messages still being compressed or held.
    this.output.discard()
    if (!this.closeSent) {
      this.state = ConnectionState.CLOSING
      this.sendCloseFrame(encodeClosePayload(code, reason))
    }
    this.handler.closeTransport()
  }

  private failWith(error: ProtocolError): void {
    if (this.failure === undefined) this.failure = error
    this.fail(error.closeCode, error.message.length <= 123 ? error.message : '')
    this.handler.protocolError(error)
  }

  private sendCloseFrame(payload: Uint8Array): void {
    this.closeSent = true
    this.output.sendClose(payload)
  }
}

function checkControlPayload(data: Uint8Array): void {
  // RFC 6455 5.5: control frame payloads are at most 125 bytes.
  if (data.length > 125)
    throw new RangeError(`Control frame payload is ${data.length} bytes; the limit is 125`)
}
