/**
 * permessage-deflate on zlib (RFC 7692 7.2), with memory and CPU bounded by default.
 *
 * How each direction is done:
 * - Without context takeover (the server's default in both directions), a message is compressed
 *   or decompressed on its own. Up to SYNC_LIMIT bytes that is done synchronously with zlib's
 *   one-shot functions: about 10 µs for 1 KiB, no thread-pool round trip, no per-connection
 *   zlib state at all. Larger messages go to the thread pool through the process-wide limiter.
 * - With context takeover, a zlib stream is kept per connection (created on first use) and every
 *   message goes through the thread pool, through the limiter.
 *
 * Memory per connection with context takeover, from zlib's documentation:
 *   compressor   (1 << (windowBits + 2)) + (1 << (memLevel + 9))  — 256 KiB at 15/8, 64 KiB at 13/7
 *   decompressor (1 << windowBits) + about 7 KiB                   — 39 KiB at 15
 * Without context takeover: nothing between messages.
 *
 * Zip bombs: decompression stops as soon as the output passes the message size limit, so a
 * message never expands in memory beyond `maxPayload` plus one zlib chunk (16 KiB).
 */
import { Buffer } from 'node:buffer'
import {
  constants,
  createDeflateRaw,
  createInflateRaw,
  type DeflateRaw,
  deflateRaw,
  deflateRawSync,
  type InflateRaw,
  inflateRaw,
  inflateRawSync,
} from 'node:zlib'
import type { MessageCompression } from '../protocol/extensions/compression.js'
import type { DeflateDirection } from '../protocol/extensions/permessage-deflate.js'
import { ProtocolError, ProtocolErrorCode } from '../protocol/index.js'

/** Messages up to this size are (de)compressed synchronously on the event loop. */
export const SYNC_LIMIT = 64 * 1024

/** RFC 7692 7.2.2: the receiver appends 00 00 FF FF before inflating. */
const TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff])

/**
 * A process-wide bound on zlib work in the thread pool: 10,000 connections sending large
 * messages at once queue here instead of fragmenting memory with 10,000 parallel zlib jobs or
 * starving the pool that file system and DNS calls also need.
 */
export class ZlibLimiter {
  private running = 0
  private readonly queue: (() => void)[] = []

  constructor(readonly concurrency: number) {}

  run<T>(task: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const start = (): void => {
        this.running++
        task()
          .then(resolve, reject)
          .finally(() => {
            this.running--
            const next = this.queue.shift()
            if (next !== undefined) next()
          })
      }
      if (this.running < this.concurrency) start()
      else this.queue.push(start)
    })
  }

  get pending(): number {
    return this.queue.length
  }
}

/** Shared by every connection in the process. Two jobs at once: the machine has few cores. */
export const zlibLimiter = new ZlibLimiter(2)

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
  private deflater: DeflateRaw | undefined
  private inflater: InflateRaw | undefined
  private closed = false
  /** Operations on one persistent zlib stream run one after the other, in call order. */
  private deflaterTail: Promise<unknown> = Promise.resolve()
  private inflaterTail: Promise<unknown> = Promise.resolve()

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
    if (compress.noContextTakeover) {
      if (data.length <= SYNC_LIMIT) return stripTail(deflateRawSync(data, zlibOptions))
      return this.limiter.run(
        () =>
          new Promise<Uint8Array>((resolve, reject) => {
            deflateRaw(data, zlibOptions, (error, result) =>
              error ? reject(error) : resolve(stripTail(result)),
            )
          }),
      )
    }
    const result = this.deflaterTail.then(() =>
      this.limiter.run(() => {
        if (this.closed) return Promise.reject(new Error('Compressor closed'))
        this.deflater ??= createDeflateRaw(zlibOptions)
        return streamThrough(this.deflater, [data], Number.POSITIVE_INFINITY, false).then(stripTail)
      }),
    )
    this.deflaterTail = result.catch(ignore)
    return result
  }

  decompress(
    pieces: readonly Uint8Array[],
    length: number,
    maxSize: number,
  ): Uint8Array | Promise<Uint8Array> {
    const { decompress } = this.options
    if (decompress.noContextTakeover) {
      const input = Buffer.concat([...pieces, TAIL], length + TAIL.length)
      const zlibOptions = {
        windowBits: decompress.windowBits,
        finishFlush: constants.Z_SYNC_FLUSH,
        // Stops inflating once the output passes the limit: a zip bomb never expands in memory.
        maxOutputLength: Math.max(1, maxSize),
      }
      if (length <= SYNC_LIMIT) {
        try {
          return inflateRawSync(input, zlibOptions)
        } catch (error) {
          throw inflateError(error, maxSize)
        }
      }
      return this.limiter.run(
        () =>
          new Promise<Uint8Array>((resolve, reject) => {
            inflateRaw(input, zlibOptions, (error, result) =>
              error ? reject(inflateError(error, maxSize)) : resolve(result),
            )
          }),
      )
    }
    const result = this.inflaterTail.then(() =>
      this.limiter.run(() => {
        if (this.closed) return Promise.reject(new Error('Decompressor closed'))
        this.inflater ??= createInflateRaw({ windowBits: decompress.windowBits })
        return streamThrough(this.inflater, [...pieces, TAIL], maxSize, true)
      }),
    )
    this.inflaterTail = result.catch(ignore)
    return result
  }

  close(): void {
    this.closed = true
    this.deflater?.destroy()
    this.inflater?.destroy()
    this.deflater = undefined
    this.inflater = undefined
  }
}

/**
 * Writes pieces through a persistent zlib stream and flushes with Z_SYNC_FLUSH, collecting the
 * output; with `limit`, rejects with MessageTooLarge as soon as the output passes it and
 * destroys the stream (the connection is failing anyway).
 */
function streamThrough(
  stream: DeflateRaw | InflateRaw,
  pieces: readonly Uint8Array[],
  limit: number,
  inflating: boolean,
): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let total = 0
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
        reject(
          new ProtocolError(
            ProtocolErrorCode.MessageTooLarge,
            `Decompressed message exceeds the limit of ${limit} bytes`,
          ),
        )
        return
      }
      chunks.push(chunk)
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
      resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, total))
    })
  })
}

function ignore(): void {}

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

function inflateError(error: unknown, maxSize: number): ProtocolError {
  if (error instanceof ProtocolError) return error
  if ((error as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') {
    return new ProtocolError(
      ProtocolErrorCode.MessageTooLarge,
      `Decompressed message exceeds the limit of ${maxSize} bytes`,
    )
  }
  return new ProtocolError(ProtocolErrorCode.InvalidCompressedData, 'Invalid compressed data')
}
