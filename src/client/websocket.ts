/**
 * The WHATWG `WebSocket` for Node (https://websockets.spec.whatwg.org/), so that code written for
 * browsers runs on Node unchanged, with Node-only options as a third argument. A façade over
 * ClientConnection, which does the dialing, the handshake and the framing.
 */
import { Buffer } from 'node:buffer'
import { CloseCode, type CloseInfo, type HttpHead, type ProtocolError } from '../protocol/index.js'
import {
  ClientConnection,
  type ClientListener,
  type ClientOptions,
  parseProtocols,
  parseWebSocketUrl,
} from './client-connection.js'
import { CloseEvent, ErrorEvent, type WebSocketEventMap } from './events.js'

export type WebSocketOptions = ClientOptions

export type BinaryType = 'blob' | 'arraybuffer'

/** An event handler attribute (`onmessage`...), typed per event as in lib.dom.d.ts. */
type Handler<E extends Event> = ((this: WebSocket, event: E) => unknown) | null

/** A listener for addEventListener: a function or an object with handleEvent, as in the DOM. */
export type WebSocketListener<E extends Event> =
  | ((this: WebSocket, event: E) => unknown)
  | { handleEvent(event: E): unknown }

type ListenerOptions = Parameters<EventTarget['addEventListener']>[2]
type RemoveListenerOptions = Parameters<EventTarget['removeEventListener']>[2]

export class WebSocket extends EventTarget {
  static readonly CONNECTING = 0
  static readonly OPEN = 1
  static readonly CLOSING = 2
  static readonly CLOSED = 3
  declare readonly CONNECTING: 0
  declare readonly OPEN: 1
  declare readonly CLOSING: 2
  declare readonly CLOSED: 3

  readonly url: string
  /** The origin of `url`, for MessageEvent.origin. */
  private readonly origin: string
  private _readyState: number = WebSocket.CONNECTING
  private _binaryType: BinaryType = 'blob'
  /** Bytes passed to send() after closing began, which the spec still counts. */
  private unsentBytes = 0
  /**
   * Sent messages whose frames may still sit in the socket's buffer: where each frame ends in the
   * socket's byte stream, and its application bytes. bufferedAmount counts application data only
   * (WHATWG), not framing, pongs or the close frame. `end` is -1 while the message waits in the
   * connection's output sequencer (being compressed): `message`, its ordinal there, tells when
   * it has left.
   */
  private readonly inFlight: { end: number; message: number; size: number }[] = []
  private inFlightBytes = 0
  private readonly client: ClientConnection
  /** The connection was failed (by the peer's fault or ours): the close event says 1006. */
  private failed = false
  /** Sends waiting for a Blob to be read, to keep them in order. */
  private sendQueue: (string | Uint8Array | Blob)[] | undefined
  private readonly handlers = new Map<string, { current: Handler<Event> }>()

  constructor(url: string | URL, protocols?: string | string[], options: WebSocketOptions = {}) {
    super()
    const parsed = parseWebSocketUrl(url)
    this.url = parsed.href
    this.origin = parsed.origin
    this.client = new ClientConnection(parsed, parseProtocols(protocols), options, this.listener())
  }

  get readyState(): number {
    return this._readyState
  }

  /** The subprotocol the server chose, or "". */
  get protocol(): string {
    return this.client.protocol
  }

  /** The extensions the server accepted, or "". */
  get extensions(): string {
    return this.client.extensions
  }

  get binaryType(): BinaryType {
    return this._binaryType
  }

  set binaryType(value: BinaryType) {
    // The spec ignores values outside the enumeration rather than throwing.
    if (value === 'blob' || value === 'arraybuffer') this._binaryType = value
  }

  /** Bytes of application data queued by send() but not yet handed to the network. */
  get bufferedAmount(): number {
    const driver = this.client.driver
    if (driver !== undefined) {
      const flushed = driver.bytesFlushedTotal
      const connection = driver.connection
      let sent = 0
      while (sent < this.inFlight.length) {
        const entry = this.inFlight[sent]!
        if (entry.end < 0) {
          if (connection.messagesReleased < entry.message) break
          // Written since: it ends at most where the byte stream ends now, an upper bound the
          // socket's flushing catches up with.
          entry.end = driver.bytesQueuedTotal
        }
        if (entry.end > flushed) break
        this.inFlightBytes -= entry.size
        sent++
      }
      if (sent > 0) this.inFlight.splice(0, sent)
    }
    return this.inFlightBytes + this.unsentBytes + this.queuedBytes()
  }

  get onopen(): Handler<Event> {
    return this.getHandler('open')
  }
  set onopen(handler: Handler<Event>) {
    this.setHandler('open', handler)
  }
  get onmessage(): Handler<MessageEvent> {
    return this.getHandler('message')
  }
  set onmessage(handler: Handler<MessageEvent>) {
    this.setHandler('message', handler)
  }
  get onerror(): Handler<Event> {
    return this.getHandler('error')
  }
  set onerror(handler: Handler<Event>) {
    this.setHandler('error', handler)
  }
  get onclose(): Handler<CloseEvent> {
    return this.getHandler('close')
  }
  set onclose(handler: Handler<CloseEvent>) {
    this.setHandler('close', handler)
  }

