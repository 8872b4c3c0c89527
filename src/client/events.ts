/**
 * Event classes of the WebSocket API that Node 20 lacks as globals. (`Event`, `EventTarget` and
 * `MessageEvent` are globals in Node 20; `CloseEvent` arrived only in Node 23.)
 */

interface BaseEventInit {
  bubbles?: boolean
  cancelable?: boolean
  composed?: boolean
}

export interface CloseEventInit extends BaseEventInit {
  wasClean?: boolean
  code?: number
  reason?: string
}

/** WHATWG `CloseEvent`: how the connection ended. */
export class CloseEvent extends Event {
  readonly wasClean: boolean
  readonly code: number
  readonly reason: string

  constructor(type: string, init: CloseEventInit = {}) {
    super(type, init)
    this.wasClean = init.wasClean ?? false
    this.code = init.code ?? 0
    this.reason = init.reason ?? ''
  }
}

export interface ErrorEventInit extends BaseEventInit {
  message?: string
  error?: unknown
}

/**
 * The `error` event. Browsers fire a plain Event with no details (for privacy); Node code has no
 * such constraint, so this one also carries `message` and `error` for logs.
 */
export class ErrorEvent extends Event {
  readonly message: string
  readonly error: unknown

  constructor(type: string, init: ErrorEventInit = {}) {
    super(type, init)
    this.message = init.message ?? ''
    this.error = init.error
  }
}

/**
 * The events of a WebSocket by name, typed as `lib.dom.d.ts` types a browser's: code written for
 * browsers (`ws.onmessage = (event) => event.data`, `addEventListener('close', (e) => e.code)`)
 * type-checks unchanged under `--strict` on Node. `error` is a plain Event there, as in browsers;
 * Rally's is an ErrorEvent, which Node code may narrow to for `message` and `error`.
 */
export interface WebSocketEventMap {
  close: CloseEvent
  error: Event
  message: MessageEvent
  open: Event
}
