/**
 * Plain HTTP/1.1 requests on Rally's own port (the `request` handler of createServer): what the
 * real-time layer's SSE and long-polling routes need, without node:http. A long poll is a request
 * and an answer per few messages, so node:http's per-request machinery (its parser's callbacks,
 * IncomingMessage and ServerResponse streams, a timer reset per request, a head and a body as
 * two buffers in a writev) was most of a poll's cost; here a request is one parsed head (the
 * same bounded parser as a WebSocket handshake's), and an answer one write of one string.
 *
 * What is served (RFC 9112): keep-alive connections (HTTP/1.1 by default, HTTP/1.0 closed after
 * each answer), pipelined requests answered in order (reading stops while one is answered, so a
 * peer cannot queue work), bodies by Content-Length or chunked, read in full before the handler
 * runs and bounded by `maxBodySize` (413), `Expect: 100-continue`, HEAD (the head without the
 * body), answers framed by Content-Length when the whole body is given to `end()`, chunked when
 * written piece by piece (close-delimited for HTTP/1.0). A request with `Upgrade` on a
 * connection goes to the WebSocket handshake with what followed it.
 *
 * RallyHttpResponse has the part of node:http's ServerResponse that a handler of this kind
 * uses (writeHead, setHeader, write, end, headersSent, writableEnded, 'close'), so code written
 * against ServerResponse for these routes runs on both.
 */
import { Buffer } from 'node:buffer'
import { EventEmitter } from 'node:events'
import { STATUS_CODES } from 'node:http'
import type { Socket } from 'node:net'
import { HandshakeError, type HttpHead, HttpHeadParser, type Limits } from '../protocol/index.js'
import { ParsedUpgradeRequest, type UpgradeRequest } from './upgrade-request.js'

/** A request on Rally's own port, its body read in full. */
export class RallyHttpRequest extends ParsedUpgradeRequest {
  /** The whole body (empty without one). */
  body: Buffer = EMPTY
  /** No-op: the body is already read (for code written for IncomingMessage). */
  resume(): this {
    return this
  }
}

export type HttpRequestHandler = (request: RallyHttpRequest, response: RallyHttpResponse) => void

/** What an HTTP connection needs from the port it came from. */
export interface HttpConnectionHost {
  readonly handler: HttpRequestHandler
  readonly limits: Limits
  readonly maxBodySize: number
  /** Ms for a whole request (head and body) once its first byte came; also the keep-alive idle time. */
  readonly requestTimeout: number
  /** Bytes read past a request being answered (pipelined requests) before reading pauses. */
  readonly maxPipelined: number
  /** The port is closing: answers say `connection: close`, idle connections end. */
  readonly closing: boolean
  /** A request that asks for a WebSocket: the socket is the handshake's from here. */
  upgrade(request: UpgradeRequest, socket: Socket, head: Buffer): void
  reject(socket: Socket, error: HandshakeError): void
  reportError(error: unknown): void
  connectionClosed(connection: HttpConnection): void
}

const EMPTY = Buffer.alloc(0)
const CONTINUE = 'HTTP/1.1 100 Continue\r\n\r\n'
/** Longest chunk-size line (with extensions) and trailer section accepted in a chunked body. */
const MAX_CHUNK_LINE = 256

/** Where a connection is: reading a head, reading a body, or waiting for the answer. */
enum Phase {
  Head,
  Body,
  Answering,
}

/** Reading a chunked body (RFC 9112 7.1): the size line, the data, the CRLF after it, trailers. */
enum ChunkState {
  Size,
  Data,
  DataEnd,
  Trailers,
}

/** One keep-alive connection: requests read one after another, each answered before the next. */
export class HttpConnection {
  private phase = Phase.Head
  private parser: HttpHeadParser
  /** Bytes read past the current request, kept until its answer is done (pipelining). */
  private pending: Buffer = EMPTY
  private request: RallyHttpRequest | undefined
  private response: RallyHttpResponse | undefined
  private keepAlive = true
  // The body being read.
  private bodyChunks: Buffer[] = []
  private bodySize = 0
  /** Bytes of body still to come (Content-Length), or -1 for chunked. */
  private bodyLeft = 0
  private chunkState = ChunkState.Size
  private chunkLeft = 0
  private chunkLine = ''
  /**
   * When the request being read (or, between requests, the next one) must be complete, by
   * Date.now(); 0 while one is answered. The port checks every connection's deadline once a
   * second: one interval for all of them, rather than a timer set and cleared per request.
   */
  deadline = 0
  private closed = false

