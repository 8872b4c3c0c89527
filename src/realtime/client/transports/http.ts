/**
 * The RallyClient's HTTP transports, for paths where WebSockets do not get through: SSE with
 * POSTs, and long polling with POSTs (the server side is src/realtime/transports/http.ts; the
 * routes are listed there). Same module in browsers and Node: only `fetch`, and `EventSource`
 * where the runtime has one (browsers); elsewhere the event stream is read from a fetch body.
 *
 * Both keep the sequence number of the last envelope received, send it back as the
 * acknowledgement (Last-Event-ID on a resumed stream, `ack` on polls and POSTs), and drop any
 * envelope at or below it — so a response lost on the way is sent again and never seen twice.
 */
import type { Transport, TransportEvents, TransportFactory } from '../transport.js'

/** WebSocket close code for a connection that ended without a close frame (RFC 6455 7.1.5). */
const ABNORMAL_CLOSURE = 1006

export interface HttpTransportOptions {
  /** Ms to wait for the stream's first event before judging the path buffered. Default 5000. */
  firstEventTimeout?: number
  /** Send cookies on cross-origin requests. Default false. */
  withCredentials?: boolean
  /** `fetch` to use. Default the global one. */
  fetch?: typeof fetch
  /**
   * Use the runtime's EventSource when it has one (browsers). Default true; false reads the
   * stream with fetch everywhere.
   */
  useEventSource?: boolean
}

/** The part of the WHATWG EventSource the transport uses. */
interface EventSourceLike {
  readonly readyState: number
  addEventListener(type: string, listener: (event: { data?: unknown; lastEventId?: string }) => void): void
  close(): void
}
type EventSourceConstructor = new (url: string, init?: { withCredentials?: boolean }) => EventSourceLike
/** EventSource readyState CLOSED (WHATWG): it gave up and will not reconnect by itself. */
const EVENT_SOURCE_CLOSED = 2

/** ws(s) URLs are accepted as their http(s) twins, so one server URL serves every transport. */
export function toHttpUrl(url: string): string {
  if (url.startsWith('ws://')) return `http://${url.slice('ws://'.length)}`
  if (url.startsWith('wss://')) return `https://${url.slice('wss://'.length)}`
  return url
}

/** `base/route` with the query parameters, keeping the base's own query. */
function endpoint(base: string, route: string, params: Record<string, string | number>): string {
  const url = new URL(toHttpUrl(base))
  url.pathname = `${url.pathname.replace(/\/+$/, '')}/${route}`
  for (const [name, value] of Object.entries(params)) url.searchParams.set(name, String(value))
  return url.toString()
}

/** SSE for the server's envelopes, POSTs for the client's. */
export function sseTransport(options: HttpTransportOptions = {}): TransportFactory {
  return { name: 'sse', open: (url, events) => new HttpTransport('sse', url, events, options) }
}

/** Long polling for the server's envelopes, POSTs for the client's. */
export function longPollingTransport(options: HttpTransportOptions = {}): TransportFactory {
  return {
    name: 'long-polling',
    open: (url, events) => new HttpTransport('long-polling', url, events, options),
  }
}

class HttpTransport implements Transport {
  private readonly fetch: typeof fetch
  private readonly credentials: 'include' | 'same-origin'
  private session: string | undefined
  private token: string | undefined
  private opened = false
  private ended = false
  /** The sequence number of the last envelope delivered to the client. */
  private received = 0
  /** Envelopes waiting for the next POST, and whether one is in flight (POSTs go one at a time, in order). */
  private outbox: string[] = []
  private posting = false
  private readonly aborter = new AbortController()
  private eventSource: EventSourceLike | undefined
  private firstEventTimer: ReturnType<typeof setTimeout> | undefined

  constructor(
    private readonly kind: 'sse' | 'long-polling',
    private readonly url: string,
    private readonly events: TransportEvents,
    private readonly options: HttpTransportOptions,
  ) {
    const fetchFunction = options.fetch ?? globalThis.fetch
    this.fetch = fetchFunction.bind(globalThis)
    this.credentials = options.withCredentials ? 'include' : 'same-origin'
    void this.start()
  }

  send(envelope: string): boolean {
    if (!this.opened || this.ended) return false
    this.outbox.push(envelope)
    // Envelopes sent in the same task go in one POST.
    if (this.outbox.length === 1 && !this.posting) queueMicrotask(() => void this.post())
    return true
  }

