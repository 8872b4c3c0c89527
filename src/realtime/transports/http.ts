/**
 * The realtime layer over plain HTTP, for paths where WebSockets do not get through (a proxy that
 * strips `Upgrade`, one that buffers): Server-Sent Events with POSTs, and long polling with POSTs.
 * Both drive the same sans-I/O session as a WebSocket (session.ts); only the carriage differs.
 *
 * Routes, under the realtime base path `P` (the WebSocket's own path, so one URL serves all):
 * - `POST P/open` (header `X-Rally-Transport: sse | long-polling`) → `{ session, token }`. The
 *   opening request is what the authenticate hook sees (cookies, headers), as a WebSocket's upgrade.
 * - `GET P/sse?session=S` → `text/event-stream`: each envelope is one event whose `id` is its
 *   sequence number; `Last-Event-ID` (header, or `lastEventId` in the query for clients that
 *   cannot set headers) resumes after what the client has.
 * - `GET P/poll?session=S&ack=N` → `{ "first": F, "messages": [...] }`, held until there is
 *   something to send or `pollTimeout`; `ack` is the last sequence number the client received,
 *   so a response lost on the way is sent again by the next poll.
 * - `POST P/send?session=S&ack=N` (header `X-Rally-Token`) with a JSON array of envelopes → 204;
 *   replies come on the stream or the next poll, in order with every push.
 * - `POST P/close?session=S` (header `X-Rally-Token`) → 204: the client leaves.
 *
 * Everything sent to a session stays in its replay buffer until the client acknowledges it (`ack`
 * on polls and POSTs, `Last-Event-ID` on a resumed stream), bounded by `maxQueuedBytes`: a client
 * that stops reading is disconnected (4003) and its buffer freed.
 */
import { randomBytes } from 'node:crypto'
import type {
  Server as HttpServer,
  IncomingHttpHeaders,
  IncomingMessage,
  OutgoingHttpHeaders,
  ServerResponse,
} from 'node:http'
import type { Socket } from 'node:net'
import { RallyHttpRequest } from '../../server/own-http.js'
import type { RallyServer } from '../../server/server.js'
import { BUS_OUTAGE_REASON, BUS_OUTAGE_RETRY_AFTER } from '../bus-outage.js'
import { DisconnectCode } from '../protocol.js'
import type { Realtime, RealtimeConnection, RealtimeServerOptions } from '../server.js'
import type { RealtimeSession, SessionTransport } from '../session.js'
import { type ChannelEventLimits, handleChannelEvents } from './channel-events.js'

export type HttpTransportKind = 'sse' | 'long-polling'

/**
 * What the transports read of a request: node:http's IncomingMessage (attachTransports, Hono),
 * or a RallyHttpRequest on Rally's own port (listenTransports).
 */
export interface TransportRequest {
  readonly method?: string | undefined
  readonly url?: string | undefined
  readonly headers: IncomingHttpHeaders
  readonly socket: { readonly remoteAddress?: string | undefined }
  resume(): unknown
}

/** What the transports write an answer with: node:http's ServerResponse, or a RallyHttpResponse. */
export interface TransportResponse {
  readonly headersSent: boolean
  readonly writableEnded: boolean
  /** Bytes written and not yet taken by the connection. */
  readonly writableLength: number
  readonly socket: Socket | null
  writeHead(status: number, headers?: OutgoingHttpHeaders | string[]): this
  setHeader(name: string, value: number | string | readonly string[]): this
  write(chunk: string | Uint8Array): boolean
  end(chunk?: string | Uint8Array): this
  destroy(): this
  on(event: 'close', listener: () => void): this
}

export interface CorsOptions {
  /** Origins allowed to call the transports from a page of another origin; '*' for any. */
  origins: '*' | readonly string[] | ((origin: string) => boolean)
  /** Send `Access-Control-Allow-Credentials: true` (cookies on cross-origin requests). Default false. */
  credentials?: boolean
}