  constructor(
    readonly socket: Socket,
    private readonly host: HttpConnectionHost,
  ) {
    this.parser = new HttpHeadParser(host.limits)
    ;(socket as HttpSocket)[kConnection] = this
    socket.on('data', onConnectionData)
    socket.on('close', onConnectionClose)
    socket.on('error', ignoreError)
  }

  /** The first request's head, parsed by the port, and the bytes after it. */
  start(head: HttpHead, rest: Buffer): void {
    this.deadline = Date.now() + this.host.requestTimeout
    this.beginRequest(head, rest)
    if (!this.closed) this.socket.resume()
  }

  /** No answer in progress: between requests, or reading one that has not come in full. */
  get idle(): boolean {
    return this.phase !== Phase.Answering
  }

  /** Ends the connection now (the port is closing and it has no answer in progress). */
  destroy(): void {
    this.socket.destroy()
  }

  /** @internal Bytes from the socket. */
  receive(chunk: Buffer): void {
    if (this.phase === Phase.Answering) {
      // A pipelined request (or the start of the next): kept for after this answer. Reading goes
      // on meanwhile, so that a client that goes away is seen at once (a held poll's client),
      // up to a bound: beyond it reading pauses, and a client cannot queue work without limit.
      this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk])
      if (this.pending.length > this.host.maxPipelined) this.socket.pause()
      return
    }
    this.consume(chunk)
  }

  private consume(chunk: Buffer): void {
    while (chunk.length > 0 && !this.closed) {
      if (this.phase === Phase.Answering) {
        this.pending = chunk
        return
      }
      if (this.phase === Phase.Body) {
        chunk = this.readBody(chunk)
        continue
      }
      // A new request's first bytes: it has requestTimeout from now to come in full.
      if (!this.parser.started) this.deadline = Date.now() + this.host.requestTimeout
      let result: ReturnType<HttpHeadParser['push']>
      try {
        result = this.parser.push(chunk)
      } catch (error) {
        this.refuse(error instanceof HandshakeError ? error : new HandshakeError(400, 'Malformed request'))
        return
      }
      if (result === undefined) return
      const rest = result.rest
      this.beginRequest(result.head, Buffer.from(rest.buffer, rest.byteOffset, rest.length))
      return
    }
  }

  private beginRequest(head: HttpHead, rest: Buffer): void {
    this.parser = new HttpHeadParser(this.host.limits)
    const [method, url, version] = head.startLine
    if (version !== 'HTTP/1.1' && version !== 'HTTP/1.0') {
      this.refuse(
        version.startsWith('HTTP/')
          ? new HandshakeError(505, 'HTTP version not supported')
          : new HandshakeError(400, 'Malformed HTTP request line'),
      )
      return
    }
    const fields = head.fields
    if (fields.upgrade !== undefined) {
      // A WebSocket opening on a kept-alive connection: the handshake takes the socket.
      this.detach()
      this.socket.removeListener('error', ignoreError)
      this.socket.pause()
      this.host.upgrade(
        new ParsedUpgradeRequest(method, url, version.slice(5), fields, this.socket),
        this.socket,
        rest,
      )
      return
    }
    // RFC 9112 3.2: a server MUST answer 400 to an HTTP/1.1 request without exactly one Host.
    if (version === 'HTTP/1.1' && fields.host?.length !== 1)
      return void this.refuse(new HandshakeError(400, 'An HTTP/1.1 request needs one Host header'))
    const connection = fields.connection?.join(',').toLowerCase() ?? ''
    this.keepAlive = version === 'HTTP/1.1' ? !/(^|[\s,])close([\s,]|$)/.test(connection) : false
    const request = new RallyHttpRequest(method, url, version.slice(5), fields, this.socket)
    this.request = request
    this.bodyChunks = []
    this.bodySize = 0
    // RFC 9112 6.3: Transfer-Encoding decides the framing; with Content-Length as well, a
    // request may be read two ways by two servers (smuggling), so it is refused.
    const transferEncoding = fields['transfer-encoding']
    const contentLength = fields['content-length']
    if (transferEncoding !== undefined) {
      if (contentLength !== undefined)
        return void this.refuse(new HandshakeError(400, 'Both Transfer-Encoding and Content-Length'))
      if (transferEncoding.join(',').trim().toLowerCase() !== 'chunked')
        return void this.refuse(new HandshakeError(501, 'Only the chunked transfer coding is understood'))
      this.bodyLeft = -1
      this.chunkState = ChunkState.Size
      this.chunkLine = ''
    } else if (contentLength !== undefined) {
      // Every value the same run of digits (RFC 9110 8.6: a list of equal values may be read as one).
      const values = contentLength
        .join(',')
        .split(',')
        .map((value) => value.trim())
      if (!values.every((value) => /^\d{1,15}$/.test(value) && value === values[0]))
        return void this.refuse(new HandshakeError(400, 'Malformed Content-Length'))
      this.bodyLeft = Number(values[0])
    } else this.bodyLeft = 0
    if (this.bodyLeft > this.host.maxBodySize)
      return void this.refuse(
        new HandshakeError(413, `Request bodies are limited to ${this.host.maxBodySize} bytes`),
      )
    if (this.bodyLeft === 0) {
      this.dispatch(rest)
      return
    }
    // RFC 9110 10.1.1: a client waiting for 100 before sending its body gets it now.
    if (fields.expect?.[0]?.toLowerCase() === '100-continue' && version === 'HTTP/1.1')
      this.socket.write(CONTINUE)
    this.phase = Phase.Body
    if (rest.length > 0) this.consume(rest)
  }

  /** Takes body bytes from `chunk`; returns what follows the body. */
  private readBody(chunk: Buffer): Buffer {
    if (this.bodyLeft >= 0) {
      const take = Math.min(this.bodyLeft, chunk.length)
      this.addBody(chunk.subarray(0, take))
      this.bodyLeft -= take
      // What follows the body is the request's to keep until it is answered (dispatch).
      if (this.bodyLeft === 0) this.dispatch(chunk.subarray(take))
      return EMPTY
    }
    let at = 0
    while (at < chunk.length && this.phase === Phase.Body) {
      if (this.chunkState === ChunkState.Data) {
        const take = Math.min(this.chunkLeft, chunk.length - at)
        if (!this.addBody(chunk.subarray(at, at + take))) return EMPTY
        at += take
        this.chunkLeft -= take
        if (this.chunkLeft === 0) this.chunkState = ChunkState.DataEnd
        continue
      }
      // A line: the size (hex, then extensions after ';'), the CRLF after data, or a trailer.
      const lineEnd = chunk.indexOf(0x0a, at)
      const piece = chunk.toString('latin1', at, lineEnd === -1 ? chunk.length : lineEnd + 1)
      at = lineEnd === -1 ? chunk.length : lineEnd + 1
      this.chunkLine += piece
      if (this.chunkLine.length > MAX_CHUNK_LINE) {
        this.refuse(new HandshakeError(400, 'Malformed chunked body'))
        return EMPTY
      }
      if (lineEnd === -1) break
      const line = this.chunkLine
      this.chunkLine = ''
      if (!line.endsWith('\r\n')) {
        this.refuse(new HandshakeError(400, 'Malformed chunked body'))
        return EMPTY
      }
      if (this.chunkState === ChunkState.DataEnd) {
        if (line !== '\r\n') {
          this.refuse(new HandshakeError(400, 'Malformed chunked body'))
          return EMPTY
        }
        this.chunkState = ChunkState.Size
      } else if (this.chunkState === ChunkState.Size) {
        const size = line.slice(0, -2).split(';')[0]!.trim()
        if (!/^[0-9a-fA-F]{1,8}$/.test(size)) {
          this.refuse(new HandshakeError(400, 'Malformed chunk size'))
          return EMPTY
        }
        this.chunkLeft = Number.parseInt(size, 16)
        this.chunkState = this.chunkLeft === 0 ? ChunkState.Trailers : ChunkState.Data
      } else if (line === '\r\n') {
        // The empty line after the trailers (which are read and dropped): the body is complete.
        this.dispatch(chunk.subarray(at))
        return EMPTY
      }
    }
    return EMPTY
  }

  private addBody(piece: Buffer): boolean {
    if (piece.length === 0) return true
    this.bodySize += piece.length
    if (this.bodySize > this.host.maxBodySize) {
      this.refuse(new HandshakeError(413, `Request bodies are limited to ${this.host.maxBodySize} bytes`))
      return false
    }
    this.bodyChunks.push(piece)
    return true
  }

  /** The request is complete: reading stops until it is answered, and the handler runs. */
  private dispatch(rest: Buffer): void {
    const request = this.request!
    this.deadline = 0
    if (this.bodySize > 0)
      request.body =
        this.bodyChunks.length === 1 ? this.bodyChunks[0]! : Buffer.concat(this.bodyChunks, this.bodySize)
    this.bodyChunks = []
    this.phase = Phase.Answering
    this.pending = rest
    const response = new RallyHttpResponse(this, request.method === 'HEAD', request.httpVersion === '1.0')
    this.response = response
    try {
      this.host.handler(request, response)
    } catch (error) {
      this.host.reportError(error)
      if (!response.headersSent)
        response.writeHead(500, { 'content-type': 'text/plain' }).end('Internal error\n')
      else response.destroy()
    }
  }

  /** @internal Whether the answer being written leaves the connection open. */
  get persistent(): boolean {
    return this.keepAlive && !this.host.closing
  }

  /** @internal The answer is written in full: the next request, or the end. */
  answered(response: RallyHttpResponse, persistent: boolean): void {
    if (response !== this.response || this.closed) return
    this.response = undefined
    this.request = undefined
    if (!persistent) {
      this.socket.end()
      return
    }
    if (this.pending.length > 0) {
      // Pipelined requests are read on the next turn, not from inside this answer's `end()`:
      // a handler that answers at once would otherwise go one call deeper per request. Until
      // then the connection stays in Answering, so bytes that arrive meanwhile queue behind.
      setImmediate(readPipelined, this)
      return
    }
    this.nextRequest()
  }

  /** @internal The requests that came while the last one was answered. */
  readPending(): void {
    if (this.closed) return
    const pending = this.pending
    this.pending = EMPTY
    this.nextRequest()
    this.consume(pending)
  }

  private nextRequest(): void {
    this.phase = Phase.Head
    // The keep-alive idle time: the next request must have come in full by then.
    this.deadline = Date.now() + this.host.requestTimeout
    if (this.socket.isPaused()) this.socket.resume()
  }

  private refuse(error: HandshakeError): void {
    this.detach()
    this.host.reject(this.socket, error)
  }

  /** The connection is no longer this module's (refused, upgraded, or closed). */
  private detach(): void {
    if (this.closed) return
    this.closed = true
    this.deadline = 0
    this.socket.removeListener('data', onConnectionData)
    this.socket.removeListener('close', onConnectionClose)
    ;(this.socket as HttpSocket)[kConnection] = undefined
    this.host.connectionClosed(this)
  }

  /** @internal The socket closed: an answer in progress is told (its client went away). */
  socketClosed(): void {
    const response = this.response
    this.response = undefined
    this.detach()
    response?.gone()
  }

  /** @internal No complete request by the deadline: 408 if one had begun, else the idle connection ends. */
  timedOut(): void {
    this.deadline = 0
    if (this.phase === Phase.Answering || this.closed) return
    const begun = this.phase === Phase.Body || this.parser.started
    if (begun) this.refuse(new HandshakeError(408, 'Request timeout'))
    else {
      this.detach()
      this.socket.end()
    }
  }
}

