/**
 * The only place where a protocol `Connection` meets a socket. It feeds the socket's bytes to
 * the connection, writes the frames the connection produces, and owns what the sans-I/O core
 * cannot: timers (the closing handshake timeout) and the transport's backpressure.
 *
 * Socket events go to shared module-level functions that find the driver through a symbol on the
 * socket, so an open connection costs no closures.
 *
 * Output is batched per event-loop turn. Frames written in one turn leave in one socket write:
 * small frames are copied into one buffer ("gathered"), larger ones are corked and leave in one
 * writev with the gathered bytes before them, in order. One `process.nextTick` flushes every
 * driver that wrote in the turn — a broadcast to 10,000 sockets schedules one callback, not
 * 10,000. A single small frame in a turn is not copied: its buffer goes to the socket as it is.
 * Sockets whose turn holds only the same prepared frames (a broadcast's), in the same order,
 * share one buffer of them joined, built once for the turn (see SharedRun).
 */
import type { Duplex } from 'node:stream'
import {
  type CloseInfo,
  Connection,
  type ConnectionHandler,
  type ConnectionOptions,
  encodeSmallFrameAt,
  type PreparedFrame,
  type ProtocolError,
  type Side,
} from '../protocol/index.js'

/** Where the driver reports what happened on the connection. */
export interface DriverListener {
  onMessage(data: Uint8Array, isBinary: boolean): void
  onPing(data: Uint8Array): void
  onPong(data: Uint8Array): void
  /** The peer started or answered the closing handshake. */
  onCloseFrame(code: number, reason: string): void
  onProtocolError(error: ProtocolError): void
  /** The socket's write buffer emptied after a write was buffered. */
  onDrain(): void
  /** Compressing an outgoing message failed; the connection fails with 1011. */
  onInternalError?(error: unknown): void
  /** The transport closed; always the last call. */
  onClosed(info: CloseInfo): void
}

export interface DriverOptions extends ConnectionOptions {
  /** How long to wait for the closing handshake to finish before destroying the socket (ms). */
  closeTimeout: number
  /**
   * Stop reading while this many bytes wait to be written, until the socket drains: a peer
   * that sends without reading cannot make us buffer what we answer. Undefined: never.
   */
  readPauseThreshold?: number
}

/** Why reading is paused; reading resumes when no reason is left. */
export const PauseReason = {
  /** A message is being decompressed off the event loop. */
  Inflating: 1,
  /** Too many bytes wait to be written to this peer. */
  WriteBacklog: 2,
  /** The application has not finished with what it was given (async handlers in flight). */
  Application: 4,
  /** The application asked (`pause()` in rallyjs/ws). */
  User: 8,
} as const

/**
 * Reasons for which we stop reading on purpose, whatever the peer does. Meanwhile its pongs and
 * frames wait unread in the kernel: our silence is not its, so liveness checks hold off.
 * (WriteBacklog is not one: it means the peer does not read what we send.)
 */
const DELIBERATE_PAUSES = PauseReason.Inflating | PauseReason.Application | PauseReason.User

const kDriver = Symbol('rally.driver')

/** Frames up to this size (header included) are copied into the turn's gathered buffer. */
const GATHER_FRAME_LIMIT = 4096
/**
 * Gathered bytes go to the socket once they reach this size, without waiting for the end of the
 * turn: the socket's own accounting (`writableNeedDrain`, 'drain') stays close to the truth.
 */
const GATHER_CAPACITY = 16 * 1024

/** Drivers holding output for the end of this turn, flushed by one `process.nextTick`. */
let driversToFlush: SocketDriver[] = []

/**
 * Small prepared frames that drivers received one after the other in this turn, and their bytes
 * joined once. A broadcast hands the same frame objects to every subscriber: without this each of
 * 10,000 subscribers would copy the same bytes into a buffer of its own. A driver follows a run
 * while its frames are the run's, in order (`frames` only grows, so each driver reads its own
 * prefix of it), and branches off into a new run where they differ; the first driver to flush
 * joins its prefix, and the drivers holding the same prefix write that very buffer. Nothing
 * writes into a joined buffer once it is built: the sockets hold it until it is sent.
 */
