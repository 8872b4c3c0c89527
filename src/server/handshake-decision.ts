/**
 * The handshake decision: from a parsed upgrade request (Rally's own port or any node:http(s)
 * server) to a 101 or a refusal. Path, admission rules, RFC 6455 4.2.1 validation,
 * permessage-deflate negotiation, then the application's `upgrade` handler — sync or async,
 * bounded by `handshakeTimeout`, its slot released when the socket goes away — and finally
 * either the 101 (the connection is handed to the server's lifecycle) or an answer: the
 * application's Response, or a status with a one-line reason, after which the socket is
 * released.
 */
import type { Buffer } from 'node:buffer'
import type { IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { endAndRelease, REFUSAL_LINGER_MS } from '../node/end-and-release.js'
import { isHttp2Stream, remoteAddressOf } from '../node/socket-driver.js'
import { parseExtensions } from '../protocol/extensions/extension-header.js'
import {
  type DeflateParams,
  negotiateServer,
  type PerMessageDeflateOptions,
  type ServerNegotiation,
} from '../protocol/extensions/permessage-deflate.js'
import {
  buildAcceptResponse,
  buildErrorResponse,
  HandshakeError,
  listHasToken,
  validateRequest,
} from '../protocol/index.js'
import type { Admission } from './admission.js'
import { acceptStream, refuseStream, validateExtendedConnect } from './http2.js'
import type { ServerErrorKind, ServerOptions, UpgradeContext } from './types.js'
import type { UpgradeRequest } from './upgrade-request.js'

/** Longest body of a refusal `Response` we send; the rest is cut (the peer is not a browser page). */
const MAX_REJECTION_BODY = 4096

/** What the handshake settled on, for the connection it opens. */
export interface AcceptedHandshake {
  protocol: string
  extensions: string
  url: string
  deflate: DeflateParams | undefined
}

/** What the decision needs from the server around it. */
export interface HandshakeHost<UserData> {
  /** `close()` has begun: new handshakes get 503. */
  readonly closing: boolean
  /** Connections open now. */
  readonly openConnections: number
  /** The 101 is written: the connection opens with `data` and the frames in `head`. */
  open(socket: Socket, head: Buffer, data: UserData, handshake: AcceptedHandshake): void
  countRejection(status: number): void
  reportError(error: unknown, kind: ServerErrorKind): void
}

export class HandshakeDecision<UserData> {
  private readonly options: ServerOptions<UserData>
  private readonly admission: Admission
  private readonly deflateOptions: PerMessageDeflateOptions | undefined
  private readonly handshakeTimeout: number
  private readonly lingerMs: number
  private readonly host: HandshakeHost<UserData>
  /** Sockets answered with a refusal, until they close (destroyed on `close()`). */
  private readonly refusedSockets = new Set<Duplex>()

  constructor(
    options: ServerOptions<UserData>,
    settings: {
      admission: Admission
      deflateOptions: PerMessageDeflateOptions | undefined
      handshakeTimeout: number
      closeTimeout: number
    },
    host: HandshakeHost<UserData>,
  ) {
    this.options = options
    this.admission = settings.admission
    this.deflateOptions = settings.deflateOptions
    this.handshakeTimeout = settings.handshakeTimeout
    // The answer is small and already handed to the kernel by then: a second is plenty.
    this.lingerMs = Math.min(settings.closeTimeout, REFUSAL_LINGER_MS)
    this.host = host
  }

  /** Decides an upgrade request; `head` holds the client's first frames, if any came with it. */
  handle(req: UpgradeRequest | IncomingMessage, socket: Duplex, head: Buffer): void {
    // Before anything else, so that a reset during the handshake cannot crash the process.
    socket.on('error', ignoreHandshakeSocketError)
    if (this.host.closing) {
      this.reject(socket, new HandshakeError(503, 'Server is shutting down'))
      return
    }
    const url = req.url ?? '/'
    if (this.options.path !== undefined && pathnameOf(url) !== this.options.path) {
      this.reject(socket, new HandshakeError(404, 'No WebSocket endpoint at this path'))
      return
    }
    const policyError = this.admission.check(req, socket as Socket, this.host.openConnections)
    if (policyError !== undefined) {
      this.reject(socket, policyError)
      return
    }
    let validated: ReturnType<typeof validateRequest>
    try {
      // An HTTP/2 stream carries an extended CONNECT (RFC 8441), without a key to answer.
      validated = isHttp2Stream(socket)
        ? { key: '', ...validateExtendedConnect(req.headersDistinct) }
        : validateRequest({
            method: req.method ?? '',
            httpVersion: req.httpVersion,
            fields: req.headersDistinct,
          })
    } catch (error) {
      if (!(error instanceof HandshakeError)) this.fail(socket, error)
      else if (this.options.handshakeError?.(error, req, socket) === true)
        this.host.countRejection(error.status)
      else this.reject(socket, error)
      return
    }
    let deflate: ServerNegotiation | undefined
    if (this.deflateOptions !== undefined && validated.extensions.length > 0) {
      const offers = parseExtensions(validated.extensions)
      if (offers === undefined) {
        this.reject(socket, new HandshakeError(400, 'Malformed Sec-WebSocket-Extensions header'))
        return
      }
      try {
        deflate = negotiateServer(offers, this.deflateOptions)
      } catch (error) {
        this.fail(socket, error)
        return
      }
    }
    const pending: PendingHandshake = {
      req,
      socket,
      head,
      key: validated.key,
      deflate,
      context: new HandshakeContext(
        validated.protocols,
        this.options.protocols?.find((p) => validated.protocols.includes(p)),
        socket as Socket,
      ),
    }
    const upgrade = this.options.upgrade
    if (upgrade === undefined) {
      this.accept(pending, undefined as UserData)
      return
    }
    let result: UserData | Response | Promise<UserData | Response>
    try {
      result = upgrade(req, pending.context)
    } catch (error) {
      this.fail(socket, error)
      return
    }
    if (result instanceof Promise) this.await(pending, result)
    else this.decide(pending, result)
  }

  /**
   * An async `upgrade`. The socket may go away while the application decides; bytes the client
   * sends meanwhile stay in the socket's buffer (nothing reads it yet), so none is lost. The
   * decision is bounded by handshakeTimeout, and counts against maxConnections while pending.
   */
  private await(pending: PendingHandshake, result: Promise<UserData | Response>): void {
    const { socket } = pending
    const admission = this.admission
    admission.pendingHandshakes++
    let settled = false
    const finish = (): boolean => {
      if (settled) return false
      settled = true
      admission.pendingHandshakes--
      clearTimeout(timer)
      socket.removeListener('close', onGone)
      return true
    }
    const timer = setTimeout(() => {
      if (finish()) this.reject(socket, new HandshakeError(503, 'Handshake timed out'))
    }, this.handshakeTimeout)
    timer.unref()
    // A peer that leaves while the application decides frees its slot at once: no 503 counted
    // later for a socket that is gone, no maxConnections slot held for handshakeTimeout.
    const onGone = (): void => void finish()
    socket.once('close', onGone)
    result.then(
      (value) => {
        if (finish()) this.decide(pending, value)
      },
      (error: unknown) => {
        if (finish()) this.fail(socket, error)
      },
    )
  }

  private decide(pending: PendingHandshake, result: UserData | Response): void {
    const { socket } = pending
    if (socket.destroyed) return
    if (result instanceof Response) {
      this.refuse(socket, result)
      return
    }
    if (this.host.closing) {
      this.reject(socket, new HandshakeError(503, 'Server is shutting down'))
      return
    }
    // Connections may have opened while the application decided: the caps are checked again.
    const capError = this.admission.checkCaps(socket as Socket, this.host.openConnections)
    if (capError !== undefined) {
      this.reject(socket, capError)
      return
    }
    this.accept(pending, result)
  }

  private accept(pending: PendingHandshake, data: UserData): void {
    const { socket, context, deflate } = pending
    const protocol = context.protocol
    if (protocol !== undefined && !context.protocols.includes(protocol)) {
      // RFC 6455 4.2.2: the server picks "one of the values from the client's handshake".
      this.fail(
        socket,
        new TypeError(`upgrade chose subprotocol "${protocol}", which the client did not offer`),
      )
      return
    }
    if (isHttp2Stream(socket)) {
      this.acceptStream(pending, data)
      return
    }
    let response: string
    try {
      response = buildAcceptResponse(pending.key, {
        protocol,
        extensions: deflate?.response,
        headers: context.extraHeaders(),
      })
    } catch (error) {
      this.fail(socket, error)
      return
    }
    socket.removeListener('error', ignoreHandshakeSocketError)
    socket.write(response)
    this.host.open(socket as Socket, pending.head, data, {
      protocol: protocol ?? '',
      extensions: deflate?.response ?? '',
      url: pending.req.url ?? '/',
      deflate: deflate?.params,
    })
  }

  /** RFC 8441 5: an HTTP/2 stream's handshake is answered `:status 200`, without a 101. */
  private acceptStream(pending: PendingHandshake, data: UserData): void {
    const { socket, context, deflate } = pending
    const fields: [string, string][] = []
    if (context.protocol !== undefined) fields.push(['sec-websocket-protocol', context.protocol])
    if (deflate !== undefined) fields.push(['sec-websocket-extensions', deflate.response])
    for (const field of context.extraHeaders()) fields.push(field)
    try {
      if (!acceptStream(socket as Parameters<typeof acceptStream>[0], fields)) return
    } catch (error) {
      this.fail(socket, error)
      return
    }
    socket.removeListener('error', ignoreHandshakeSocketError)
    this.host.open(socket as Socket, pending.head, data, {
      protocol: context.protocol ?? '',
      extensions: deflate?.response ?? '',
      url: pending.req.url ?? '/',
      deflate: deflate?.params,
    })
  }

  /** Answers a refused handshake with its status and a one-line reason, then closes. */
  reject(socket: Duplex, error: HandshakeError): void {
    this.host.countRejection(error.status)
    if (isHttp2Stream(socket)) {
      refuseStream(
        socket as Parameters<typeof refuseStream>[0],
        error.status,
        `${error.message}\n`,
        Object.entries(error.headers),
        'text/plain; charset=utf-8',
        this.lingerMs,
      )
      return
    }
    this.answerAndClose(
      socket,
      buildErrorResponse(error.status, `${error.message}\n`, Object.entries(error.headers)),
    )
  }

  /** Our own failure during a handshake: 500 without details, the cause to the error handler. */
  fail(socket: Duplex, error: unknown): void {
    this.host.reportError(error, 'handshake')
    this.reject(socket, new HandshakeError(500, 'Internal server error'))
  }

  /** Destroys refused sockets still lingering (the server is closing). */
  destroyRefused(): void {
    for (const socket of this.refusedSockets) socket.destroy()
  }

  /**
   * Sends a final HTTP answer and closes the socket: half-closes after the answer, discards
   * whatever the peer still sends, and destroys the socket after a second if the peer keeps
   * its side open — a refused peer must not hold a file descriptor (or `close()`) forever.
   */
  private answerAndClose(socket: Duplex, response: string): void {
    if (!socket.writable || socket.destroyed) {
      socket.destroy()
      return
    }
    this.refusedSockets.add(socket)
    socket.once('close', () => this.refusedSockets.delete(socket))
    endAndRelease(socket, response, this.lingerMs)
  }

  /** The application refused the upgrade with a Response. */
  private refuse(socket: Duplex, response: Response): void {
    response.text().then(
      (text) => {
        this.host.countRejection(response.status)
        const headers: [string, string][] = []
        response.headers.forEach((value, name) => {
          if (name !== 'content-length' && name !== 'connection' && name !== 'content-type')
            headers.push([name, value])
        })
        const body = text.length > MAX_REJECTION_BODY ? text.slice(0, MAX_REJECTION_BODY) : text
        const contentType = response.headers.get('content-type') ?? undefined
        if (isHttp2Stream(socket)) {
          const type = contentType ?? 'text/plain; charset=utf-8'
          refuseStream(
            socket as Parameters<typeof refuseStream>[0],
            response.status,
            body,
            headers,
            type,
            this.lingerMs,
          )
          return
        }
        this.answerAndClose(socket, buildErrorResponse(response.status, body, headers, contentType))
      },
      (error: unknown) => this.fail(socket, error),
    )
  }
}

/** One handshake between validation and the decision. */
interface PendingHandshake {
  req: UpgradeRequest
  socket: Duplex
  head: Buffer
  key: string
  deflate: ServerNegotiation | undefined
  context: HandshakeContext
}

/**
 * The UpgradeContext of one handshake. Its Headers object and the peer's address are made only
 * if the application asks: most handshakes need neither, and both cost allocations.
 */
class HandshakeContext implements UpgradeContext {
  readonly protocols: readonly string[]
  protocol: string | undefined
  private readonly socket: Socket
  private responseHeaders: Headers | undefined

  constructor(protocols: readonly string[], protocol: string | undefined, socket: Socket) {
    this.protocols = protocols
    this.protocol = protocol
    this.socket = socket
  }

  get headers(): Headers {
    this.responseHeaders ??= new Headers()
    return this.responseHeaders
  }

  get remoteAddress(): string {
    return remoteAddressOf(this.socket)
  }

  /** Headers the application added, for the 101 response. */
  extraHeaders(): Iterable<[string, string]> {
    return this.responseHeaders?.entries() ?? []
  }
}

/**
 * The Connection header of a 426: "Upgrade" (the Upgrade header is hop-by-hop), plus "close"
 * when the request asked for it (RFC 9112 9.6), so that a keep-alive client does not reuse a
 * connection we are closing.
 */
export function upgradeRequiredConnection(requestConnection: string | undefined): string {
  return listHasToken(requestConnection === undefined ? undefined : [requestConnection], 'close')
    ? 'Upgrade, close'
    : 'Upgrade'
}

function pathnameOf(url: string): string {
  const query = url.indexOf('?')
  return query === -1 ? url : url.slice(0, query)
}

export function ignoreHandshakeSocketError(): void {
  // The socket closes; there is no connection yet to report it to.
}