  // Typed per event name, as lib.dom.d.ts types a browser WebSocket; other names take any Event.
  override addEventListener<K extends keyof WebSocketEventMap>(
    type: K,
    listener: WebSocketListener<WebSocketEventMap[K]> | null,
    options?: ListenerOptions,
  ): void
  override addEventListener(
    type: string,
    listener: WebSocketListener<Event> | null,
    options?: ListenerOptions,
  ): void
  override addEventListener(
    type: string,
    listener: WebSocketListener<Event> | null,
    options?: ListenerOptions,
  ): void {
    super.addEventListener(type, listener as Parameters<EventTarget['addEventListener']>[1], options)
  }

  override removeEventListener<K extends keyof WebSocketEventMap>(
    type: K,
    listener: WebSocketListener<WebSocketEventMap[K]> | null,
    options?: RemoveListenerOptions,
  ): void
  override removeEventListener(
    type: string,
    listener: WebSocketListener<Event> | null,
    options?: RemoveListenerOptions,
  ): void
  override removeEventListener(
    type: string,
    listener: WebSocketListener<Event> | null,
    options?: RemoveListenerOptions,
  ): void {
    super.removeEventListener(type, listener as Parameters<EventTarget['removeEventListener']>[1], options)
  }

  /**
   * Sends a message: strings as text, ArrayBuffer, views and Blobs as binary. Throws
   * InvalidStateError while CONNECTING; after closing began, the data is counted in
   * bufferedAmount and discarded, as the spec says.
   */
  send(data: string | ArrayBufferLike | ArrayBufferView | Blob): void {
    if (this._readyState === WebSocket.CONNECTING) {
      throw new DOMException('WebSocket is still connecting', 'InvalidStateError')
    }
    let item: string | Uint8Array | Blob
    if (typeof data === 'string') item = data
    else if (data instanceof Blob) item = data
    else if (ArrayBuffer.isView(data)) item = new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
    else if (data instanceof ArrayBuffer || data instanceof SharedArrayBuffer) item = new Uint8Array(data)
    else item = String(data)
    if (this._readyState !== WebSocket.OPEN) {
      this.unsentBytes += sizeOf(item)
      return
    }
    if (this.sendQueue !== undefined || item instanceof Blob) {
      this.enqueue(item)
      return
    }
    this.transmit(item)
  }

  /**
   * Starts the closing handshake. `code` must be 1000 or 3000-4999 (else InvalidAccessError), the
   * reason at most 123 UTF-8 bytes (else SyntaxError).
   */
  close(code?: number, reason?: string): void {
    if (code !== undefined && code !== 1000 && (code < 3000 || code > 4999 || !Number.isInteger(code))) {
      throw new DOMException(`Close code must be 1000 or in 3000-4999, got ${code}`, 'InvalidAccessError')
    }
    if (reason !== undefined && Buffer.byteLength(reason) > 123) {
      throw new DOMException('Close reason must be at most 123 UTF-8 bytes', 'SyntaxError')
    }
    if (this._readyState === WebSocket.CLOSING || this._readyState === WebSocket.CLOSED) return
    if (this._readyState === WebSocket.CONNECTING) {
      // The spec: "Fail the WebSocket connection" and move to CLOSING.
      this._readyState = WebSocket.CLOSING
      this.client.abort('WebSocket was closed before the connection was established')
      return
    }
    this._readyState = WebSocket.CLOSING
    this.client.driver!.close(code ?? (reason ? CloseCode.Normal : undefined), reason)
  }

  /**
   * Node extension: sends a ping (payload at most 125 bytes). The peer's answer fires a `pong`
   * event, a MessageEvent whose `data` is the pong's payload as a Buffer. Returns what the
   * server's `ws.ping()` returns: 'sent', 'buffered' (the socket is behind) or 'dropped' (closing
   * has begun).
   */
  ping(data: string | Uint8Array = ''): 'sent' | 'buffered' | 'dropped' {
    if (this._readyState === WebSocket.CONNECTING) {
      throw new DOMException('WebSocket is still connecting', 'InvalidStateError')
    }
    const driver = this.client.driver
    if (driver === undefined || !driver.connection.ping(typeof data === 'string' ? Buffer.from(data) : data))
      return 'dropped'
    return driver.socket.writableNeedDrain ? 'buffered' : 'sent'
  }

  /** Node extension: destroys the connection at once, without a closing handshake. */
  terminate(): void {
    if (this.client.driver !== undefined) this.client.driver.terminate()
    else this.client.abort('WebSocket was terminated before the connection was established')
  }

  // ------------------------------------------------------------- sending