class SharedRun {
  readonly frames: Uint8Array[]
  /** The first `joinedCount` frames joined, once one driver has flushed. */
  joined: Buffer | undefined = undefined
  joinedCount = 0

  constructor(frames: Uint8Array[]) {
    this.frames = frames
  }
}

/**
 * This turn's runs by their first frame. Emptied when the turn's flush starts: by then every
 * driver holding a run is in the flush list (a driver joins one only after startWrite scheduled
 * it) and keeps its own reference, so no frame is held past the turn.
 */
const sharedRuns = new Map<Uint8Array, SharedRun>()

function scheduleFlush(driver: SocketDriver): void {
  if (driversToFlush.length === 0) process.nextTick(flushDrivers)
  driversToFlush.push(driver)
}

function flushDrivers(): void {
  // Writes made while flushing (a 'drain' handler that sends) schedule a new round.
  const drivers = driversToFlush
  driversToFlush = []
  // (Map.clear allocates a new table even for an empty map: most turns share nothing.)
  if (sharedRuns.size !== 0) sharedRuns.clear()
  for (let i = 0; i < drivers.length; i++) drivers[i]!.flush()
}

/**
 * What the driver runs over: any duplex byte stream with backpressure (`write()` false, then
 * 'drain') and an orderly end — a net.Socket, a TLSSocket, or an HTTP/2 stream (RFC 8441 5: an
 * END_STREAM flag stands for TCP's FIN, RST_STREAM for its reset). The socket-only parts are
 * optional and used when present.
 */
export type DriverStream = Duplex & {
  setNoDelay?: (noDelay?: boolean) => unknown
  setTimeout?: (timeout: number) => unknown
  readonly remoteAddress?: string | undefined
}

/** The parts of a node:http2 stream the driver uses, without importing node:http2 here. */
interface Http2StreamLike extends Duplex {
  readonly session: { readonly socket?: { readonly remoteAddress?: string | undefined } } | undefined
  readonly rstCode: number | undefined
  close(code?: number): void
}

/** RFC 9113 7: CANCEL, "the stream is no longer needed" — what RFC 8441 5 maps a TCP reset to. */
const HTTP2_CANCEL = 0x8

/** Whether `stream` is an HTTP/2 stream (a node:http2 Http2Stream). */
export function isHttp2Stream(stream: Duplex): stream is Http2StreamLike {
  const candidate = stream as Partial<Http2StreamLike>
  return typeof candidate.close === 'function' && 'rstCode' in stream && 'session' in stream
}

/** The peer's IP address: the socket's, or for an HTTP/2 stream its connection's ("" if none). */
export function remoteAddressOf(stream: Duplex): string {
  if (isHttp2Stream(stream)) return stream.session?.socket?.remoteAddress ?? ''
  return (stream as DriverStream).remoteAddress ?? ''
}

/**
 * Ends a stream at once, without an orderly close: a socket is destroyed (TCP RST or FIN), an
 * HTTP/2 stream gets RST_STREAM with CANCEL (RFC 8441 5) and its connection's other streams go on.
 */
function abortStream(stream: Duplex): void {
  // close() alone waits for unread input to be consumed before the stream is destroyed (and
  // 'close' comes); destroy() after it releases the stream now, keeping the CANCEL code.
  if (isHttp2Stream(stream) && !stream.destroyed) stream.close(HTTP2_CANCEL)
  stream.destroy()
}

type DrivenSocket = DriverStream & { [kDriver]?: SocketDriver }