const kConnection = Symbol('rally.httpConnection')
type HttpSocket = Socket & { [kConnection]?: HttpConnection | undefined }

function onConnectionData(this: HttpSocket, chunk: Buffer): void {
  this[kConnection]?.receive(chunk)
}

function readPipelined(connection: HttpConnection): void {
  connection.readPending()
}

function onConnectionClose(this: HttpSocket): void {
  this[kConnection]?.socketClosed()
}

function ignoreError(): void {
  // A reset from the peer; 'close' follows and ends the connection.
}

/** Header values must not carry CR, LF or NUL (a value could otherwise add headers of its own). */
const INVALID_VALUE = /[\r\n\0]/
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/

/** The Date header (RFC 9110 6.6.1: an origin server with a clock sends one), made once a second. */
let dateSecond = 0
let dateLine = ''
function currentDateLine(): string {
  const now = Date.now()
  const second = Math.floor(now / 1000)
  if (second !== dateSecond) {
    dateSecond = second
    dateLine = `date: ${new Date(now).toUTCString()}\r\n`
  }
  return dateLine
}

type HeaderValue = string | number | readonly string[]

/**
 * The answer to a RallyHttpRequest. The head is written with the first piece of body (or at
 * `end()`): an answer given whole to `end()` is one write with its Content-Length.
 */