  close(): void {
    if (this.ended) return
    this.ended = true
    this.stop()
    // Tell the server, so that the session's subscriptions and presence end now rather than
    // when it expires; best effort (keepalive lets it outlive a closing page).
    if (this.session !== undefined && this.token !== undefined) {
      this.fetch(endpoint(this.url, 'close', { session: this.session }), {
        method: 'POST',
        headers: { 'x-rally-token': this.token },
        credentials: this.credentials,
        keepalive: true,
      }).then(
        (response) => response.body?.cancel(),
        () => {},
      )
    }
  }

  private stop(): void {
    if (this.firstEventTimer !== undefined) clearTimeout(this.firstEventTimer)
    this.firstEventTimer = undefined
    this.eventSource?.close()
    this.eventSource = undefined
    this.aborter.abort()
  }

  /** Ends the transport and reports it, once. */
  private fail(reason: string, code = ABNORMAL_CLOSURE): void {
    if (this.ended) return
    this.ended = true
    this.stop()
    this.events.onClose({ code, reason, failedToOpen: !this.opened })
  }

  private async start(): Promise<void> {
    try {
      const response = await this.fetch(endpoint(this.url, 'open', {}), {
        method: 'POST',
        headers: { 'x-rally-transport': this.kind },
        credentials: this.credentials,
        signal: this.aborter.signal,
      })
      if (!response.ok) {
        await response.body?.cancel()
        return this.fail(`open refused with HTTP ${response.status}`)
      }
      const opened = (await response.json()) as { session?: unknown; token?: unknown }
      if (typeof opened.session !== 'string' || typeof opened.token !== 'string')
        return this.fail('open answered without a session')
      this.session = opened.session
      this.token = opened.token
    } catch (error) {
      return this.fail(describe(error))
    }
    if (this.ended) return
    if (this.kind === 'long-polling') {
      // Each poll answer is a complete response, which every proxy passes: the path works.
      this.markOpen()
      void this.pollLoop()
      return
    }
    const firstEventTimeout = this.options.firstEventTimeout ?? 5000
    this.firstEventTimer = setTimeout(
      () => this.fail(`no event on the stream within ${firstEventTimeout} ms (a buffering proxy?)`),
      firstEventTimeout,
    )
    const EventSource = (globalThis as { EventSource?: unknown }).EventSource
    if (typeof EventSource === 'function' && this.options.useEventSource !== false)
      this.openEventSource(EventSource as EventSourceConstructor)
    else void this.readStreams()
  }

  private markOpen(): void {
    if (this.opened || this.ended) return
    if (this.firstEventTimer !== undefined) clearTimeout(this.firstEventTimer)
    this.firstEventTimer = undefined
    this.opened = true
    this.events.onOpen()
  }

  /** One envelope with its sequence number; a repeat of one already delivered is dropped. */
  private deliver(seq: number, envelope: string): void {
    if (this.ended || !(seq > this.received)) return
    this.received = seq
    this.events.onMessage(envelope)
  }

  // ---------------------------------------------------------------- SSE

  private openEventSource(EventSource: EventSourceConstructor): void {
    const source = new EventSource(endpoint(this.url, 'sse', { session: this.session! }), {
      withCredentials: this.options.withCredentials === true,
    })
    this.eventSource = source
    source.addEventListener('ready', () => this.markOpen())
    source.addEventListener('message', (event) => {
      this.deliver(Number(event.lastEventId), String(event.data))
    })
    source.addEventListener('replaced', () => this.fail('another reader took this session'))
    source.addEventListener('error', () => {
      // CONNECTING: EventSource reconnects by itself with Last-Event-ID; CLOSED: the server
      // refused the stream (the session is gone), so a new session is needed.
      if (source.readyState === EVENT_SOURCE_CLOSED) this.fail('the event stream was refused')
    })
  }