export class SocketDriver implements ConnectionHandler {
  readonly connection: Connection
  readonly socket: DriverStream
  private readonly listener: DriverListener
  private readonly closeTimeout: number
  private readonly readPauseThreshold: number
  /** Output is waiting for the end of the turn (the driver is in `driversToFlush`). */
  private flushScheduled = false
  /** The socket is corked until the end of the turn (a large frame was written). */
  private corked = false
  /** The turn's only small frame so far, not copied yet (header, then payload or undefined). */
  private firstHeader: Uint8Array | undefined
  private firstPayload: Uint8Array | undefined
  /** Small frames of this turn copied one after the other; `gatheredLength` bytes are used. */
  private gathered: Buffer | undefined
  /** Bytes in `gathered`, or in the first `runCount` frames of `run` when one is followed. */
  private gatheredLength = 0
  /**
   * The turn's small frames, while they are all prepared ones shared with other drivers (never
   * set together with `gathered` or the held first frame).
   */
  private run: SharedRun | undefined
  /**
   * How many of `run`'s frames are this driver's; while a first frame is held (and no run is
   * followed), 1 if it is a prepared one (a run may start from it), 0 if not.
   */
  private runCount = 0
  /** A socket write returned false and 'drain' has not come yet. */
  private backedUp = false
  /**
   * needsDrain said true because of messages still being compressed, not because of the socket:
   * the 'drain' it promised comes when they have been written (outputFlushed), if the socket
   * does not owe one itself by then.
   */
  private drainOwed = false
  /** The most this driver and its socket hold while not backed up (see isBufferedOver). */
  private readonly unbackedBound: number
  private closeTimer: NodeJS.Timeout | undefined
  private closed = false
  /** The socket closed while received input was held behind a decompression (see transportClosed). */
  private closeAwaitsInput = false
  private pauseReasons = 0
  /**
   * Chunks received so far, plus one each time reading resumes after a deliberate pause (what
   * the peer sent meanwhile is about to be read): heartbeats and idle checks compare it with an
   * earlier reading.
   */
  receiveCount = 0
  /** The socket's first error (a reset...), for the close information: not swallowed. */
  socketError: Error | undefined
  /** Bytes ever written through this driver; minus `bufferedAmount`, the bytes sent. */
  bytesQueuedTotal = 0

  constructor(side: Side, socket: DriverStream, listener: DriverListener, options: DriverOptions) {
    this.socket = socket
    this.listener = listener
    this.closeTimeout = options.closeTimeout
    // Below the socket's high-water mark 'drain' would never come to resume reading.
    this.readPauseThreshold =
      options.readPauseThreshold === undefined
        ? Number.POSITIVE_INFINITY
        : Math.max(options.readPauseThreshold, socket.writableHighWaterMark)
    this.unbackedBound = socket.writableHighWaterMark + GATHER_CAPACITY + GATHER_FRAME_LIMIT
    this.connection = new Connection(side, this, options)
    // At once, not in attach(): reading may start later (after an async open handler, which may
    // never settle), and neither a reset nor the peer leaving in between may go unnoticed — an
    // unseen 'close' would leak the connection and hold the server's close() forever.
    ;(socket as DrivenSocket)[kDriver] = this
    socket.on('error', onSocketError)
    socket.on('close', onSocketClose)
    if (socket.closed) {
      // The peer vanished during the handshake and 'close' has already been emitted.
      queueMicrotask(() => this.transportClosed())
    }
  }

  /**
   * Starts reading. `head` holds bytes that arrived with the handshake (already read from the
   * socket by whoever parsed the HTTP head); they are fed first so that none is lost.
   */
  attach(head?: Uint8Array): void {
    const socket = this.socket as DrivenSocket
    if (this.closed || socket.closed) return
    // (An HTTP/2 stream has neither: its session's socket is the session's to tune.)
    socket.setNoDelay?.(true)
    socket.setTimeout?.(0)
    // Sockets from an http.Server allow half-open connections; ours do not: when the peer sends
    // FIN (END_STREAM on HTTP/2), Node ends our side too (no 'end' listener of our own needed).
    socket.allowHalfOpen = false
    socket.on('drain', onSocketDrain)
    if (head !== undefined && head.length > 0) this.connection.receive(head)
    socket.on('data', onSocketData)
    // Whoever read the handshake may have paused the socket (a 'data' listener does not undo an
    // explicit pause): start the flow, unless reading is paused for a reason of ours.
    if (this.pauseReasons === 0) socket.resume()
  }

  // ------------------------------------------------------------- ConnectionHandler

