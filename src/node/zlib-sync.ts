/**
 * zlib driven synchronously, on a context that outlives one call: what permessage-deflate needs
 * for small messages (RFC 7692 7.2: a DEFLATE stream flushed at every message boundary).
 *
 * Why this is not a documented API: Node offers two ways into zlib — one-shot functions
 * (`deflateRawSync`), which build a new zlib stream object and context per call (deflateInit
 * clears a 64 KiB hash table, and the stream object is a full Transform: about 25 µs for 1 KiB,
 * measured in bench/profile-notes.md), and streams, whose every write is a round trip through
 * libuv's thread pool. The request for a synchronous call on a kept context was declined
 * (nodejs/node#35295, #47709). The one-shot functions are themselves built on a stream's handle:
 * `processChunkSync` in Node's lib/zlib.js (unchanged from Node 12 to 24) calls
 * `handle.writeSync(flush, in, inOff, inLen, out, outOff, outLen)` and reads what is left of
 * the output and input space from the stream's `_writeState` — then closes the handle. This
 * module makes the same two calls and keeps the handle. It checks for them at first use
 * (`syncZlibAvailable`); where they are missing the codec sends every message through the
 * thread pool instead, slower but the same bytes.
 *
 * Errors: zlib reports corrupt input through the handle's `onerror`, which destroys the stream
 * synchronously (its `error` event comes a tick later, to a listener that ignores it here). A
 * destroyed stream is `broken` and must not be used again.
 */
import { Buffer } from 'node:buffer'
import { constants, createDeflateRaw, type DeflateRaw, type InflateRaw } from 'node:zlib'

/** The two calls of a zlib stream's native handle that processChunkSync uses. */
interface ZlibHandle {
  writeSync(
    flush: number,
    input: Uint8Array,
    inOffset: number,
    inLength: number,
    output: Uint8Array,
    outOffset: number,
    outLength: number,
  ): void
  reset(): void
}

interface ZlibInternals {
  _handle?: ZlibHandle | null
  /** [output space left, input bytes left] after the last write. */
  _writeState?: Uint32Array
}

let available: boolean | undefined

/** Whether this Node's zlib streams expose the handle calls used here (checked once). */
export function syncZlibAvailable(): boolean {
  if (available === undefined) {
    const probe = createDeflateRaw() as unknown as ZlibInternals & DeflateRaw
    available =
      typeof probe._handle?.writeSync === 'function' &&
      typeof probe._handle.reset === 'function' &&
      probe._writeState instanceof Uint32Array
    probe.destroy()
  }
  return available
}

/**
 * The output space given to zlib per native call: zlib's default chunk (Z_DEFAULT_CHUNK), as in
 * Node's one-shot functions, so that a message that is both too large and corrupt fails the same
 * way as there (whichever zlib meets first within a chunk).
 */
export const SYNC_CHUNK = 16 * 1024

/**
 * Output goes here first and is copied out at the exact size: one allocation per message
 * instead of one per chunk. Shared by every SyncZlib, which is safe because a synchronous call
 * finishes before any other JavaScript runs. Allocated on first use, so that a process without
 * permessage-deflate does not hold it.
 */
let scratch: Buffer | undefined

/** The whole output of a completed call. */
export interface SyncDone {
  complete: true
  output: Buffer
}

/**
 * The call stopped because its output passed the limit: what came out so far, and the input
 * zlib has not read yet (the caller may hand both to the thread pool to finish the message).
 */
export interface SyncStopped {
  complete: false
  produced: Buffer
  rest: Uint8Array[]
}

export class SyncZlib {
  readonly stream: DeflateRaw | InflateRaw
  private readonly internals: ZlibInternals

  constructor(stream: DeflateRaw | InflateRaw) {
    this.stream = stream
    this.internals = stream as unknown as ZlibInternals
    // The error event of a failed call comes a tick later; the call has thrown already.
    stream.on('error', ignore)
  }

  /** The stream was destroyed (a zlib error, or closed): it must not be used again. */
  get broken(): boolean {
    return this.stream.destroyed
  }

  /** Back to a fresh context, as after creation (deflateReset/inflateReset). */
  reset(): void {
    this.internals._handle?.reset()
  }

  /**
   * Feeds `pieces` through zlib, with Z_SYNC_FLUSH after the last one, and collects the output.
   * Stops once the output passes `outputLimit` bytes, at the end of the zlib chunk (SYNC_CHUNK)
   * in which it did: one synchronous `process` produces at most `outputLimit` + SYNC_CHUNK
   * bytes, however much the input would inflate to. Throws zlib's error (the stream is then
   * broken).
   */
  process(pieces: readonly Uint8Array[], outputLimit: number): SyncDone | SyncStopped {
    const handle = this.internals._handle
    const state = this.internals._writeState
    if (handle == null || state === undefined) throw new Error('zlib stream closed')
    scratch ??= Buffer.allocUnsafeSlow(SYNC_CHUNK)
    let chunks: Buffer[] | undefined
    let used = 0
    let total = 0
    for (let p = 0; p < pieces.length; p++) {
      const piece = pieces[p]!
      const flush = p === pieces.length - 1 ? constants.Z_SYNC_FLUSH : constants.Z_NO_FLUSH
      let inOffset = 0
      let inLength = piece.length
      for (;;) {
        const space = scratch.length - used
        handle.writeSync(flush, piece, inOffset, inLength, scratch, used, space)
        if (this.stream.destroyed) throw this.stream.errored ?? new Error('zlib stream closed')
        const spaceLeft = state[0]!
        const inputLeft = state[1]!
        used += space - spaceLeft
        total += space - spaceLeft
        inOffset += inLength - inputLeft
        inLength = inputLeft
        // Output space left over: zlib has read all the input it will (and, on the last
        // piece, flushed everything). None left: it may have more to give.
        if (spaceLeft !== 0) break
        // The limit is checked where a chunk fills and at the end, as if the pieces were one
        // buffer (Node's one-shot functions check after each chunk): at a piece boundary
        // inside a chunk, zlib goes on, and a corrupt piece after it fails as corrupt.
        if (total > outputLimit) {
          const rest = [piece.subarray(inOffset), ...pieces.slice(p + 1)]
          return { complete: false, produced: join(scratch, chunks, used, total), rest }
        }
        chunks ??= []
        chunks.push(Buffer.from(scratch))
        used = 0
      }
    }
    const output = join(scratch, chunks, used, total)
    return total > outputLimit ? { complete: false, produced: output, rest: [] } : { complete: true, output }
  }
}

/** The chunks copied out so far plus what is in the scratch buffer, in one buffer. */
function join(scratch: Buffer, chunks: Buffer[] | undefined, used: number, total: number): Buffer {
  const output = Buffer.allocUnsafe(total)
  let at = 0
  if (chunks !== undefined) {
    for (const chunk of chunks) {
      output.set(chunk, at)
      at += chunk.length
    }
  }
  scratch.copy(output, at, 0, used)
  return output
}

function ignore(): void {}