  private transmit(item: string | Uint8Array): void {
    const driver = this.client.driver!
    const bytes = typeof item === 'string' ? Buffer.from(item) : item
    if (typeof item === 'string') driver.connection.sendText(bytes)
    else driver.connection.sendBinary(bytes)
    // A message compressed off the event loop (over 64 KiB, or with context takeover) is not in
    // the byte stream yet: it counts until it has left the output sequencer and been flushed.
    const connection = driver.connection
    const message = connection.messagesAccepted
    const end = connection.messagesReleased < message ? -1 : driver.bytesQueuedTotal
    this.inFlight.push({ end, message, size: bytes.length })
    this.inFlightBytes += bytes.length
    // Keep the record short when nothing reads bufferedAmount.
    if (this.inFlight.length > 1024) void this.bufferedAmount
  }

  private enqueue(item: string | Uint8Array | Blob): void {
    const queue = (this.sendQueue ??= [])
    queue.push(item)
    if (queue.length === 1) void this.drainQueue()
  }

  /** Sends queued items in order, reading each Blob when its turn comes. */
  private async drainQueue(): Promise<void> {
    const queue = this.sendQueue!
    while (queue.length > 0) {
      const item = queue[0]!
      const bytes = item instanceof Blob ? new Uint8Array(await item.arrayBuffer()) : item
      queue.shift()
      if (this._readyState === WebSocket.OPEN) this.transmit(bytes)
      else this.unsentBytes += sizeOf(bytes)
    }
    this.sendQueue = undefined
  }

  private queuedBytes(): number {
    let total = 0
    for (const item of this.sendQueue ?? []) total += sizeOf(item)
    return total
  }

  // ------------------------------------------------------------- connection events

  /** The connection's listener: kept off the public surface of this class. */
  private listener(): ClientListener {
    return {
      onOpen: (_response: HttpHead) => {
        this._readyState = WebSocket.OPEN
        this.dispatchEvent(new Event('open'))
      },
      onConnectFailure: (message: string, error: unknown) => {
        // WHATWG "fail the WebSocket connection" before it opened: error, then close with 1006.
        this._readyState = WebSocket.CLOSING
        setImmediate(() => {
          this._readyState = WebSocket.CLOSED
          this.dispatchEvent(new ErrorEvent('error', { message, error }))
          this.dispatchEvent(
            new CloseEvent('close', { wasClean: false, code: CloseCode.Abnormal, reason: '' }),
          )
        })
      },
      onExtensionFailure: (message: string) => {
        this.failed = true
        this._readyState = WebSocket.CLOSING
        this.dispatchEvent(new ErrorEvent('error', { message }))
      },
      onMessage: (data: Uint8Array, isBinary: boolean) => {
        let payload: string | Blob | ArrayBuffer
        if (!isBinary) {
          payload = Buffer.from(data.buffer, data.byteOffset, data.length).toString('utf8')
        } else if (this._binaryType === 'arraybuffer') {
          payload = data.buffer.slice(data.byteOffset, data.byteOffset + data.length) as ArrayBuffer
        } else {
          payload = new Blob([data])
        }
        this.dispatchEvent(new MessageEvent('message', { data: payload, origin: this.origin }))
      },
      onPing: () => {},
      onPong: (data: Uint8Array) => {
        this.dispatchEvent(new MessageEvent('pong', { data: Buffer.from(data) }))
      },
      onCloseFrame: () => {
        // "When the WebSocket closing handshake is started, [...] change the readyState to CLOSING".
        this._readyState = WebSocket.CLOSING
      },
      onProtocolError: (error: ProtocolError) => {
        this.failed = true
        this.dispatchEvent(new ErrorEvent('error', { message: error.message, error }))
      },
      onDrain: () => {},
      onClosed: (info: CloseInfo) => {
        this.client.stopTimers()
        this._readyState = WebSocket.CLOSED
        // A failed connection reports 1006 and is never clean (WHATWG "fail the WebSocket connection").
        this.dispatchEvent(
          new CloseEvent('close', {
            wasClean: info.wasClean && !this.failed,
            code: this.failed ? CloseCode.Abnormal : info.code,
            reason: this.failed ? '' : info.reason,
          }),
        )
      },
    }
  }

  // ------------------------------------------------------------- event handler attributes

  private getHandler<E extends Event>(type: string): Handler<E> {
    return (this.handlers.get(type)?.current ?? null) as Handler<E>
  }

  private setHandler<E extends Event>(type: string, handler: Handler<E>): void {
    let slot = this.handlers.get(type)
    if (slot === undefined) {
      // The listener is registered once, at the first assignment, and calls whatever is current.
      const created = { current: null as Handler<Event> }
      slot = created
      this.handlers.set(type, created)
      this.addEventListener(type, (event) => created.current?.call(this, event))
    }
    slot.current = typeof handler === 'function' ? (handler as Handler<Event>) : null
  }
}

for (const [name, value] of [
  ['CONNECTING', 0],
  ['OPEN', 1],
  ['CLOSING', 2],
  ['CLOSED', 3],
] as const) {
  Object.defineProperty(WebSocket.prototype, name, { value, enumerable: true })
}

function sizeOf(item: string | Uint8Array | Blob): number {
  return typeof item === 'string' ? Buffer.byteLength(item) : item instanceof Blob ? item.size : item.length
}