export class RallyHttpResponse extends EventEmitter {
  statusCode = 200
  statusMessage: string | undefined
  /** True once writeHead was called or anything written. */
  headersSent = false
  writableEnded = false
  private readonly connection: HttpConnection
  private readonly headOnly: boolean
  private readonly http10: boolean
  /** Headers by lower-case name: [name, value]. */
  private headers: Map<string, [string, HeaderValue]> | undefined
  /** Headers given to writeHead as a flat list, kept as given. */
  private headList: readonly string[] | undefined
  /** The head is on the wire; how the body is framed from there. */
  private framing: 'none' | 'chunked' | 'close' | 'length' | undefined
  private closedEmitted = false
  private gone_ = false

  constructor(connection: HttpConnection, headOnly: boolean, http10: boolean) {
    super()
    this.connection = connection
    this.headOnly = headOnly
    this.http10 = http10
  }

  get socket(): Socket | null {
    return this.gone_ ? null : this.connection.socket
  }

  /** Bytes written and not yet taken by the kernel. */
  get writableLength(): number {
    return this.connection.socket.writableLength
  }

  setHeader(name: string, value: HeaderValue): this {
    if (this.framing !== undefined) throw new Error('Cannot set headers after they are sent')
    checkHeader(name, value)
    this.headers ??= new Map()
    this.headers.set(name.toLowerCase(), [name, value])
    return this
  }

