/**
 * A message framed once for many recipients: `server.publish` builds one of these and writes the
 * same bytes to every subscriber. Sockets with permessage-deflate and no server context takeover
 * get a compressed frame, built once per compression setting (window bits, level) — so a
 * broadcast to 10,000 compressed sockets is compressed once, not 10,000 times.
 *
 * Sockets whose compressor keeps context between messages cannot share bytes: their output
 * depends on everything they sent before. Those compress the message themselves.
 */
import { Buffer } from 'node:buffer'
import { CompressionDeclinedError, type MessageCompression } from '../protocol/extensions/compression.js'
import { encodeFrameHeader } from '../protocol/frame-writer.js'
import { Opcode } from '../protocol/opcode.js'

/** A complete server frame: header and payload (payload undefined when merged or empty). */
export interface FrameBytes {
  header: Uint8Array
  payload: Uint8Array | undefined
}

/** Small frames are merged into one buffer: one write per subscriber instead of two. */
const MERGE_LIMIT = 16 * 1024

const RSV1 = 0x40

export class PreparedMessage {
  readonly data: Uint8Array
  readonly isBinary: boolean
  /** true: always compress; false: never; undefined: per the socket's threshold. */
  readonly compress: boolean | undefined
  private plain: FrameBytes | undefined
  private readonly compressed = new Map<string, FrameBytes | Promise<FrameBytes>>()

  constructor(data: Uint8Array, isBinary: boolean, compress?: boolean) {
    this.data = data
    this.isBinary = isBinary
    this.compress = compress
  }

  /** The uncompressed frame, built on first use. */
  plainFrame(): FrameBytes {
    this.plain ??= buildFrame(this.opcode, this.data, 0)
    return this.plain
  }

  /** Whether a socket with this compression should get a compressed frame. */
  wantsCompression(compression: MessageCompression): boolean {
    return this.compress ?? this.data.length >= compression.threshold
  }

  /**
   * The compressed frame for sockets sharing `compression.sharedKey`, built once per key;
   * a promise while a large message is compressed off the event loop.
   */
  compressedFrame(compression: MessageCompression, key: string): FrameBytes | Promise<FrameBytes> {
    let frame = this.compressed.get(key)
    if (frame === undefined) {
      const output = compression.compress(this.data)
      frame =
        output instanceof Promise
          ? output.then(
              (bytes) => this.frameFor(bytes),
              // The codec refused the work (its queue is full): the message goes uncompressed.
              (error: unknown) => {
                if (error instanceof CompressionDeclinedError) return this.plainFrame()
                throw error
              },
            )
          : this.frameFor(output)
      this.compressed.set(key, frame)
    }
    return frame
  }

  /** The compressed frame, or the plain one when compression did not make the data smaller. */
  private frameFor(compressed: Uint8Array): FrameBytes {
    return compressed.length < this.data.length
      ? buildFrame(this.opcode, compressed, RSV1)
      : this.plainFrame()
  }

  private get opcode(): number {
    return this.isBinary ? Opcode.Binary : Opcode.Text
  }
}

function buildFrame(opcode: number, payload: Uint8Array, rsv: number): FrameBytes {
  const header = encodeFrameHeader(opcode, payload.length, { rsv })
  if (payload.length === 0) return { header, payload: undefined }
  if (payload.length > MERGE_LIMIT) return { header, payload }
  const merged = Buffer.allocUnsafe(header.length + payload.length)
  merged.set(header, 0)
  merged.set(payload, header.length)
  return { header: merged, payload: undefined }
}