export interface HttpTransportOptions {
  /** The realtime base path (the WebSocket's path). Default '/realtime'. */
  path?: string
  /** Which transports to serve. Default both. */
  transports?: readonly HttpTransportKind[]
  /**
   * Ms a poll is held when there is nothing to send. Default 25000 (below common proxy limits of
   * 30–60 s). Held polls are expired by the transports' periodic check rather than by a timer
   * each, so a poll is answered within a quarter of `pollTimeout` (at most 1 s) either side of it.
   */
  pollTimeout?: number
  /** Ms between comment lines on an idle SSE stream, so that idle proxies keep it. Default 15000. */
  sseHeartbeat?: number
  /** Ms without any request (and no open stream or poll) after which a session ends. Default 45000. */
  sessionTimeout?: number
  /** Bytes of envelopes not yet acknowledged per session; beyond, disconnect 4003. Default 4 MiB. */
  maxQueuedBytes?: number
  /** Largest POST body in bytes; 413 beyond. Default: 4 × the realtime maxMessageSize. */
  maxBodySize?: number
  /** Open sessions (and read-only event streams) per client IP address; 429 beyond. Default 64. */
  maxSessionsPerIp?: number
  /**
   * The client's address, for `maxSessionsPerIp`. Default the connection's peer address. Behind a
   * reverse proxy that is the proxy's, the same for every client: return the address the proxy
   * forwards (its X-Forwarded-For entry) instead, or every client shares one budget.
   */
  clientAddress?(request: TransportRequest): string
  /** Cross-origin access; default none (same origin only). */
  cors?: CorsOptions
  /**
   * Starts every session id, followed by a dot: this node's name (letters, digits, `_`, `-`), so
   * that a proxy in front of several nodes routes each session's requests to the node holding it
   * (docs/cluster.md). Default none.
   */
  sessionPrefix?: string
}

const DEFAULTS = {
  path: '/realtime',
  pollTimeout: 25_000,
  sseHeartbeat: 15_000,
  sessionTimeout: 45_000,
  maxQueuedBytes: 4 * 1024 * 1024,
  maxSessionsPerIp: 64,
}

/** A stored envelope: its sequence number is `first + index` in the buffer. */
interface HttpSession {
  readonly id: string
  readonly token: string
  readonly kind: HttpTransportKind
  readonly ip: string
  readonly transport: HttpSessionTransport
  session: RealtimeSession | undefined
  /** Envelopes sent and not yet acknowledged, oldest first; `first` is the oldest's sequence number. */
  buffer: string[]
  first: number
  queuedBytes: number
  /** The live SSE stream, or the held poll. */
  reader: TransportResponse | undefined
  /** The sequence number after the last one written to the live SSE stream. */
  streamed: number
  /** When the held poll is answered empty (the transports' clock); meaningful while one is held. */
  pollDeadline: number
  lastRequestAt: number
  /** A request came since the last periodic check, which then sets `lastRequestAt` to its time. */
  touched: boolean
  /** Still counted in `maxSessionsPerIp`. */
  countsForAddress: boolean
  /** The session ended; what remains in the buffer can still be collected, then the entry goes. */
  closed: boolean
}

class HttpSessionTransport implements SessionTransport {
  entry: HttpSession | undefined
  constructor(
    readonly kind: HttpTransportKind,
    private readonly owner: HttpTransports,
  ) {}
  send(envelope: string): void {
    if (this.entry !== undefined) this.owner.enqueue(this.entry, envelope)
  }
  close(): void {
    if (this.entry !== undefined) this.owner.ended(this.entry)
  }
}

/** The JSON answer for a request on a session that is gone: the client opens a new one. */
const RECONNECT = JSON.stringify({ error: 'unknown or expired session', advice: 'reconnect' })

export class HttpTransports {
  readonly path: string
  private readonly realtime: Realtime
  private readonly kinds: ReadonlySet<HttpTransportKind>
  private readonly pollTimeout: number
  private readonly sseHeartbeat: number
  private readonly sessionTimeout: number
  private readonly maxQueuedBytes: number
  /** Largest POST body in bytes (413 beyond). */
  readonly maxBodySize: number
  private readonly maxSessionsPerIp: number
  private readonly cors: CorsOptions | undefined
  private readonly clientAddress: (request: TransportRequest) => string
  private readonly sessionPrefix: string
  private readonly sessions = new Map<string, HttpSession>()
  private readonly sessionsPerIp = new Map<string, number>()
  private readonly timer: ReturnType<typeof setInterval>
  private lastHeartbeat = Date.now()
  /** Date.now() at the last periodic check: held polls' deadlines are counted from it. */
  private clock = Date.now()
  /**
   * Sessions with envelopes not yet handed to their reader. A fan-out delivers each publication
   * to every session in one step, and the publications that arrive together (one read of the
   * publisher's socket, a broker's batch) come in consecutive steps: writing once per session
   * after them all, rather than once per publication, is one write (one `writev`, one HTTP chunk)
   * instead of several, and a held poll answers with all of them instead of the first.
   */
  private readonly pending = new Set<HttpSession>()
  private pendingScheduled = false