  getHeader(name: string): HeaderValue | undefined {
    return this.headers?.get(name.toLowerCase())?.[1]
  }

  removeHeader(name: string): void {
    this.headers?.delete(name.toLowerCase())
  }

  /** Headers as an object, or as a flat [name, value, ...] list, as ServerResponse takes them. */
  writeHead(status: number, headers?: Record<string, HeaderValue | undefined> | readonly string[]): this {
    if (this.framing !== undefined) throw new Error('Cannot write the head twice')
    if (!Number.isInteger(status) || status < 200 || status > 999)
      throw new RangeError(`Invalid status code ${status}`)
    this.statusCode = status
    if (Array.isArray(headers)) {
      for (let i = 0; i < headers.length; i += 2) checkHeader(headers[i]!, headers[i + 1]!)
      this.headList = headers.slice()
    } else if (headers !== undefined) {
      for (const [name, value] of Object.entries(headers))
        if (value !== undefined) this.setHeader(name, value)
    }
    this.headersSent = true
    return this
  }

  write(chunk: string | Uint8Array): boolean {
    if (this.writableEnded) throw new Error('write after end')
    if (this.gone_) return false
    if (this.framing === undefined) this.sendHead(undefined)
    return this.writeBody(chunk)
  }

  end(chunk?: string | Uint8Array): this {
    if (this.writableEnded) return this
    this.writableEnded = true
    this.headersSent = true
    if (this.gone_) return this
    const socket = this.connection.socket
    if (this.framing === undefined) {
      // The whole answer at once: one write, framed by its length.
      const body = chunk ?? ''
      const length = typeof body === 'string' ? Buffer.byteLength(body) : body.length
      const head = this.sendHead(length)
      if (this.headOnly || length === 0 || this.framing === 'none') socket.write(head, 'latin1')
      else if (typeof body === 'string') socket.write(head + body, 'utf8')
      else socket.write(Buffer.concat([Buffer.from(head, 'latin1'), body]))
    } else {
      if (chunk !== undefined && (typeof chunk === 'string' ? chunk.length : chunk.length) > 0)
        this.writeBody(chunk)
      // RFC 9112 7.1: the last chunk (size 0) and the empty trailer section.
      if (this.framing === 'chunked' && !this.headOnly) socket.write('0\r\n\r\n', 'latin1')
    }
    const persistent = this.framing !== 'close' && this.connection.persistent
    this.finish(persistent)
    return this
  }