  write(header: Uint8Array, payload: Uint8Array | undefined): void {
    const size = header.length + (payload === undefined ? 0 : payload.length)
    if (!this.startWrite(size)) return
    const socket = this.socket
    if (size <= GATHER_FRAME_LIMIT) this.gather(header, payload, size)
    else {
      // A large frame is never copied: what was gathered goes first, then the frame, all corked
      // so that they leave in one writev at the end of the turn.
      if (!this.corked) {
        this.corked = true
        socket.cork()
      }
      this.releaseGathered()
      if (!socket.write(header)) this.backedUp = true
      if (payload !== undefined && !socket.write(payload)) this.backedUp = true
    }
    this.checkWriteBacklog()
  }

  /**
   * A frame built once for many connections (see OutputSink.writePrepared). A small one is kept
   * uncopied while the turn holds only prepared frames, so that sockets given the same ones can
   * share one buffer of them.
   */
  writePrepared(frame: PreparedFrame): void {
    const header = frame.header
    const size = header.length
    if (frame.payload !== undefined || size > GATHER_FRAME_LIMIT) {
      this.write(header, frame.payload)
      return
    }
    if (!this.startWrite(size)) return
    this.share(header, size)
    this.checkWriteBacklog()
  }

  /**
   * A small unmasked frame (see ConnectionHandler.writeSmallFrame), encoded straight into the
   * turn's gathered buffer: no buffer of its own, one copy of the payload.
   */
  writeSmallFrame(firstByte: number, payload: Uint8Array): void {
    const size = (payload.length < 126 ? 2 : 4) + payload.length
    if (!this.startWrite(size)) return
    // reserve() first: it may move what was held, and so the offset.
    const buffer = this.reserve(size)
    this.gatheredLength = encodeSmallFrameAt(buffer, this.gatheredLength, firstByte, payload)
    this.checkWriteBacklog()
  }

  /**
   * Counts `size` bytes about to be written and makes sure the end of the turn flushes them;
   * false when the socket no longer takes writes.
   */
  private startWrite(size: number): boolean {
    const socket = this.socket
    if (socket.writableEnded || socket.destroyed) return false
    this.bytesQueuedTotal += size
    if (!this.flushScheduled) {
      this.flushScheduled = true
      scheduleFlush(this)
    }
    return true
  }

  /**
   * A peer that sends without reading must not make us buffer without bound what we answer.
   * (The socket can only hold more than readPauseThreshold, which is at least its high-water
   * mark, after a write returned false: until then there is no socket state to read.)
   */
  private checkWriteBacklog(): void {
    if (
      this.backedUp &&
      this.socket.writableLength > this.readPauseThreshold &&
      (this.pauseReasons & PauseReason.WriteBacklog) === 0
    ) {
      this.pause(PauseReason.WriteBacklog)
    }
  }

  /** Stops reading from the socket for `reason` (a PauseReason bit). */
  pause(reason: number): void {
    if (this.pauseReasons === 0 && !this.closed) this.socket.pause()
    this.pauseReasons |= reason
  }

  /** Clears `reason`; reading resumes once no reason is left. */
  resume(reason: number): void {
    if ((this.pauseReasons & reason) === 0) return
    const wasHeld = this.readingHeld
    this.pauseReasons &= ~reason
    // Liveness resumes with reading, from now: the peer is not judged by a ping it answered
    // while we were not reading.
    if (wasHeld && !this.readingHeld) this.receiveCount++
    if (this.pauseReasons === 0 && !this.closed) this.socket.resume()
  }

  get isPaused(): boolean {
    return this.pauseReasons !== 0
  }

  /**
   * Whether reading is paused on purpose (the application paused it, its async handlers are
   * pending, or a message waits for decompression): the peer cannot be judged dead by its
   * silence meanwhile, since we are not reading what it sends.
   */
  get readingHeld(): boolean {
    return (this.pauseReasons & DELIBERATE_PAUSES) !== 0
  }

  closeTransport(): void {
    const socket = this.socket
    if (!socket.writableEnded && !socket.destroyed) {
      this.flush()
      socket.end()
    }
    this.armCloseTimer()
  }