  // biome-ignore lint/suspicious/noExplicitAny: any realtime, whatever its channel and RPC types
  constructor(realtime: Realtime<any, any>, options: HttpTransportOptions = {}) {
    this.realtime = realtime
    this.path = (options.path ?? DEFAULTS.path).replace(/\/+$/, '')
    this.kinds = new Set(options.transports ?? ['sse', 'long-polling'])
    this.pollTimeout = options.pollTimeout ?? DEFAULTS.pollTimeout
    this.sseHeartbeat = options.sseHeartbeat ?? DEFAULTS.sseHeartbeat
    this.sessionTimeout = options.sessionTimeout ?? DEFAULTS.sessionTimeout
    this.maxQueuedBytes = options.maxQueuedBytes ?? DEFAULTS.maxQueuedBytes
    this.maxBodySize = options.maxBodySize ?? realtime.core.limits.maxMessageSize * 4
    this.maxSessionsPerIp = options.maxSessionsPerIp ?? DEFAULTS.maxSessionsPerIp
    this.cors = options.cors
    this.clientAddress = options.clientAddress ?? ((request) => request.socket.remoteAddress ?? '')
    const prefix = options.sessionPrefix
    if (prefix !== undefined && !/^[A-Za-z0-9_-]{1,64}$/.test(prefix))
      throw new RangeError('HttpTransports: sessionPrefix must be 1 to 64 letters, digits, _ or -')
    this.sessionPrefix = prefix === undefined ? '' : `${prefix}.`
    this.eventLimits.maxQueuedBytes = this.maxQueuedBytes
    for (const [name, value] of Object.entries({
      pollTimeout: this.pollTimeout,
      sseHeartbeat: this.sseHeartbeat,
      sessionTimeout: this.sessionTimeout,
      maxQueuedBytes: this.maxQueuedBytes,
      maxBodySize: this.maxBodySize,
      maxSessionsPerIp: this.maxSessionsPerIp,
    })) {
      if (!(value > 0)) throw new RangeError(`HttpTransports: ${name} must be a positive number`)
    }
    // The one timer of the transports: heartbeats, session expiry and held polls' deadlines, so
    // that ten thousand idle clients, each with a poll held, cost one timer rather than one each.
    const period = Math.max(
      10,
      Math.min(1000, this.sseHeartbeat / 4, this.sessionTimeout / 4, this.pollTimeout / 4),
    )
    this.timer = setInterval(() => this.tick(Date.now()), period)
    this.timer.unref()
  }

  /** The read-only event streams (P/events) share the sessions' limits. */
  private readonly eventLimits: ChannelEventLimits = {
    maxQueuedBytes: 0,
    admit: (request) => {
      const ip = this.clientAddress(request)
      const count = this.sessionsPerIp.get(ip) ?? 0
      if (count >= this.maxSessionsPerIp) return undefined
      this.sessionsPerIp.set(ip, count + 1)
      let released = false
      return () => {
        if (released) return
        released = true
        const left = (this.sessionsPerIp.get(ip) ?? 1) - 1
        if (left > 0) this.sessionsPerIp.set(ip, left)
        else this.sessionsPerIp.delete(ip)
      }
    },
  }

  /** Open sessions (for tests and metrics). */
  get size(): number {
    return this.sessions.size
  }

  /** Streams and polls held open now. */
  get readers(): number {
    let count = 0
    for (const entry of this.sessions.values()) if (entry.reader !== undefined) count++
    return count
  }

  /**
   * Serves a request if it is one of the transports' (true), else leaves it alone (false) so
   * that the app's own handler answers it.
   */
  handle(request: TransportRequest, response: TransportResponse): boolean {
    const url = request.url ?? '/'
    const query = url.indexOf('?')
    const pathname = query === -1 ? url : url.slice(0, query)
    if (!pathname.startsWith(`${this.path}/`)) return false
    const route = pathname.slice(this.path.length + 1)
    if (
      route !== 'open' &&
      route !== 'sse' &&
      route !== 'poll' &&
      route !== 'send' &&
      route !== 'close' &&
      route !== 'events'
    )
      return false
    if (route === 'events' && request.method !== 'GET' && request.method !== 'OPTIONS') return false
    const params = new URLSearchParams(query === -1 ? '' : url.slice(query + 1))
    // The same CORS rules for every route: a page of another origin reads a channel's events
    // (EventSource with withCredentials) only if the transports would let it open a session.
    if (!this.applyCors(request, response)) {
      answer(response, 403, { error: 'origin not allowed' })
      return true
    }
    if (request.method === 'OPTIONS') {
      response.writeHead(204).end()
      return true
    }
    if (route === 'events')
      return handleChannelEvents(this.realtime, this.path, request, response, this.eventLimits)
    try {
      if (route === 'open') this.open(request, response)
      else if (route === 'send') this.receive(request, response, params)
      else if (route === 'close') this.closeSession(request, response, params)
      else this.read(request, response, params, route)
    } catch (error) {
      this.realtime.core.reportError(error, undefined as unknown as RealtimeSession)
      if (!response.headersSent) answer(response, 500, { error: 'internal error' })
      else response.destroy()
    }
    return true
  }

