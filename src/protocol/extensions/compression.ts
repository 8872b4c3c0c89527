/**
 * The hook through which a negotiated compression extension (permessage-deflate) plugs into the
 * sans-I/O connection. The core knows RSV1 and message boundaries; the codec — zlib, in the Node
 * layer — knows bytes. Either method may answer synchronously (small messages, done on the spot)
 * or with a promise (large ones, done off the event loop); the connection keeps messages in order
 * either way.
 */
export interface MessageCompression {
  /** Messages shorter than this many bytes are sent uncompressed. */
  readonly threshold: number
  /**
   * Set when this codec's output depends only on the message (no context kept between
   * messages): codecs with the same key produce the same bytes, so a broadcast can compress
   * once for all of them. Undefined with context takeover.
   */
  readonly sharedKey: string | undefined
  /**
   * Compresses one message; returns the DEFLATE output without its trailing 00 00 FF FF
   * (RFC 7692 7.2.1). A promise may reject with a CompressionDeclinedError: the codec refused
   * the work (too much queued) without touching its state, and the message goes uncompressed,
   * as RFC 7692 allows.
   */
  compress(data: Uint8Array): Uint8Array | Promise<Uint8Array>
  /**
   * Decompresses one message from its payload pieces. Throws (or rejects with) a ProtocolError:
   * MessageTooLarge as soon as the output would pass `maxSize`, InvalidCompressedData on corrupt
   * input.
   */
  decompress(pieces: readonly Uint8Array[], length: number, maxSize: number): Uint8Array | Promise<Uint8Array>
  /** Frees what the codec holds (zlib streams). */
  close(): void
}

/**
 * A codec refused a job without doing it (its process-wide queue is full). Compressing: the
 * message is sent uncompressed. Decompressing: the connection fails with 1013 (Try Again Later).
 */
export class CompressionDeclinedError extends Error {
  override readonly name: string = 'CompressionDeclinedError'
}