  /** Sends what this turn gathered and corked now rather than at the end of it. */
  flush(): void {
    if (!this.flushScheduled) return
    this.flushScheduled = false
    const socket = this.socket
    if (socket.writableEnded || socket.destroyed) {
      this.firstHeader = this.firstPayload = this.gathered = this.run = undefined
      this.gatheredLength = this.runCount = 0
      this.corked = false
      return
    }
    this.releaseGathered()
    if (this.corked) {
      this.corked = false
      socket.uncork()
    }
  }

  /** Keeps a small frame for the end of the turn, copying it only when a second one comes. */
  private gather(header: Uint8Array, payload: Uint8Array | undefined, size: number): void {
    if (this.firstHeader === undefined && this.gathered === undefined && this.run === undefined) {
      this.firstHeader = header
      this.firstPayload = payload
      this.runCount = 0
      return
    }
    this.reserve(size)
    this.copyIn(header, payload)
  }

  /**
   * Keeps a small prepared frame for the end of the turn: held as the first frame, then with the
   * second one in a run shared with the drivers given the same frames; copied as any other frame
   * once the turn holds something else.
   */
  private share(frame: Uint8Array, size: number): void {
    const first = this.firstHeader
    if (first !== undefined) {
      if (this.runCount === 1) {
        let run = sharedRuns.get(first)
        if (run === undefined) {
          run = new SharedRun([first])
          sharedRuns.set(first, run)
        }
        this.firstHeader = undefined
        this.run = run
        this.gatheredLength = first.length
        this.follow(frame, size)
        return
      }
    } else if (this.run !== undefined) {
      if (this.gatheredLength + size <= GATHER_CAPACITY) {
        this.follow(frame, size)
        return
      }
    } else if (this.gathered === undefined) {
      this.firstHeader = frame
      this.runCount = 1
      return
    }
    this.reserve(size)
    this.copyIn(frame, undefined)
  }

  /** Adds `frame` to this driver's run: the run's next frame, or the first of a new branch. */
  private follow(frame: Uint8Array, size: number): void {
    const frames = this.run!.frames
    const count = this.runCount
    // The first driver to go past the run's end extends it; the others must match it.
    if (frames.length === count) frames.push(frame)
    else if (frames[count] !== frame) {
      // Parted from the run here: a run of its own from this frame on, which the drivers that
      // come later with the same frames follow (the map holds the latest run from a first frame).
      const branch = new SharedRun(frames.slice(0, count))
      branch.frames.push(frame)
      sharedRuns.set(frames[0]!, branch)
      this.run = branch
    }
    this.runCount = count + 1
    this.gatheredLength += size
  }

  /**
   * Makes room for `size` more gathered bytes after what is held (the uncopied first frame
   * copied in first, so that order is kept), and returns the gathered buffer.
   */
  private reserve(size: number): Buffer {
    // (Out of line, so that this stays small on the path of a socket's own sends.)
    if (this.run !== undefined) this.leaveRun(size)
    const first = this.firstHeader
    if (first !== undefined) {
      const firstPayload = this.firstPayload
      this.growGathered(this.heldFirstLength + size)
      this.firstHeader = this.firstPayload = undefined
      this.copyIn(first, firstPayload)
    } else if (this.gathered === undefined) {
      this.growGathered(size)
    } else if (this.gatheredLength + size > this.gathered.length) {
      if (this.gatheredLength + size > GATHER_CAPACITY) {
        this.releaseGathered()
        this.growGathered(size)
      } else this.growGathered(this.gatheredLength + size)
    }
    return this.gathered!
  }

  /** Makes room for at least `needed` bytes, keeping what was gathered. */
  private growGathered(needed: number): void {
    const current = this.gathered
    if (current !== undefined && current.length >= needed) return
    // Start small (a broadcast gives each socket one or a few frames per turn) and double.
    let capacity = current === undefined ? 1024 : current.length * 2
    while (capacity < needed) capacity *= 2
    const next = Buffer.allocUnsafe(Math.min(Math.max(capacity, needed), GATHER_CAPACITY))
    if (current !== undefined) current.copy(next, 0, 0, this.gatheredLength)
    this.gathered = next
  }