  /** Ends every session's held request and the timer (the realtime's close() ends the sessions). */
  close(): void {
    clearInterval(this.timer)
    for (const entry of [...this.sessions.values()]) {
      entry.session?.transportClosed()
      this.forget(entry)
    }
  }

  // ---------------------------------------------------------------- the server's side of a session

  /** @internal The session sent an envelope. */
  enqueue(entry: HttpSession, envelope: string): void {
    if (entry.closed) return
    entry.buffer.push(envelope)
    entry.queuedBytes += envelope.length
    if (entry.queuedBytes > this.maxQueuedBytes) {
      // The client stopped reading (or acknowledging): as a WebSocket whose buffer overflows,
      // it is disconnected rather than grown without bound, and what it had queued is freed.
      const session = entry.session
      entry.first += entry.buffer.length
      entry.streamed = Math.max(entry.streamed, entry.first)
      entry.buffer = []
      entry.queuedBytes = 0
      session?.disconnect(DisconnectCode.SlowConsumer, 'the client did not read its messages')
      return
    }
    if (entry.reader === undefined) return
    this.pending.add(entry)
    if (this.pendingScheduled) return
    this.pendingScheduled = true
    // After the I/O callbacks of this turn of the event loop, so that everything they deliver
    // goes out together; a setImmediate adds no timer delay.
    setImmediate(this.flushPending)
  }

  private readonly flushPending = (): void => {
    this.pendingScheduled = false
    for (const entry of this.pending) this.flush(entry)
    this.pending.clear()
    encodedEnvelopes.clear()
  }

  /** @internal The session ended (disconnect): deliver what remains, then forget it. */
  ended(entry: HttpSession): void {
    if (entry.closed) return
    entry.closed = true
    // An ended session no longer counts against its address: clients behind a dead path
    // reconnect while the sessions they left are still waiting to hand over their last push.
    this.releaseAddress(entry)
    this.flush(entry)
  }

  private flush(entry: HttpSession): void {
    const reader = entry.reader
    if (reader === undefined) return
    if (entry.kind === 'sse') {
      const last = entry.first + entry.buffer.length
      if (entry.streamed < last) {
        const from = Math.max(entry.streamed, entry.first)
        entry.streamed = last
        writeEvents(reader, entry.buffer, from - entry.first, from, last - from)
      }
      if (entry.closed) {
        entry.reader = undefined
        reader.end()
        this.forget(entry)
      }
      return
    }
    if (entry.buffer.length > 0 || entry.closed) this.answerPoll(entry)
  }

  /** Answers the held poll (with what is buffered, possibly nothing). */
  private answerPoll(entry: HttpSession): void {
    const reader = entry.reader
    if (reader === undefined) return
    entry.reader = undefined
    this.writePoll(entry, reader)
  }

  private writePoll(entry: HttpSession, response: TransportResponse): void {
    // Envelopes are JSON already: the body is built by joining them, no parse and re-encode.
    const body = `{"first":${entry.first},"messages":[${entry.buffer.join(',')}]}`
    // With its length in the head, node:http sends head and body as one string (a plain body,
    // as any client and proxy reads most simply); without, it frames the body as chunks (size,
    // CRLF, body, CRLF, then a last chunk). The head is an array, which node:http copies as is;
    // writeHead reads it before it returns, so one array serves every answer.
    POLL_HEAD[5] = String(Buffer.byteLength(body))
    response.writeHead(200, POLL_HEAD).end(body)
    // A closed session's last messages are delivered once; a lost response leaves the client
    // with "reconnect" on its next poll, and recovery fills in what it missed.
    if (entry.closed) this.forget(entry)
  }

  private acknowledge(entry: HttpSession, ack: number): boolean {
    const last = entry.first + entry.buffer.length - 1
    // Below what is held is fine (a request that left before a newer one acknowledged more);
    // beyond what was sent is a client bug.
    if (!Number.isSafeInteger(ack) || ack < 0 || ack > last) return false
    const drop = Math.min(entry.buffer.length, ack - entry.first + 1)
    if (drop > 0) {
      for (let i = 0; i < drop; i++) entry.queuedBytes -= entry.buffer[i]!.length
      entry.buffer = drop === entry.buffer.length ? [] : entry.buffer.slice(drop)
      entry.first = ack + 1
    }
    return true
  }

