/**
 * permessage-deflate on zlib (RFC 7692 7.2), with memory and CPU bounded by default.
 *
 * How each direction is done:
 * - Small messages are (de)compressed synchronously on the event loop, through zlib contexts
 *   that are kept and driven a call at a time (src/node/zlib-sync.ts): no thread-pool round
 *   trip, and no zlib context built and torn down per message (for 1 KiB of JSON that set-up
 *   was most of the cost: 25 µs one-shot against 7 µs on a kept context, bench/profile-notes.md).
 *   "Small" bounds the work of the synchronous call: compression takes at most SYNC_LIMIT input
 *   bytes; decompression at most SYNC_LIMIT compressed bytes AND produces at most
 *   SYNC_INFLATE_OUTPUT_LIMIT bytes (plus the rest of the 16 KiB zlib chunk in which it passed
 *   them) — the compressed size says nothing about the output (16 KiB inflate to 16 MiB), so a
 *   message that inflates past it is finished in the thread pool.
 *   Larger messages go to the thread pool through the process-wide limiter.
 * - Without context takeover (the server's default in both directions), every connection with
 *   the same settings shares ONE compressor and one decompressor per window size, reset after
 *   each message (RFC 7692 7.1.1: each message "MUST" start from an empty sliding window): a
 *   synchronous call finishes before another starts, so one context serves the whole process.
 *   A message too large for the synchronous path is done one-shot in the thread pool.
 * - With context takeover, a zlib stream is kept per connection (created on first use); a small
 *   message goes through it synchronously when no thread-pool job is running on it, otherwise it
 *   waits its turn behind that job.
 *
 * Memory per connection with context takeover, from zlib's documentation:
 *   compressor   (1 << (windowBits + 2)) + (1 << (memLevel + 9))  — 256 KiB at 15/8, 64 KiB at 13/7
 *   decompressor (1 << windowBits) + about 7 KiB                   — 39 KiB at 15
 * (measured figures, with Node's own overhead, in docs/deflate.md). Without context
 * takeover: nothing per connection.
 *
 * Zip bombs: decompression stops as soon as the output passes the message size limit, so a
 * message never expands in memory beyond `maxPayload` plus one zlib chunk (16 KiB).
 */
import { Buffer } from 'node:buffer'
import { availableParallelism } from 'node:os'
import {
  constants,
  createDeflateRaw,
  createInflateRaw,
  type DeflateRaw,
  deflateRaw,
  type InflateRaw,
  inflateRaw,
  type ZlibOptions,
} from 'node:zlib'
import { CompressionDeclinedError, type MessageCompression } from '../protocol/extensions/compression.js'
import {
  DEFAULT_DEFLATE_LEVEL,
  DEFAULT_DEFLATE_MEM_LEVEL,
  DEFAULT_DEFLATE_THRESHOLD,
  type DeflateDirection,
  type DeflateParams,
  directionsFor,
  type PerMessageDeflateOptions,
} from '../protocol/extensions/permessage-deflate.js'
import { ProtocolError, ProtocolErrorCode } from '../protocol/index.js'
import { type SyncDone, type SyncStopped, SyncZlib, syncZlibAvailable } from './zlib-sync.js'

/** Messages up to this size are (de)compressed synchronously on the event loop. */
export const SYNC_LIMIT = 64 * 1024

/**
 * The most a synchronous inflate may produce: about a millisecond of zlib work, so that no
 * message holds the event loop longer (every other connection waits meanwhile). A message that
 * inflates to more is decompressed again in the thread pool; at most this much work is wasted.
 */
export const SYNC_INFLATE_OUTPUT_LIMIT = 256 * 1024

/** zlib's smallest output chunk (zlib.constants.Z_MIN_CHUNK). */
const MIN_CHUNK_SIZE = 64

/**
 * The largest buffer allocated up front for a message being inflated off the event loop (see
 * outputBufferSize). A message larger than this (only with maxPayload set above it) is joined
 * from pieces at the end, as zlib would.
 */
const MAX_OUTPUT_BUFFER = 64 * 1024 * 1024

/** RFC 7692 7.2.2: the receiver appends 00 00 FF FF before inflating. */
const TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff])

/** Jobs the limiter keeps waiting, at most, by default (see ZlibLimiter). */
export const DEFAULT_ZLIB_MAX_QUEUED = 4096
/** Input bytes the limiter keeps waiting, at most, by default. */
export const DEFAULT_ZLIB_MAX_QUEUED_BYTES = 256 * 1024 * 1024