  /**
   * The turn holds something else than the run's frames from now on: the run is copied into a
   * gathered buffer with room for `size` more bytes, or, past the capacity, leaves as it is
   * (shared), as gathered bytes would.
   */
  private leaveRun(size: number): void {
    if (this.gatheredLength + size > GATHER_CAPACITY) {
      this.releaseRun()
      return
    }
    const frames = this.run!.frames
    const count = this.runCount
    const length = this.gatheredLength
    this.run = undefined
    this.runCount = 0
    this.gatheredLength = 0
    this.growGathered(length + size)
    for (let i = 0; i < count; i++) this.copyIn(frames[i]!, undefined)
  }

  /**
   * Writes this driver's frames of the run as one buffer: the run's own when another driver built
   * it for the same frames.
   */
  private releaseRun(): void {
    const run = this.run!
    const count = this.runCount
    let joined = run.joined
    if (run.joinedCount !== count) {
      joined = Buffer.allocUnsafe(this.gatheredLength)
      const frames = run.frames
      let offset = 0
      for (let i = 0; i < count; i++) {
        const frame = frames[i]!
        joined.set(frame, offset)
        offset += frame.length
      }
      if (run.joined === undefined) {
        run.joined = joined
        run.joinedCount = count
      }
    }
    this.run = undefined
    this.runCount = 0
    this.gatheredLength = 0
    if (!this.socket.write(joined!)) this.backedUp = true
  }

  private copyIn(header: Uint8Array, payload: Uint8Array | undefined): void {
    const gathered = this.gathered!
    gathered.set(header, this.gatheredLength)
    this.gatheredLength += header.length
    if (payload !== undefined) {
      gathered.set(payload, this.gatheredLength)
      this.gatheredLength += payload.length
    }
  }

  /** Hands what was gathered to the socket (corked or not), in order. */
  private releaseGathered(): void {
    const socket = this.socket
    if (this.firstHeader !== undefined) {
      if (!socket.write(this.firstHeader)) this.backedUp = true
      if (this.firstPayload !== undefined && !socket.write(this.firstPayload)) this.backedUp = true
      this.firstHeader = this.firstPayload = undefined
    } else if (this.run !== undefined) {
      this.releaseRun()
    } else if (this.gathered !== undefined) {
      if (!socket.write(this.gathered.subarray(0, this.gatheredLength))) this.backedUp = true
      this.gathered = undefined
      this.gatheredLength = 0
    }
  }

  message(data: Uint8Array, isBinary: boolean): void {
    this.listener.onMessage(data, isBinary)
  }

  ping(data: Uint8Array): void {
    this.listener.onPing(data)
  }

  pong(data: Uint8Array): void {
    this.listener.onPong(data)
  }

  closeReceived(code: number, reason: string): void {
    // A client waits for the server to close TCP, but not forever (RFC 6455 7.1.1).
    this.armCloseTimer()
    this.listener.onCloseFrame(code, reason)
  }

  protocolError(error: ProtocolError): void {
    this.listener.onProtocolError(error)
  }

  pauseReading(): void {
    this.pause(PauseReason.Inflating)
  }

  resumeReading(): void {
    this.resume(PauseReason.Inflating)
  }

  internalError(error: unknown): void {
    this.listener.onInternalError?.(error)
  }

  inputSettled(): void {
    if (this.closeAwaitsInput) this.transportClosed()
  }

  outputFlushed(): void {
    // The socket's own 'drain' keeps the promise if the socket is backed up now.
    if (!this.drainOwed || this.socket.writableNeedDrain || this.closed) return
    this.drainOwed = false
    this.listener.onDrain()
  }

  // ------------------------------------------------------------- calls from the API layer

  /**
   * Bytes sent and not yet handed to the kernel: in the socket, held for the end of the turn,
   * and waiting in the connection's output sequencer (messages being compressed, what waits
   * behind them, messages held behind an open fragmented message).
   */
  get bufferedAmount(): number {
    return this.writeBufferedAmount + this.connection.pendingOutputBytes
  }

  /** Bytes written by the connection that the socket has not handed to the kernel yet. */
  private get writeBufferedAmount(): number {
    return this.socket.writableLength + this.gatheredLength + this.heldFirstLength
  }