  private forget(entry: HttpSession): void {
    entry.closed = true
    entry.transport.entry = undefined
    const reader = entry.reader
    entry.reader = undefined
    if (reader !== undefined) {
      if (reader.headersSent) reader.end()
      else answer(reader, 404, RECONNECT)
    }
    entry.buffer = []
    entry.queuedBytes = 0
    this.sessions.delete(entry.id)
    this.releaseAddress(entry)
  }

  private releaseAddress(entry: HttpSession): void {
    if (!entry.countsForAddress) return
    entry.countsForAddress = false
    const count = (this.sessionsPerIp.get(entry.ip) ?? 1) - 1
    if (count > 0) this.sessionsPerIp.set(entry.ip, count)
    else this.sessionsPerIp.delete(entry.ip)
  }

  private tick(now: number): void {
    this.clock = now
    const heartbeat = now - this.lastHeartbeat >= this.sseHeartbeat
    if (heartbeat) this.lastHeartbeat = now
    for (const entry of this.sessions.values()) {
      if (entry.reader !== undefined) {
        entry.lastRequestAt = now
        entry.touched = false
        // A comment line: EventSource ignores it, proxies see traffic.
        if (entry.kind === 'sse') {
          if (heartbeat) entry.reader.write(':\n\n')
        } else if (now >= entry.pollDeadline) this.answerPoll(entry)
        continue
      }
      if (entry.touched) {
        // A request came since the last check: the session's idle time starts now (a period
        // late at most, so a session never ends before sessionTimeout without a request).
        entry.touched = false
        entry.lastRequestAt = now
        continue
      }
      if (now - entry.lastRequestAt >= this.sessionTimeout) {
        entry.session?.transportClosed()
        this.forget(entry)
      }
    }
  }

  // ---------------------------------------------------------------- requests

  private open(request: TransportRequest, response: TransportResponse): void {
    if (request.method !== 'POST') return void answer(response, 405, { error: 'open takes POST' })
    // A custom header makes a cross-origin open a preflighted request, refused unless CORS allows.
    const kind = request.headers['x-rally-transport']
    if (kind !== 'sse' && kind !== 'long-polling')
      return void answer(response, 400, { error: 'X-Rally-Transport must be sse or long-polling' })
    if (!this.kinds.has(kind)) return void answer(response, 404, { error: `${kind} is not served here` })
    if (this.realtime.busOutage.refusing) {
      // Cut off from the broker (bus-outage.ts): another node can serve this client.
      response.setHeader('retry-after', BUS_OUTAGE_RETRY_AFTER)
      return void answer(response, 503, { error: BUS_OUTAGE_REASON, advice: 'reconnect' })
    }
    const ip = this.clientAddress(request)
    const count = this.sessionsPerIp.get(ip) ?? 0
    if (count >= this.maxSessionsPerIp)
      return void answer(response, 429, { error: 'too many sessions from this address' })
    // Drain (and ignore) a body: open carries none.
    request.resume()
    const transport = new HttpSessionTransport(kind, this)
    const entry: HttpSession = {
      // 128 random bits each: neither can be guessed from another session's.
      id: this.sessionPrefix + randomBytes(16).toString('base64url'),
      token: randomBytes(16).toString('base64url'),
      kind,
      ip,
      transport,
      session: undefined,
      buffer: [],
      first: 1,
      queuedBytes: 0,
      reader: undefined,
      streamed: 1,
      pollDeadline: 0,
      lastRequestAt: Date.now(),
      touched: false,
      countsForAddress: true,
      closed: false,
    }
    transport.entry = entry
    this.sessions.set(entry.id, entry)
    this.sessionsPerIp.set(ip, count + 1)
    entry.session = this.realtime.openSession(transport, request)
    answer(response, 200, { session: entry.id, token: entry.token })
  }

  private lookup(params: URLSearchParams, response: TransportResponse): HttpSession | undefined {
    const entry = this.sessions.get(params.get('session') ?? '')
    if (entry === undefined || (entry.closed && entry.buffer.length === 0)) {
      answer(response, 404, RECONNECT)
      return undefined
    }
    entry.touched = true
    return entry
  }

