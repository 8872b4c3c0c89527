/**
 * Bounded waiting for every suite: a missing event fails its test with a message naming what was
 * awaited instead of hanging the run. The suites' helpers.ts files re-export these under the names
 * each suite already used (`within`, `withTimeout`, `until`, `waitFor`, `waitUntil`).
 */

/** `promise`, or a rejection naming `what` if it has not settled within `ms`. */
export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

/**
 * Polls `condition` until it holds; rejects after `ms` naming `what` (and `describe()`, the state
 * that explains the failure). Use it only for state with no event of its own (a counter, a size).
 */
export async function waitUntil(
  condition: () => boolean,
  ms: number,
  what: string | (() => string),
  describe?: () => unknown,
): Promise<void> {
  const deadline = Date.now() + ms
  while (!condition()) {
    if (Date.now() > deadline) {
      const label = typeof what === 'string' ? what : what()
      const detail = describe === undefined ? '' : ` (${JSON.stringify(describe())})`
      throw new Error(`timed out after ${ms} ms waiting for ${label}${detail}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

/**
 * Resolves with `true` if `promise` settles within `ms`, `false` otherwise. For an event that must
 * NOT come: prefer waiting for the event proving the other path ran; where there is none, name the
 * wait as what it is (`const cameEarly = await settlesWithin(...)`) and say why the bound suffices.
 */
export function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined
  const expired = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms)
  })
  const settled = promise.then(
    () => true as const,
    () => true as const,
  )
  return Promise.race([settled, expired]).finally(() => clearTimeout(timer))
}

/** One event-loop turn (every callback already queued runs first). */
export function turn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve))
}

/**
 * Waits `ms`. Only for pacing: a handler that takes time, a peer that writes slowly. Never to show
 * that something did not happen (wait for the event of the other path, or use `settlesWithin`).
 */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
