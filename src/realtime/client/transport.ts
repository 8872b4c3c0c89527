/**
 * Transports move `rally.v1` envelopes (JSON text) between a RallyClient and a server; the
 * client's state machine — connect command, heartbeat, subscriptions, queues — sits above them
 * and is the same whatever carries the envelopes. The WebSocket transport is here; SSE and long
 * polling implement the same interface (issue 13).
 */
import { SUBPROTOCOL } from '../protocol.js'

/** Why a transport ended. */
export interface TransportClose {
  /** The WebSocket close code (1006 when the connection failed without one). */
  code: number
  reason: string
  /** The transport never opened (refused, unreachable, handshake failed). */
  failedToOpen: boolean
}

/** What a transport reports to the client. After `onClose`, nothing more is reported. */
export interface TransportEvents {
  onOpen(): void
  onMessage(text: string): void
  onClose(info: TransportClose): void
}

export interface Transport {
  /** Sends one envelope; false when the transport is not open (the envelope was not sent). */
  send(envelope: string): boolean
  /**
   * Drops the transport at once and silently: no further event. Used on a dead path (heartbeat)
   * and on close(), where waiting for a closing handshake over a broken path would only delay the
   * reconnection.
   */
  close(code?: number, reason?: string): void
}

/** Creates transports to one endpoint; `name` shows in the client's `connected` event. */
export interface TransportFactory {
  readonly name: string
  open(url: string, events: TransportEvents): Transport
}

/** The fields of WebSocket events the transport reads. */
export interface SocketEvent {
  readonly data?: unknown
  readonly code?: number
  readonly reason?: string
}

/** The part of the WHATWG WebSocket (browsers, Rally's own for Node, undici's) the client uses. */
export interface WebSocketLike {
  readonly readyState: number
  readonly protocol: string
  // Each handler reads only the fields the WHATWG spec guarantees (MessageEvent.data,
  // CloseEvent.code and reason), so that every runtime's event classes fit.
  addEventListener(type: string, listener: (event: SocketEvent) => void): void
  removeEventListener(type: string, listener: (event: SocketEvent) => void): void
  send(data: string): void
  close(code?: number, reason?: string): void
  /** Rally's Node WebSocket: drop the connection without a closing handshake. */
  terminate?(): void
}

export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike

/** WebSocket readyState OPEN (WHATWG). */
const OPEN = 1
/** WebSocket close code for a connection that ended without a close frame (RFC 6455 7.1.5). */
const ABNORMAL_CLOSURE = 1006

/** The global WebSocket of the runtime (browsers, Node 22+, Deno, Bun), if there is one. */
export function globalWebSocket(): WebSocketConstructor | undefined {
  const candidate = (globalThis as { WebSocket?: unknown }).WebSocket
  return typeof candidate === 'function' ? (candidate as WebSocketConstructor) : undefined
}

/**
 * The WebSocket transport: one envelope per text message, subprotocol `rally.v1`. `WebSocket`
 * defaults to the runtime's global one; in Node 20 pass Rally's (`import { WebSocket } from
 * 'rallyjs'`).
 */
export function webSocketTransport(
  WebSocket: WebSocketConstructor | undefined = globalWebSocket(),
): TransportFactory {
  if (WebSocket === undefined) {
    throw new TypeError(
      'No WebSocket constructor: this runtime has no global WebSocket; pass one (in Node: `import { WebSocket } from "rallyjs"`)',
    )
  }
  return {
    name: 'websocket',
    open(url, events) {
      return new WebSocketTransport(WebSocket, toWebSocketUrl(url), events)
    },
  }
}

/** http(s) URLs are accepted as their ws(s) twins, so one server URL serves every transport. */
export function toWebSocketUrl(url: string): string {
  if (url.startsWith('http://')) return `ws://${url.slice('http://'.length)}`
  if (url.startsWith('https://')) return `wss://${url.slice('https://'.length)}`
  return url
}

class WebSocketTransport implements Transport {
  private socket: WebSocketLike | undefined
  private opened = false
  private readonly onOpen = (): void => {
    const socket = this.socket
    if (socket === undefined) return
    if (socket.protocol !== SUBPROTOCOL) {
      // A server that does not speak rally.v1 (or a proxy that stripped the header).
      this.drop()
      this.events.onClose({
        code: ABNORMAL_CLOSURE,
        reason: `server did not accept the ${SUBPROTOCOL} subprotocol`,
        failedToOpen: true,
      })
      return
    }
    this.opened = true
    this.events.onOpen()
  }
  private readonly onMessage = (event: SocketEvent): void => {
    // rally.v1 is text only; the server never sends binary, so there is nothing to decode.
    if (typeof event.data === 'string') this.events.onMessage(event.data)
  }
  private readonly onClose = (event: SocketEvent): void => {
    this.detach()
    this.events.onClose({
      code: event.code ?? ABNORMAL_CLOSURE,
      reason: event.reason ?? '',
      failedToOpen: !this.opened,
    })
  }
  // 'error' is always followed by 'close', which carries what the client needs; a listener stays
  // attached for good, since some runtimes report an 'error' nobody listens to as a crash.
  private readonly onError = (): void => {}

  constructor(
    WebSocket: WebSocketConstructor,
    url: string,
    private readonly events: TransportEvents,
  ) {
    let socket: WebSocketLike
    try {
      socket = new WebSocket(url, SUBPROTOCOL)
    } catch (error) {
      // A malformed URL throws synchronously; report it like any failure to open, asynchronously,
      // so that the caller's state is set before the event arrives.
      const reason = error instanceof Error ? error.message : String(error)
      queueMicrotask(() => events.onClose({ code: ABNORMAL_CLOSURE, reason, failedToOpen: true }))
      return
    }
    this.socket = socket
    socket.addEventListener('open', this.onOpen)
    socket.addEventListener('message', this.onMessage)
    socket.addEventListener('close', this.onClose)
    socket.addEventListener('error', this.onError)
  }

  send(envelope: string): boolean {
    const socket = this.socket
    if (socket === undefined || socket.readyState !== OPEN) return false
    socket.send(envelope)
    return true
  }

  close(code = 1000, reason = ''): void {
    this.drop(code, reason)
  }

  private drop(code = 1000, reason = ''): void {
    const socket = this.socket
    if (socket === undefined) return
    this.detach()
    if (typeof socket.terminate === 'function') {
      socket.terminate()
      return
    }
    try {
      socket.close(code, reason)
    } catch {
      // close() throws only for a bad code or reason, which are ours: fall back to a plain close.
      socket.close()
    }
  }

  private detach(): void {
    const socket = this.socket
    if (socket === undefined) return
    this.socket = undefined
    socket.removeEventListener('open', this.onOpen)
    socket.removeEventListener('message', this.onMessage)
    socket.removeEventListener('close', this.onClose)
  }
}