  private read(
    request: TransportRequest,
    response: TransportResponse,
    params: URLSearchParams,
    route: 'sse' | 'poll',
  ): void {
    if (request.method !== 'GET') return void answer(response, 405, { error: `${route} takes GET` })
    const entry = this.lookup(params, response)
    if (entry === undefined) return
    const kind: HttpTransportKind = route === 'sse' ? 'sse' : 'long-polling'
    if (entry.kind !== kind)
      return void answer(response, 400, { error: `this session was opened for ${entry.kind}` })
    const ackText =
      route === 'sse'
        ? ((request.headers['last-event-id'] as string | undefined) ?? params.get('lastEventId') ?? undefined)
        : (params.get('ack') ?? undefined)
    const ack = ackText === undefined || ackText === '' ? entry.first - 1 : Number(ackText)
    if (!this.acknowledge(entry, ack))
      return void answer(response, 400, { error: `acknowledgement ${ackText} is outside what was sent` })
    // One reader per session: the newer request wins and the older one is told why it ended.
    const previous = entry.reader
    entry.reader = undefined
    if (previous !== undefined) {
      if (previous.headersSent) {
        previous.end('event: replaced\ndata: another reader took this session\n\n')
      } else answer(previous, 409, { error: 'another poll took this session' })
    }
    if (route === 'poll' && (entry.buffer.length > 0 || entry.closed)) {
      // Answered now: never held, so no reader to free if the client goes away.
      this.writePoll(entry, response)
      return
    }
    ;(response as ReaderResponse)[READER_OF] = entry
    response.on('close', readerClosed)
    entry.reader = response
    if (route === 'sse') {
      response.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        // no-transform: a proxy must not compress or rewrite the stream (compression buffers).
        'cache-control': 'no-cache, no-transform',
        // nginx: pass each event on at once instead of buffering the response.
        'x-accel-buffering': 'no',
      })
      response.socket?.setNoDelay(true)
      // The ready event has no id (it does not move Last-Event-ID) and proves the first bytes
      // got through: a client that never sees it is behind a buffering proxy.
      response.write('retry: 1000\n\nevent: ready\ndata: {}\n\n')
      entry.streamed = entry.first
      this.flush(entry)
      return
    }
    entry.pollDeadline = this.clock + this.pollTimeout
  }

  /** The client is leaving (as a WebSocket close): presence and subscriptions end now, not at expiry. */
  private closeSession(
    request: TransportRequest,
    response: TransportResponse,
    params: URLSearchParams,
  ): void {
    request.resume()
    if (request.method !== 'POST') return void answer(response, 405, { error: 'close takes POST' })
    const entry = this.lookup(params, response)
    if (entry === undefined) return
    if (request.headers['x-rally-token'] !== entry.token)
      return void answer(response, 403, { error: 'missing or wrong X-Rally-Token' })
    entry.session?.transportClosed()
    this.forget(entry)
    response.writeHead(204).end()
  }

  private receive(request: TransportRequest, response: TransportResponse, params: URLSearchParams): void {
    if (request.method !== 'POST') return void answer(response, 405, { error: 'send takes POST' })
    const entry = this.lookup(params, response)
    if (entry === undefined) return void request.resume()
    // The session's token in a header: a cross-site form or image cannot set one, and a
    // cross-origin fetch that does is preflighted, so cookies alone never let another site post.
    if (request.headers['x-rally-token'] !== entry.token) {
      request.resume()
      return void answer(response, 403, { error: 'missing or wrong X-Rally-Token' })
    }
    const declared = Number(request.headers['content-length'] ?? 0)
    if (declared > this.maxBodySize) {
      request.resume()
      return void answer(response, 413, { error: `bodies are limited to ${this.maxBodySize} bytes` })
    }
    // Rally's own port has read the body already (bounded by the same maxBodySize).
    if (request instanceof RallyHttpRequest) return void this.deliver(entry, request.body, response, params)
    const incoming = request as IncomingMessage
    const chunks: Buffer[] = []
    let size = 0
    let refused = false
    incoming.on('data', (chunk: Buffer) => {
      if (refused) return
      size += chunk.length
      if (size > this.maxBodySize) {
        refused = true
        answer(response, 413, { error: `bodies are limited to ${this.maxBodySize} bytes` })
        return
      }
      chunks.push(chunk)
    })
    incoming.on('error', () => response.destroy())
    incoming.on('end', () => {
      if (!refused) this.deliver(entry, Buffer.concat(chunks, size), response, params)
    })
  }

  /** A POST's body: its envelopes go to the session, in order, and the POST is answered 204. */
  private deliver(
    entry: HttpSession,
    body: Buffer,
    response: TransportResponse,
    params: URLSearchParams,
  ): void {
    let envelopes: unknown
    try {
      envelopes = JSON.parse(body.toString('utf8'))
    } catch {
      return void answer(response, 400, { error: 'the body must be a JSON array of envelopes' })
    }
    if (!Array.isArray(envelopes) || envelopes.some((e) => e === null || typeof e !== 'object'))
      return void answer(response, 400, { error: 'the body must be a JSON array of envelopes' })
    const ackText = params.get('ack')
    if (ackText !== null && !this.acknowledge(entry, Number(ackText)))
      return void answer(response, 400, { error: `acknowledgement ${ackText} is outside what was sent` })
    const session = entry.session
    const now = Date.now()
    // Re-encoded one by one: the session measures and decodes each envelope as a WebSocket
    // message, so the same limits (maxMessageSize → 113) apply.
    if (session !== undefined)
      for (const envelope of envelopes) session.receive(JSON.stringify(envelope), now)
    response.writeHead(204).end()
  }

  private applyCors(request: TransportRequest, response: TransportResponse): boolean {
    if (this.cors === undefined) return true
    const origin = request.headers.origin
    if (origin === undefined) return true
    const { origins, credentials } = this.cors
    const allowed =
      origins === '*' ? true : typeof origins === 'function' ? origins(origin) : origins.includes(origin)
    if (!allowed) return false
    response.setHeader('access-control-allow-origin', origins === '*' && !credentials ? '*' : origin)
    response.setHeader('vary', 'Origin')
    if (credentials) response.setHeader('access-control-allow-credentials', 'true')
    if (request.method === 'OPTIONS') {
      response.setHeader('access-control-allow-methods', 'GET, POST')
      response.setHeader(
        'access-control-allow-headers',
        'content-type, x-rally-token, x-rally-transport, last-event-id',
      )
      response.setHeader('access-control-max-age', '600')
    }
    return true
  }
}

