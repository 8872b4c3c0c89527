/**
 * Every buffer a peer can grow has a limit here, on by default. The defaults are safe for a
 * public server; raise them per server or per client when you know your peers.
 */
export interface Limits {
  /** Largest message, in bytes, after reassembly of its fragments. Checked on the declared frame
   * length, before a byte of payload is buffered. Default 16 MiB. */
  maxMessageSize: number
  /** Largest single frame payload, in bytes. Default: `maxMessageSize`. */
  maxFrameSize: number
  /** Most frames in one fragmented message; bounds the bookkeeping a flood of tiny fragments can
   * cause. Default 4096 (a 16 MiB message in 4 KiB frames). */
  maxFragments: number
  /** Largest HTTP head (start line + headers) of the opening handshake, in bytes. Default 16 KiB,
   * like Node's own HTTP parser. */
  maxHeaderBytes: number
  /** Most header fields in the opening handshake. Default 100. */
  maxHeaderCount: number
}

export const DEFAULT_LIMITS: Readonly<Limits> = Object.freeze({
  maxMessageSize: 16 * 1024 * 1024,
  maxFrameSize: 16 * 1024 * 1024,
  maxFragments: 4096,
  maxHeaderBytes: 16 * 1024,
  maxHeaderCount: 100,
})

/** Limits objects made by resolveLimits: passed again, they are reused as they are. */
const resolved = new WeakSet<Limits>()

/**
 * Fills in defaults and checks that every limit is a positive integer. The result is frozen and
 * may be shared by any number of connections: a server resolves its limits once.
 */
export function resolveLimits(partial: Partial<Limits> = {}): Limits {
  if (resolved.has(partial as Limits)) return partial as Limits
  const maxMessageSize = partial.maxMessageSize ?? DEFAULT_LIMITS.maxMessageSize
  const limits: Limits = {
    maxMessageSize,
    maxFrameSize: partial.maxFrameSize ?? maxMessageSize,
    maxFragments: partial.maxFragments ?? DEFAULT_LIMITS.maxFragments,
    maxHeaderBytes: partial.maxHeaderBytes ?? DEFAULT_LIMITS.maxHeaderBytes,
    maxHeaderCount: partial.maxHeaderCount ?? DEFAULT_LIMITS.maxHeaderCount,
  }
  for (const [name, value] of Object.entries(limits)) {
    if (!Number.isSafeInteger(value) || value < 1) {
      throw new RangeError(`Limit ${name} must be a positive integer, got ${value}`)
    }
  }
  Object.freeze(limits)
  resolved.add(limits)
  return limits
}
