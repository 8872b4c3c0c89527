/**
 * The client's HTTP/2 path (RFC 8441): an extended CONNECT on an HTTP/2 session — the caller's,
 * or one shared by every WebSocket to the same origin with the same TLS options — answered 200,
 * after which the stream carries the WebSocket. When the server does not advertise
 * SETTINGS_ENABLE_CONNECT_PROTOCOL (or does not speak HTTP/2), the caller falls back to HTTP/1.1.
 */
import {
  type ClientHttp2Session,
  type ClientHttp2Stream,
  connect as http2Connect,
  type IncomingHttpHeaders,
  type OutgoingHttpHeaders,
} from 'node:http2'
import type { ConnectionOptions as TlsConnectOptions } from 'node:tls'
import type { HttpHead } from '../protocol/index.js'

/** Sessions whose SETTINGS frame has arrived: only then does remoteSettings tell the truth. */
const settled = new WeakSet<ClientHttp2Session>()

/** Shared sessions by TLS options object (or none), then by origin. */
const noTlsPool = new Map<string, PooledSession>()
const tlsPools = new WeakMap<object, Map<string, PooledSession>>()

interface PooledSession {
  session: ClientHttp2Session
  /** WebSocket streams using it (open or in their handshake); closed when back to 0. */
  users: number
}

/**
 * The shared session for `origin` with `tls`: one per origin and TLS options object, opened on
 * first use and closed when its last WebSocket stream closes.
 */
export function sharedSession(origin: string, tls: TlsConnectOptions | undefined): ClientHttp2Session {
  let pool = tls === undefined ? noTlsPool : tlsPools.get(tls)
  if (pool === undefined) {
    pool = new Map()
    tlsPools.set(tls!, pool)
  }
  let entry = pool.get(origin)
  if (entry === undefined || entry.session.closed || entry.session.destroyed) {
    const session = http2Connect(origin, { ...tls })
    watchSettings(session)
    // A failed session reports to each stream; this listener keeps it from crashing the process.
    session.on('error', () => {})
    const created: PooledSession = { session, users: 0 }
    const owner = pool
    session.once('close', () => {
      if (owner.get(origin) === created) owner.delete(origin)
    })
    pool.set(origin, created)
    entry = created
  }
  entry.users++
  const used = entry
  // The pool's count goes down when the stream that took it closes (see releaseOnClose).
  pooledUse.set(entry.session, used)
  return entry.session
}

const pooledUse = new WeakMap<ClientHttp2Session, PooledSession>()

/** Gives back a shared session's use when `stream` (or the attempt) ends. */
export function releaseShared(session: ClientHttp2Session): void {
  const entry = pooledUse.get(session)
  if (entry === undefined) return
  entry.users--
  if (entry.users <= 0) session.close()
}

/** Records when a session's SETTINGS arrive. */
export function watchSettings(session: ClientHttp2Session): void {
  session.once('remoteSettings', () => settled.add(session))
}

/**
 * Calls `ready(supported)` once the server's SETTINGS are known: whether it accepts the extended
 * CONNECT (RFC 8441 3). A session given by the application may have had them long ago: its
 * current remoteSettings are taken as they are unless it is still connecting.
 */
export function whenSettingsKnown(
  session: ClientHttp2Session,
  ready: (supported: boolean) => void,
  failed: (error: Error) => void,
): () => void {
  if (
    settled.has(session) ||
    (!session.connecting && session.remoteSettings.enableConnectProtocol === true)
  ) {
    queueMicrotask(() => ready(session.remoteSettings.enableConnectProtocol === true))
    return () => {}
  }
  const onSettings = () => {
    cleanup()
    ready(session.remoteSettings.enableConnectProtocol === true)
  }
  const onError = (error: Error) => {
    cleanup()
    failed(error)
  }
  const onClose = () => {
    cleanup()
    failed(new Error('HTTP/2 session closed before its SETTINGS arrived'))
  }
  const cleanup = () => {
    session.removeListener('remoteSettings', onSettings)
    session.removeListener('error', onError)
    session.removeListener('close', onClose)
  }
  session.once('remoteSettings', onSettings)
  session.once('error', onError)
  session.once('close', onClose)
  return cleanup
}

/** The extended CONNECT for `url` (RFC 8441 4 and 5). */
export function openWebSocketStream(
  session: ClientHttp2Session,
  url: URL,
  protocols: readonly string[],
  extensionOffer: string | undefined,
  headers: readonly [string, string][],
): ClientHttp2Stream {
  const request: OutgoingHttpHeaders = {
    ':method': 'CONNECT',
    ':protocol': 'websocket',
    ':scheme': 'https',
    ':path': `${url.pathname}${url.search}`,
    ':authority': url.host,
    'sec-websocket-version': '13',
  }
  if (protocols.length > 0) request['sec-websocket-protocol'] = protocols.join(', ')
  if (extensionOffer !== undefined) request['sec-websocket-extensions'] = extensionOffer
  for (const [name, value] of headers) {
    const key = name.toLowerCase()
    // HTTP/2 forbids connection-specific fields (RFC 9113 8.2.2); Host is :authority.
    if (key === 'host' || key === 'connection' || key === 'upgrade') continue
    const previous = request[key]
    request[key] = previous === undefined ? value : `${String(previous)}, ${value}`
  }
  return session.request(request, { endStream: false })
}

/** The HTTP/2 response as the head the client's listeners take (`HTTP/2 <status>`). */
export function headFromResponse(headers: IncomingHttpHeaders): HttpHead {
  const fields: Record<string, string[]> = {}
  let count = 0
  for (const [name, value] of Object.entries(headers)) {
    if (name.startsWith(':') || value === undefined) continue
    fields[name] = Array.isArray(value) ? [...value] : [String(value)]
    count += fields[name]!.length
  }
  return { startLine: ['HTTP/2', String(headers[':status'] ?? ''), ''], fields, fieldCount: count }
}
