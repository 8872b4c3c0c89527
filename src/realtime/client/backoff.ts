/**
 * Reconnection delays: exponential backoff with full jitter — a delay drawn uniformly between 0
 * and min(maxDelay, minDelay × 2^attempt). The jitter spreads a crowd of clients that lost the
 * same server at the same instant, so that they do not all come back in the same millisecond
 * (the "thundering herd" that full jitter was chosen to avoid).
 */

export interface BackoffOptions {
  /** The ceiling of the first retry's delay, ms. Default 500. */
  minDelay?: number
  /** The largest delay, ms. Default 20000. */
  maxDelay?: number
  /**
   * A connection that stayed up this long (ms) counts as stable: the next disconnection starts
   * again from the first attempt. Default 5000.
   */
  stableAfter?: number
  /** Uniform random numbers in [0, 1); injectable for tests. Default Math.random (no secret here). */
  random?: () => number
}

export interface ResolvedBackoff {
  minDelay: number
  maxDelay: number
  stableAfter: number
  random: () => number
}

export const DEFAULT_MIN_DELAY = 500
export const DEFAULT_MAX_DELAY = 20_000
export const DEFAULT_STABLE_AFTER = 5000

export function resolveBackoff(options: BackoffOptions = {}): ResolvedBackoff {
  const minDelay = options.minDelay ?? DEFAULT_MIN_DELAY
  const maxDelay = options.maxDelay ?? DEFAULT_MAX_DELAY
  const stableAfter = options.stableAfter ?? DEFAULT_STABLE_AFTER
  if (!(minDelay >= 0)) throw new RangeError(`reconnect.minDelay must be >= 0 ms, got ${minDelay}`)
  if (!(maxDelay >= minDelay))
    throw new RangeError(`reconnect.maxDelay must be >= minDelay (${minDelay} ms), got ${maxDelay}`)
  if (!(stableAfter >= 0)) throw new RangeError(`reconnect.stableAfter must be >= 0 ms, got ${stableAfter}`)
  return { minDelay, maxDelay, stableAfter, random: options.random ?? Math.random }
}

/** The ceiling of the delay before retry number `attempt` (0 for the first retry). */
export function backoffCeiling(attempt: number, options: ResolvedBackoff): number {
  // 2^attempt overflows to Infinity past ~1024 attempts; min() keeps the result finite.
  return Math.min(options.maxDelay, options.minDelay * 2 ** Math.min(attempt, 1023))
}

/** A full-jitter delay before retry number `attempt`: uniform in [0, ceiling). */
export function backoffDelay(attempt: number, options: ResolvedBackoff): number {
  const unit = options.random()
  // Clamp a misbehaving injected source into [0, 1) rather than produce negative or huge delays.
  const clamped = unit >= 0 && unit < 1 ? unit : 0
  return Math.floor(clamped * backoffCeiling(attempt, options))
}
