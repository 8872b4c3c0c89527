/**
 * A tiny typed event emitter, the same in browsers and Node (no `node:events`): `on` returns the
 * function that removes the listener, and a throwing listener neither stops the others nor breaks
 * the client's state machine — its error is reported asynchronously, as EventTarget does.
 */

export type Listener<Value> = (value: Value) => void

export class Emitter<Events extends object> {
  private readonly listeners = new Map<keyof Events, Set<Listener<never>>>()

  /** Adds a listener; returns the function that removes it. */
  on<Name extends keyof Events>(event: Name, listener: Listener<Events[Name]>): () => void {
    let set = this.listeners.get(event)
    if (set === undefined) this.listeners.set(event, (set = new Set()))
    set.add(listener as Listener<never>)
    return () => this.off(event, listener)
  }

  /** Adds a listener called at most once; returns the function that removes it. */
  once<Name extends keyof Events>(event: Name, listener: Listener<Events[Name]>): () => void {
    const off = this.on(event, (value) => {
      off()
      listener(value)
    })
    return off
  }

  off<Name extends keyof Events>(event: Name, listener: Listener<Events[Name]>): void {
    this.listeners.get(event)?.delete(listener as Listener<never>)
  }

  /** How many listeners an event has (for tests and diagnostics). */
  listenerCount(event: keyof Events): number {
    return this.listeners.get(event)?.size ?? 0
  }

  protected emit<Name extends keyof Events>(event: Name, value: Events[Name]): void {
    const set = this.listeners.get(event)
    if (set === undefined || set.size === 0) return
    // A copy: a listener may add or remove listeners while we iterate.
    for (const listener of [...set]) {
      try {
        ;(listener as Listener<Events[Name]>)(value)
      } catch (error) {
        reportListenerError(error)
      }
    }
  }

  protected removeAllListeners(): void {
    this.listeners.clear()
  }
}

/** Surfaces an application listener's error without unwinding the client's own code. */
function reportListenerError(error: unknown): void {
  const report = (globalThis as { reportError?: (error: unknown) => void }).reportError
  if (typeof report === 'function') report(error)
  else
    queueMicrotask(() => {
      throw error
    })
}