/**
 * The limiter's queue is full: the job was refused without running. A compression then sends
 * its message uncompressed; a decompression fails its connection with 1013 (Try Again Later).
 */
export class ZlibBusyError extends CompressionDeclinedError {
  override readonly name = 'ZlibBusyError'
}

/**
 * A process-wide bound on zlib work in the thread pool: 10,000 connections sending large
 * messages at once queue here instead of fragmenting memory with 10,000 parallel zlib jobs or
 * starving the pool that file system and DNS calls also need. The queue is bounded too, in jobs
 * and in input bytes: past either bound a job is refused at once with ZlibBusyError.
 */
export class ZlibLimiter {
  private running = 0
  private readonly queue: { start(): void; size: number }[] = []
  private queuedBytes = 0

  constructor(
    readonly concurrency: number,
    readonly maxQueued = DEFAULT_ZLIB_MAX_QUEUED,
    readonly maxQueuedBytes = DEFAULT_ZLIB_MAX_QUEUED_BYTES,
  ) {
    if (!Number.isInteger(concurrency) || concurrency < 1)
      throw new RangeError('ZlibLimiter concurrency must be an integer ≥ 1')
  }

  /** Runs `task` when a slot is free; `size` (its input bytes) counts against the queue bound. */
  run<T>(task: () => Promise<T>, size = 0): Promise<T> {
    if (this.running >= this.concurrency) {
      if (this.queue.length >= this.maxQueued || this.queuedBytes + size > this.maxQueuedBytes) {
        return Promise.reject(
          new ZlibBusyError(`zlib queue full (${this.queue.length} jobs, ${this.queuedBytes} bytes waiting)`),
        )
      }
    }
    return new Promise<T>((resolve, reject) => {
      const start = (): void => {
        this.running++
        task()
          .then(resolve, reject)
          .finally(() => {
            this.running--
            const next = this.queue.shift()
            if (next !== undefined) {
              this.queuedBytes -= next.size
              next.start()
            }
          })
      }
      if (this.running < this.concurrency) start()
      else {
        this.queue.push({ start, size })
        this.queuedBytes += size
      }
    })
  }

  get pending(): number {
    return this.queue.length
  }
}

/**
 * Shared by every connection in the process: as many jobs at once as the machine can run in
 * parallel (libuv's thread pool, UV_THREADPOOL_SIZE, default 4, must be at least as large for
 * all of them to run at once; the rest wait here rather than in libuv's own queue).
 */
export const zlibLimiter = new ZlibLimiter(Math.max(1, availableParallelism()))

/**
 * zlib refuses a 256-byte window for raw deflate and silently uses 512. That is still safe for
 * a peer that asked for 8 bits: zlib never emits a distance beyond windowSize - 262 bytes, so
 * with 512 no match reaches back further than 250 bytes, within the peer's 256-byte window.
 */
function zlibWindowBits(bits: number): number {
  return Math.max(bits, 9)
}

export interface DeflateCodecOptions {
  compress: DeflateDirection
  decompress: DeflateDirection
  threshold: number
  level: number
  memLevel: number
  limiter?: ZlibLimiter
}

export class DeflateCodec implements MessageCompression {
  readonly threshold: number
  private readonly options: DeflateCodecOptions
  private readonly limiter: ZlibLimiter
  private deflater: SyncZlib | undefined
  private inflater: SyncZlib | undefined
  private closed = false
  /** Operations on one persistent zlib stream run one after the other, in call order. */
  private deflaterTail: Promise<unknown> = Promise.resolve()
  private inflaterTail: Promise<unknown> = Promise.resolve()
  /** Thread-pool jobs queued or running on each persistent stream: none, and a call may be synchronous. */
  private deflaterJobs = 0
  private inflaterJobs = 0

  readonly sharedKey: string | undefined

  constructor(options: DeflateCodecOptions) {
    this.options = options
    this.threshold = options.threshold
    const { compress, level, memLevel } = options
    this.sharedKey = compress.noContextTakeover
      ? `deflate:${zlibWindowBits(compress.windowBits)}:${level}:${memLevel}`
      : undefined
    this.limiter = options.limiter ?? zlibLimiter
  }