/** A held reader's session, on the response itself: one 'close' listener serves every reader. */
const READER_OF = Symbol('rally.readerOf')
type ReaderResponse = TransportResponse & { [READER_OF]?: HttpSession }

/**
 * A held poll or stream ended (answered, replaced, or its client went away). When it is still
 * the session's reader, the client left: the session is free for its next request, and its idle
 * time counts from now.
 */
function readerClosed(this: ReaderResponse): void {
  const entry = this[READER_OF]
  if (entry === undefined || entry.reader !== this) return
  entry.reader = undefined
  entry.touched = true
}

/** A poll's answer head; index 5 is set to the body's length before each use. */
const POLL_HEAD = ['content-type', 'application/json', 'cache-control', 'no-store', 'content-length', '0']

/**
 * Envelopes as UTF-8 bytes, by the string itself: a publication is one string delivered to every
 * session, so a fan-out encodes it once and each stream copies its bytes, where writing each
 * stream's events as a string made every stream encode them all again (that encoding and the
 * flattening of the string before it were most of an SSE fan-out's time). Cleared at the end of
 * each turn's flush; bounded for the flushes that happen outside it.
 */
const encodedEnvelopes = new Map<string, Buffer>()
const MAX_ENCODED_ENVELOPES = 4096

function encodedEnvelope(envelope: string): Buffer {
  let bytes = encodedEnvelopes.get(envelope)
  if (bytes === undefined) {
    if (encodedEnvelopes.size >= MAX_ENCODED_ENVELOPES) encodedEnvelopes.clear()
    bytes = Buffer.from(envelope, 'utf8')
    encodedEnvelopes.set(envelope, bytes)
  }
  return bytes
}

/**
 * Writes `count` envelopes of `buffer` from index `at` as SSE events whose ids start at `firstId`
 * (`id: N`, `data: envelope`, blank line), as one buffer: the ids and field names in ASCII, each
 * envelope's bytes copied from its shared encoding.
 */
function writeEvents(
  response: TransportResponse,
  buffer: readonly string[],
  at: number,
  firstId: number,
  count: number,
): void {
  const prefixes: string[] = new Array(count)
  const bodies: Buffer[] = new Array(count)
  let size = 0
  for (let i = 0; i < count; i++) {
    const prefix = `id: ${firstId + i}\ndata: `
    const body = encodedEnvelope(buffer[at + i]!)
    prefixes[i] = prefix
    bodies[i] = body
    size += prefix.length + body.length + 2
  }
  const socket = writesChunksItself(response) ? response.socket! : undefined
  // RFC 9112 7.1: a chunk is its size in hex, CRLF, the data, CRLF.
  const head = socket === undefined ? '' : `${size.toString(16)}\r\n`
  const bytes = Buffer.allocUnsafe(head.length + size + (socket === undefined ? 0 : 2))
  let offset = bytes.write(head, 0, 'latin1')
  for (let i = 0; i < count; i++) {
    offset += bytes.write(prefixes[i]!, offset, 'latin1')
    bytes.set(bodies[i]!, offset)
    offset += bodies[i]!.length
    bytes[offset++] = 0x0a
    bytes[offset++] = 0x0a
  }
  if (socket === undefined) {
    response.write(bytes)
    return
  }
  bytes[offset++] = 0x0d
  bytes[offset] = 0x0a
  socket.write(bytes)
}