  /** Bytes of the turn's uncopied first frame, if one is held. */
  private get heldFirstLength(): number {
    const header = this.firstHeader
    return header === undefined ? 0 : header.length + (this.firstPayload?.length ?? 0)
  }

  /**
   * Whether `bufferedAmount` is over `limit`, cheaply: while no socket write has returned false,
   * the socket holds less than its high-water mark and this driver at most a turn's gathered
   * bytes, so a limit above both needs no reading of the socket's state (a broadcast checks it
   * once per subscriber).
   */
  isBufferedOver(limit: number): boolean {
    const pending = this.connection.pendingOutputBytes
    if (!this.backedUp && pending === 0 && limit >= this.unbackedBound) return false
    return this.bufferedAmount > limit
  }

  /** Bytes the socket has handed to the kernel so far. */
  get bytesFlushedTotal(): number {
    return this.bytesQueuedTotal - this.writeBufferedAmount
  }

  /**
   * Whether the sender should wait for 'drain' (onDrain) before sending much more: the last write
   * went over the socket's high-water mark, or as many bytes wait to be compressed. A true answer
   * is a promise that onDrain will come.
   */
  get needsDrain(): boolean {
    if (this.socket.writableNeedDrain) return true
    if (this.connection.pendingOutputBytes < this.socket.writableHighWaterMark) return false
    this.drainOwed = true
    return true
  }

  /** Starts the closing handshake; the socket is destroyed if it does not finish in time. */
  close(code?: number, reason?: string): void {
    this.connection.close(code, reason)
    if (this.connection.isCloseSent) this.armCloseTimer()
  }

  /** Fails the connection for a local reason (1011 after a handler threw, 1008 policy...). */
  fail(code: number, reason = ''): void {
    this.connection.fail(code, reason)
  }

  /** Destroys the socket (RST_STREAM for an HTTP/2 stream) at once, without a closing handshake. */
  terminate(): void {
    abortStream(this.socket)
  }

  get isClosed(): boolean {
    return this.closed
  }

  // ------------------------------------------------------------- socket events

  receive(chunk: Uint8Array): void {
    this.receiveCount++
    this.connection.receive(chunk)
  }

  handleDrain(): void {
    this.backedUp = false
    this.drainOwed = false
    this.resume(PauseReason.WriteBacklog)
    this.listener.onDrain()
  }

  transportClosed(): void {
    if (this.closed) return
    if (this.connection.isInputHeld) {
      // What the peer sent before it closed — a message still being decompressed, and often its
      // close frame after it — is delivered first, as ws does; inputSettled() comes back here.
      this.closeAwaitsInput = true
      return
    }
    this.closed = true
    if (this.closeTimer !== undefined) {
      clearTimeout(this.closeTimer)
      this.closeTimer = undefined
    }
    const socket = this.socket as DrivenSocket
    socket.removeListener('data', onSocketData)
    socket.removeListener('drain', onSocketDrain)
    const info = this.connection.transportClosed()
    // A peer fault that failed the connection explains the close better than the reset after it.
    if (info.error === undefined && this.socketError !== undefined) info.error = this.socketError
    this.listener.onClosed(info)
  }

  private armCloseTimer(): void {
    if (this.closeTimer !== undefined || this.closed) return
    this.closeTimer = setTimeout(destroySocket, this.closeTimeout, this.socket)
    this.closeTimer.unref()
  }
}

function destroySocket(socket: Duplex): void {
  abortStream(socket)
}

function onSocketData(this: DrivenSocket, chunk: Buffer): void {
  this[kDriver]!.receive(chunk)
}

function onSocketError(this: DrivenSocket, error: Error): void {
  // ECONNRESET and friends: 'close' follows, and the close event reports 1006 with this error as
  // its cause. Listening here keeps the error from crashing the process.
  const driver = this[kDriver]
  if (driver !== undefined) driver.socketError ??= error
}

function onSocketDrain(this: DrivenSocket): void {
  this[kDriver]!.handleDrain()
}

function onSocketClose(this: DrivenSocket): void {
  this[kDriver]!.transportClosed()
}