  compress(data: Uint8Array): Uint8Array | Promise<Uint8Array> {
    const { compress, level, memLevel } = this.options
    const zlibOptions = {
      level,
      memLevel,
      windowBits: zlibWindowBits(compress.windowBits),
      finishFlush: constants.Z_SYNC_FLUSH,
    }
    const sync = data.length <= SYNC_LIMIT && syncZlibAvailable()
    if (compress.noContextTakeover) {
      if (sync) return stripTail(compressShared(this.sharedKey!, zlibOptions, data))
      return this.limiter.run(
        () =>
          new Promise<Uint8Array>((resolve, reject) => {
            deflateRaw(data, zlibOptions, (error, result) =>
              error ? reject(error) : resolve(stripTail(result)),
            )
          }),
        data.length,
      )
    }
    if (sync && this.deflaterJobs === 0 && !this.closed) {
      // zlib emits nothing for a Z_SYNC_FLUSH right after another with no input between
      // ("avoid duplicate consecutive flushes", deflate.c), and an empty payload is no valid
      // DEFLATE data once 00 00 FF FF is appended. The empty message is an empty stored block,
      // 0x00 after the tail is removed (RFC 7692 7.2.3.6), and leaves the context as it was.
      if (data.length === 0) return Uint8Array.of(0x00)
      this.deflater ??= new SyncZlib(createDeflateRaw(zlibOptions))
      // Compression output is bounded by its input (stored blocks at worst), so it always completes.
      return stripTail((this.deflater.process([data], Number.POSITIVE_INFINITY) as SyncDone).output)
    }
    this.deflaterJobs++
    const result = this.deflaterTail.then(() =>
      this.limiter.run(() => {
        if (this.closed) return Promise.reject(new Error('Compressor closed'))
        this.deflater ??= new SyncZlib(createDeflateRaw(zlibOptions))
        return streamThrough(this.deflater.stream, [data], Number.POSITIVE_INFINITY, false).then(stripTail)
      }, data.length),
    )
    // A ZlibBusyError comes before the compressor saw the message: its context is untouched, so
    // the message may go uncompressed (the peer inflates only messages with RSV1 set).
    this.deflaterTail = result.catch(ignore).finally(() => this.deflaterJobs--)
    return result
  }

  decompress(
    pieces: readonly Uint8Array[],
    length: number,
    maxSize: number,
  ): Uint8Array | Promise<Uint8Array> {
    const { decompress } = this.options
    const sync = length <= SYNC_LIMIT && syncZlibAvailable()
    // The synchronous call's output is bounded, not only its input: it stops once the output
    // passes SYNC_INFLATE_OUTPUT_LIMIT (or maxSize, if lower).
    const syncOutputLimit = Math.min(Math.max(1, maxSize), SYNC_INFLATE_OUTPUT_LIMIT)
    if (decompress.noContextTakeover) {
      if (sync) {
        const done = inflateShared(decompress.windowBits, pieces, syncOutputLimit, maxSize)
        if (done !== undefined) return done
        // Past the synchronous bound but maybe within maxSize: started again in the thread pool.
      }
      const input = Buffer.concat([...pieces, TAIL], length + TAIL.length)
      const zlibOptions = {
        windowBits: decompress.windowBits,
        finishFlush: constants.Z_SYNC_FLUSH,
        // Stops inflating once the output passes the limit: a zip bomb never expands in memory.
        maxOutputLength: Math.max(1, maxSize),
      }
      return this.limiter.run(
        () =>
          new Promise<Uint8Array>((resolve, reject) => {
            // One output chunk as large as the limit: the thread pool writes the message straight
            // into the buffer that is delivered. With zlib's 16 KiB chunks the event loop would
            // join them at the end — a copy into fresh memory, tens of milliseconds for 16 MiB.
            const chunkSize = outputBufferSize(zlibOptions.maxOutputLength)
            inflateRaw(input, { ...zlibOptions, chunkSize }, (error, result) => {
              if (error) reject(inflateError(error, maxSize))
              else resolve(compact(result))
            })
          }),
        input.length,
      )
    }
    let first: Uint8Array[] = [...pieces, TAIL]
    let prefix: Buffer | undefined
    if (sync && this.inflaterJobs === 0 && !this.closed) {
      this.inflater ??= new SyncZlib(createInflateRaw({ windowBits: decompress.windowBits }))
      let outcome: SyncDone | SyncStopped
      try {
        outcome = this.inflater.process(first, syncOutputLimit)
      } catch (error) {
        throw inflateError(error, maxSize)
      }
      if (outcome.complete) return outcome.output
      if (outcome.produced.length > maxSize) throw tooLarge(maxSize)
      // Past the synchronous bound only in the zlib chunk that ended the message: it is whole.
      if (outcome.rest.length === 0) return outcome.produced
      // Within maxSize but past the synchronous bound: the same context finishes the message in
      // the thread pool, from where zlib stopped reading.
      first = outcome.rest
      prefix = outcome.produced
    }
    this.inflaterJobs++
    const result = this.inflaterTail.then(() =>
      this.limiter.run(() => {
        if (this.closed) return Promise.reject(new Error('Decompressor closed'))
        this.inflater ??= new SyncZlib(createInflateRaw({ windowBits: decompress.windowBits }))
        return streamThrough(this.inflater.stream, first, maxSize, true, prefix)
      }, length),
    )
    this.inflaterTail = result.catch(ignore).finally(() => this.inflaterJobs--)
    return result
  }