/**
 * Whether a piece of an SSE stream may be framed here and handed to the socket in one write. On a
 * chunked HTTP/1.1 response (every stream whose headers are out, unless the client spoke
 * HTTP/1.0), `response.write` would hand a piece over as four (size, CRLF, data, CRLF) and defer
 * an uncork, which, once per stream and publication, was most of a fan-out's cost. The headers
 * and any earlier piece went to the same socket before, so the order holds; the response's own
 * `end()` adds the last chunk. chunkedEncoding is node:http's own flag (false on HTTP/1.0, absent
 * on HTTP/2's responses). A response pipelined behind another one has no socket until that one
 * is done: its writes wait in the response, and so do these.
 */
function writesChunksItself(response: TransportResponse): boolean {
  const socket = response.socket
  return (
    (response as { chunkedEncoding?: boolean }).chunkedEncoding === true &&
    socket !== null &&
    response.headersSent &&
    !response.writableEnded &&
    !socket.destroyed
  )
}

/**
 * @internal What a Rally server on its own port needs to serve `transports` (realtime.listen,
 * listenTransports): its plain requests go to them, bodies bounded as theirs, others get 404.
 */
export function ownPortTransports(
  transports: HttpTransports,
): Required<Pick<RealtimeServerOptions, 'request' | 'maxRequestBodySize'>> {
  return {
    maxRequestBodySize: transports.maxBodySize,
    request(request, response) {
      if (!transports.handle(request, response)) answer(response, 404, { error: 'not found' })
    },
  }
}

function answer(response: TransportResponse, status: number, body: object | string): void {
  if (response.headersSent) {
    response.end()
    return
  }
  const text = typeof body === 'string' ? body : JSON.stringify(body)
  response.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(text)
}

/**
 * Serves SSE and long polling (`handle`) and WebSocket upgrades at the same base path of a
 * node:http server; requests that are neither go to `fallback` (default 404).
 */
export function attachTransports(
  // biome-ignore lint/suspicious/noExplicitAny: any realtime, whatever its channel and RPC types
  realtime: Realtime<any, any>,
  httpServer: HttpServer,
  options: HttpTransportOptions = {},
): HttpTransports {
  const transports = new HttpTransports(realtime, options)
  realtime.attach(httpServer, { path: transports.path })
  httpServer.on('request', (request: TransportRequest, response: TransportResponse) => {
    if (!transports.handle(request, response) && httpServer.listenerCount('request') === 1)
      answer(response, 404, { error: 'not found' })
  })
  httpServer.on('close', () => transports.close())
  return transports
}

export interface ListenTransportsOptions extends HttpTransportOptions {
  port: number
  host?: string
  /** Options of the Rally server underneath (tls, limits, maxConnections...). */
  server?: Omit<RealtimeServerOptions, 'port' | 'host' | 'path' | 'request' | 'maxRequestBodySize'>
}

/**
 * Every realtime transport at `path` on Rally's own port: WebSocket upgrades, and SSE and long
 * polling served by Rally's own HTTP/1.1 handling (src/server/own-http.ts) rather than node:http,
 * which is most of a poll's cost there. Other requests get 404. `close()` ends the transports'
 * sessions' held requests and the server.
 */
export async function listenTransports(
  // biome-ignore lint/suspicious/noExplicitAny: any realtime, whatever its channel and RPC types
  realtime: Realtime<any, any>,
  options: ListenTransportsOptions,
): Promise<{
  server: RallyServer<RealtimeConnection>
  transports: HttpTransports
  port: number
  close(): Promise<void>
}> {
  const { port, host, server: serverOptions, ...transportOptions } = options
  const transports = new HttpTransports(realtime, transportOptions)
  const server = await realtime.listen({
    ...serverOptions,
    port,
    ...(host === undefined ? {} : { host }),
    path: transports.path,
    transports: false,
    ...ownPortTransports(transports),
  })
  return {
    server,
    transports,
    port: server.port ?? port,
    close() {
      transports.close()
      return server.close()
    },
  }
}
