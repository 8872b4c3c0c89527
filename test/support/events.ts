/**
 * Events for every suite, each wait bounded: the next event of an EventTarget or EventEmitter, and
 * a queue that handlers fill and the test reads in order.
 */
import type { EventEmitter } from 'node:events'
import { withTimeout } from './timing.js'

function isEventTarget(target: EventTarget | EventEmitter): target is EventTarget {
  return typeof (target as EventTarget).addEventListener === 'function'
}

/**
 * The next `event` from an EventTarget (resolves with the Event) or an EventEmitter (with its first
 * argument); rejects after `ms`, with the listener removed.
 */
export function once<T = unknown>(target: EventTarget | EventEmitter, event: string, ms = 5000): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let off = (): void => {}
    const timer = setTimeout(() => {
      off()
      reject(new Error(`timed out after ${ms} ms waiting for '${event}'`))
    }, ms)
    const settle = (value: unknown): void => {
      clearTimeout(timer)
      off()
      resolve(value as T)
    }
    if (isEventTarget(target)) {
      const listener = (e: Event): void => settle(e)
      target.addEventListener(event, listener)
      off = () => target.removeEventListener(event, listener)
    } else {
      const listener = (...args: unknown[]): void => settle(args[0])
      target.on(event, listener)
      off = () => target.removeListener(event, listener)
    }
  })
}

/** Every argument of the next `event` from an EventEmitter, bounded. */
export function nextEvent<T extends unknown[] = unknown[]>(
  emitter: EventEmitter,
  event: string,
  ms = 5000,
): Promise<T> {
  return withTimeout(
    new Promise<T>((resolve) => emitter.once(event, (...args: unknown[]) => resolve(args as T))),
    ms,
    `"${event}"`,
  )
}

/** The next `type` event of an EventTarget (Rally's WHATWG WebSocket), bounded. */
export function nextDomEvent<E extends Event = Event>(
  target: EventTarget,
  type: string,
  ms = 5000,
): Promise<E> {
  return withTimeout(
    new Promise<E>((resolve) =>
      target.addEventListener(type, (event) => resolve(event as E), { once: true }),
    ),
    ms,
    `"${type}" event`,
  )
}

/** Values pushed by callbacks (server handlers, socket events), read in order by the test. */
export class EventQueue<T> {
  private readonly items: T[] = []
  private readonly waiters: { resolve: (value: T) => void; reject: (error: Error) => void }[] = []
  private failure: Error | undefined
  /** Everything ever pushed, in order. */
  readonly all: T[] = []

  push(value: T): void {
    this.all.push(value)
    const waiter = this.waiters.shift()
    if (waiter !== undefined) waiter.resolve(value)
    else this.items.push(value)
  }

  /** No more values will come: pending and later `next()` calls reject once the queued ones are read. */
  fail(error: Error): void {
    this.failure ??= error
    for (const waiter of this.waiters.splice(0)) waiter.reject(error)
  }

  /** How many values are queued and not yet read. */
  get size(): number {
    return this.items.length
  }

  /** The next value; rejects after `ms` naming `what`. */
  next(ms = 5000, what = 'a queued event'): Promise<T> {
    if (this.items.length > 0) return Promise.resolve(this.items.shift() as T)
    if (this.failure !== undefined)
      return Promise.reject(new Error(`${this.failure.message} (waiting for ${what})`))
    return new Promise<T>((resolve, reject) => {
      const waiter = {
        resolve: (value: T): void => {
          clearTimeout(timer)
          resolve(value)
        },
        reject: (error: Error): void => {
          clearTimeout(timer)
          reject(new Error(`${error.message} (waiting for ${what})`))
        },
      }
      const timer = setTimeout(() => {
        const index = this.waiters.indexOf(waiter)
        if (index !== -1) this.waiters.splice(index, 1)
        reject(new Error(`timed out after ${ms} ms waiting for ${what}`))
      }, ms)
      this.waiters.push(waiter)
    })
  }
}