  close(): void {
    this.closed = true
    this.deflater?.stream.destroy()
    this.inflater?.stream.destroy()
    this.deflater = undefined
    this.inflater = undefined
  }
}

/**
 * The process's compressors for messages compressed on their own, one per setting (sharedKey),
 * and its decompressors, one per window size. Used only synchronously, so one of each is enough
 * however many connections there are; each is reset after every message.
 */
const sharedDeflaters = new Map<string, SyncZlib>()
const sharedInflaters = new Map<number, SyncZlib>()

function compressShared(key: string, zlibOptions: ZlibOptions, data: Uint8Array): Buffer {
  let deflater = sharedDeflaters.get(key)
  if (deflater === undefined || deflater.broken) {
    deflater = new SyncZlib(createDeflateRaw(zlibOptions))
    sharedDeflaters.set(key, deflater)
  }
  try {
    return (deflater.process([data], Number.POSITIVE_INFINITY) as SyncDone).output
  } finally {
    // RFC 7692 7.1.1.1: the next message must not refer to this one. deflateReset empties the
    // window's hash table, as a new context would have it.
    if (!deflater.broken) deflater.reset()
  }
}

/**
 * Inflates one message on the shared decompressor for its window size: the message, or
 * undefined when its output passed `syncOutputLimit` while still within `maxSize` (the caller
 * starts it again in the thread pool). Throws MessageTooLarge or InvalidCompressedData.
 */
function inflateShared(
  windowBits: number,
  pieces: readonly Uint8Array[],
  syncOutputLimit: number,
  maxSize: number,
): Buffer | undefined {
  let inflater = sharedInflaters.get(windowBits)
  if (inflater === undefined || inflater.broken) {
    inflater = new SyncZlib(createInflateRaw({ windowBits }))
    sharedInflaters.set(windowBits, inflater)
  }
  try {
    const outcome = inflater.process([...pieces, TAIL], syncOutputLimit)
    if (outcome.complete) return outcome.output
    if (outcome.produced.length > maxSize) throw tooLarge(maxSize)
    // Past the synchronous bound only in the zlib chunk that ended the message: it is whole.
    return outcome.rest.length === 0 ? outcome.produced : undefined
  } catch (error) {
    throw inflateError(error, maxSize)
  } finally {
    if (!inflater.broken) inflater.reset()
  }
}

/**
 * Writes pieces through a persistent zlib stream and flushes with Z_SYNC_FLUSH, collecting the
 * output after `prefix` (what a synchronous call produced before handing over); with `limit`,
 * rejects with MessageTooLarge as soon as the output passes it and
 * destroys the stream (the connection is failing anyway).
 */
function streamThrough(
  stream: DeflateRaw | InflateRaw,
  pieces: readonly Uint8Array[],
  limit: number,
  inflating: boolean,
  prefix?: Buffer,
): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const output = new OutputAssembler(inflating ? outputBufferSize(limit) : 0)
    let total = 0
    if (prefix !== undefined) {
      output.add(prefix)
      total = prefix.length
    }
    let settled = false
    const cleanup = (): void => {
      stream.removeListener('data', onData)
      stream.removeListener('error', onError)
    }
    const onData = (chunk: Buffer): void => {
      total += chunk.length
      if (total > limit) {
        settled = true
        cleanup()
        stream.destroy()
        reject(tooLarge(limit))
        return
      }
      output.add(chunk)
    }
    const onError = (error: Error): void => {
      if (settled) return
      settled = true
      cleanup()
      reject(inflating ? inflateError(error, limit) : error)
    }
    stream.on('data', onData)
    stream.on('error', onError)
    for (const piece of pieces) stream.write(piece)
    stream.flush(constants.Z_SYNC_FLUSH, () => {
      if (settled) return
      if (stream.destroyed) {
        // The codec was closed mid-job: what came out is partial, and must not pass for a message.
        settled = true
        cleanup()
        reject(new Error('Compression stream closed'))
        return
      }
      settled = true
      cleanup()
      resolve(output.finish())
    })
  })
}