  /** Reads the stream with fetch, resuming with the last id after a cut, until the session ends. */
  private async readStreams(): Promise<void> {
    let failures = 0
    while (!this.ended) {
      let response: Response
      try {
        response = await this.fetch(
          endpoint(this.url, 'sse', { session: this.session!, lastEventId: this.received }),
          {
            credentials: this.credentials,
            signal: this.aborter.signal,
            headers: { accept: 'text/event-stream' },
          },
        )
      } catch (error) {
        if (this.ended) return
        if (++failures > 2 || !this.opened) return this.fail(describe(error))
        continue
      }
      if (!response.ok || response.body === null) {
        await response.body?.cancel()
        return this.fail(`the event stream was refused with HTTP ${response.status}`)
      }
      try {
        if (await this.readEvents(response.body)) failures = 0
      } catch (error) {
        if (this.ended) return
        if (++failures > 2) return this.fail(describe(error))
      }
    }
  }

  /** Parses one event stream (the WHATWG rules for the fields Rally uses); true if any event came. */
  private async readEvents(body: ReadableStream<Uint8Array>): Promise<boolean> {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader()
    let pending = ''
    let data: string[] = []
    let event = ''
    let id: string | undefined
    let any = false
    try {
      for (;;) {
        const { done, value } = await reader.read()
        if (done || this.ended) return any
        pending += value
        let newline = pending.search(/[\r\n]/)
        while (newline !== -1) {
          const line = pending.slice(0, newline)
          const skip = pending[newline] === '\r' && pending[newline + 1] === '\n' ? 2 : 1
          // A lone \r at the very end may be the first half of \r\n: wait for more.
          if (pending[newline] === '\r' && newline + 1 === pending.length) break
          pending = pending.slice(newline + skip)
          if (line === '') {
            if (data.length > 0 || event !== '') {
              any = true
              this.dispatch(event || 'message', data.join('\n'), id)
            }
            data = []
            event = ''
            id = undefined
          } else if (!line.startsWith(':')) {
            const colon = line.indexOf(':')
            const field = colon === -1 ? line : line.slice(0, colon)
            let value = colon === -1 ? '' : line.slice(colon + 1)
            if (value.startsWith(' ')) value = value.slice(1)
            if (field === 'data') data.push(value)
            else if (field === 'event') event = value
            else if (field === 'id') id = value
          }
          if (this.ended) return any
          newline = pending.search(/[\r\n]/)
        }
      }
    } finally {
      reader.releaseLock()
    }
  }

  private dispatch(event: string, data: string, id: string | undefined): void {
    if (event === 'ready') this.markOpen()
    else if (event === 'replaced') this.fail('another reader took this session')
    else if (event === 'message' && id !== undefined) this.deliver(Number(id), data)
  }

  // ---------------------------------------------------------------- long polling

  private async pollLoop(): Promise<void> {
    let failures = 0
    while (!this.ended) {
      let batch: { first?: unknown; messages?: unknown }
      try {
        const response = await this.fetch(
          endpoint(this.url, 'poll', { session: this.session!, ack: this.received }),
          { credentials: this.credentials, signal: this.aborter.signal },
        )
        if (!response.ok) {
          await response.body?.cancel()
          return this.fail(`the poll was answered with HTTP ${response.status}`)
        }
        batch = (await response.json()) as typeof batch
      } catch (error) {
        if (this.ended) return
        // A lost response: poll again with the same acknowledgement, and the server sends it again.
        if (++failures > 2) return this.fail(describe(error))
        continue
      }
      failures = 0
      if (typeof batch.first !== 'number' || !Array.isArray(batch.messages))
        return this.fail('malformed poll answer')
      for (let i = 0; i < batch.messages.length; i++)
        this.deliver(batch.first + i, JSON.stringify(batch.messages[i]))
    }
  }

  // ---------------------------------------------------------------- POSTs

  private async post(): Promise<void> {
    if (this.posting) return
    this.posting = true
    try {
      while (this.outbox.length > 0 && !this.ended) {
        const batch = this.outbox
        this.outbox = []
        let response: Response
        try {
          response = await this.fetch(
            endpoint(this.url, 'send', { session: this.session!, ack: this.received }),
            {
              method: 'POST',
              headers: { 'content-type': 'application/json', 'x-rally-token': this.token! },
              body: `[${batch.join(',')}]`,
              credentials: this.credentials,
              signal: this.aborter.signal,
            },
          )
          await response.body?.cancel()
        } catch (error) {
          // Whether the server got the batch is unknown: the connection ends and the client's
          // own reconnection (resubscribe with recovery, publish keys) takes over.
          return this.fail(describe(error))
        }
        if (!response.ok) return this.fail(`a send was answered with HTTP ${response.status}`)
      }
    } finally {
      this.posting = false
    }
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}