  /** Ends the connection (and with it the answer). */
  destroy(): this {
    if (!this.gone_) this.connection.socket.destroy()
    return this
  }

  /** @internal The socket closed before the answer was done. */
  gone(): void {
    this.gone_ = true
    this.emitClose()
  }

  private finish(persistent: boolean): void {
    this.emit('finish')
    this.emitClose()
    this.connection.answered(this, persistent)
  }

  private emitClose(): void {
    if (this.closedEmitted) return
    this.closedEmitted = true
    this.emit('close')
  }

  /** Writes the head; `length` is the body's when it is known whole. Returns the head (not yet written) when length is given. */
  private sendHead(length: number | undefined): string {
    const status = this.statusCode
    let head = `HTTP/1.1 ${status} ${this.statusMessage ?? STATUS_CODES[status] ?? 'Unknown'}\r\n`
    let hasLength = false
    let hasDate = false
    // RFC 9110 6.4.1: 1xx, 204 and 304 answers have no body, and so no framing (8.6: a 204 has
    // no Content-Length); whatever the handler gave as a body is not sent.
    const bodiless = status === 204 || status === 304 || status < 200
    const add = (name: string, value: HeaderValue) => {
      const lower = name.toLowerCase()
      // The framing and the connection's fate are this module's (RFC 9112 6.1: not both).
      if (lower === 'transfer-encoding' || lower === 'connection' || lower === 'keep-alive') return
      if (lower === 'content-length') {
        if (length === undefined || bodiless) return
        hasLength = true
      } else if (lower === 'date') hasDate = true
      if (typeof value === 'object') for (const each of value) head += `${name}: ${each}\r\n`
      else head += `${name}: ${value}\r\n`
    }
    if (this.headers !== undefined) for (const [name, value] of this.headers.values()) add(name, value)
    const list = this.headList
    if (list !== undefined) for (let i = 0; i < list.length; i += 2) add(list[i]!, list[i + 1]!)
    if (!hasDate) head += currentDateLine()
    let framing: 'none' | 'chunked' | 'close' | 'length'
    if (bodiless) framing = 'none'
    else if (length !== undefined) {
      framing = 'length'
      if (!hasLength) head += `content-length: ${length}\r\n`
    } else framing = this.http10 ? 'close' : 'chunked'
    if (framing === 'chunked') head += 'transfer-encoding: chunked\r\n'
    this.framing = framing
    const persistent = framing !== 'close' && this.connection.persistent
    if (!persistent) head += 'connection: close\r\n'
    head += '\r\n'
    this.headersSent = true
    if (length === undefined) this.connection.socket.write(head, 'latin1')
    return head
  }

  private writeBody(chunk: string | Uint8Array): boolean {
    const socket = this.connection.socket
    if (this.headOnly || this.framing === 'none') return true
    if (this.framing !== 'chunked') return socket.write(chunk)
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk
    if (bytes.length === 0) return true
    // One chunk, one buffer: its size line, the data, CRLF (RFC 9112 7.1).
    const sizeLine = `${bytes.length.toString(16)}\r\n`
    const framed = Buffer.allocUnsafe(sizeLine.length + bytes.length + 2)
    framed.write(sizeLine, 0, 'latin1')
    framed.set(bytes, sizeLine.length)
    framed[framed.length - 2] = 0x0d
    framed[framed.length - 1] = 0x0a
    return socket.write(framed)
  }
}

function checkHeader(name: string, value: HeaderValue): void {
  if (!TOKEN.test(name)) throw new TypeError(`Invalid header name ${JSON.stringify(name)}`)
  const values = typeof value === 'object' ? value : [String(value)]
  for (const each of values)
    if (INVALID_VALUE.test(each)) throw new TypeError(`Invalid character in the value of header ${name}`)
}