/**
 * The buffer allocated up front for a message inflated off the event loop: as large as the
 * limit (capped), since the message's size is not known before it is inflated. Only the pages
 * zlib or the assembler write become resident; the rest is address space.
 */
function outputBufferSize(limit: number): number {
  return Math.max(MIN_CHUNK_SIZE, Math.min(limit, MAX_OUTPUT_BUFFER))
}

/** A message much smaller than the buffer holding it is copied out, so the buffer can go. */
function compact(message: Buffer): Buffer {
  const wasteful = message.buffer.byteLength > 2 * message.length
  return wasteful && message.length <= SYNC_INFLATE_OUTPUT_LIMIT ? Buffer.from(message) : message
}

/**
 * Joins a stream's output chunks into one message. Up to SYNC_INFLATE_OUTPUT_LIMIT they are
 * joined at the end (a copy that small is cheap). Past it, with a `capacity` (inflating), they
 * are copied as they arrive into one buffer of that size: a 16 KiB copy per thread-pool round
 * trip, rather than megabytes joined on the event loop at the end (tens of milliseconds for
 * 16 MiB into fresh memory). Past the capacity, or without one, they are joined at the end.
 */
class OutputAssembler {
  private readonly capacity: number
  private pieces: Buffer[] = []
  private length = 0
  private joined: Buffer | undefined
  private overflow: Buffer[] | undefined

  constructor(capacity: number) {
    this.capacity = capacity
  }

  add(chunk: Buffer): void {
    if (this.overflow !== undefined) {
      this.overflow.push(chunk)
      return
    }
    const offset = this.length
    this.length += chunk.length
    if (this.joined !== undefined) {
      if (this.length <= this.capacity) this.joined.set(chunk, offset)
      else {
        this.overflow = [this.joined.subarray(0, offset), chunk]
        this.joined = undefined
      }
      return
    }
    this.pieces.push(chunk)
    if (this.capacity === 0 || this.length <= SYNC_INFLATE_OUTPUT_LIMIT) return
    if (this.length > this.capacity) {
      this.overflow = this.pieces
      return
    }
    const joined = Buffer.allocUnsafe(this.capacity)
    let at = 0
    for (const piece of this.pieces) {
      joined.set(piece, at)
      at += piece.length
    }
    this.joined = joined
    this.pieces = []
  }

  finish(): Buffer {
    if (this.overflow !== undefined) return Buffer.concat(this.overflow)
    if (this.joined !== undefined) return this.joined.subarray(0, this.length)
    if (this.pieces.length === 1) return this.pieces[0]!
    return Buffer.concat(this.pieces, this.length)
  }
}

function ignore(): void {}

function isOutputTooLarge(error: unknown): boolean {
  return (error as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE'
}

/** RFC 7692 7.2.1: remove the 00 00 FF FF that Z_SYNC_FLUSH ends with. */
function stripTail(output: Buffer): Buffer {
  const n = output.length
  if (
    n >= 4 &&
    output[n - 4] === 0x00 &&
    output[n - 3] === 0x00 &&
    output[n - 2] === 0xff &&
    output[n - 1] === 0xff
  ) {
    return output.subarray(0, n - 4)
  }
  return output
}

function tooLarge(maxSize: number): ProtocolError {
  return new ProtocolError(
    ProtocolErrorCode.MessageTooLarge,
    `Decompressed message exceeds the limit of ${maxSize} bytes`,
  )
}

function inflateError(error: unknown, maxSize: number): ProtocolError | ZlibBusyError {
  if (error instanceof ProtocolError || error instanceof ZlibBusyError) return error
  if (isOutputTooLarge(error)) return tooLarge(maxSize)
  return new ProtocolError(ProtocolErrorCode.InvalidCompressedData, 'Invalid compressed data')
}

/**
 * The codec for negotiated parameters, as seen from one side, with the user's options or their
 * defaults. Lives here rather than beside directionsFor because the protocol layer has no zlib.
 */
export function codecFor(
  params: DeflateParams,
  side: 'client' | 'server',
  options: PerMessageDeflateOptions,
): DeflateCodec {
  const { compress, decompress } = directionsFor(params, side)
  return new DeflateCodec({
    compress,
    decompress,
    threshold: options.threshold ?? DEFAULT_DEFLATE_THRESHOLD,
    level: options.level ?? DEFAULT_DEFLATE_LEVEL,
    memLevel: options.memLevel ?? DEFAULT_DEFLATE_MEM_LEVEL,
  })
}
