/**
 * Admission: the server-wide rules a handshake must pass before the application sees it —
 * connection caps (`maxConnections`, `maxConnectionsPerIp`), the header count on attached
 * servers, and `allowedOrigins` — and the counts those rules need (handshakes awaiting an async
 * `upgrade`, open connections per address).
 */
import type { Socket } from 'node:net'
import { remoteAddressOf } from '../node/socket-driver.js'
import { HandshakeError, type Limits } from '../protocol/index.js'
import { isParsedRequest, type UpgradeRequest } from './upgrade-request.js'

export interface AdmissionOptions {
  maxConnections?: number | undefined
  maxConnectionsPerIp?: number | undefined
  allowedOrigins?: readonly (string | RegExp)[] | undefined
}

export class Admission {
  private readonly maxConnections: number
  private readonly maxConnectionsPerIp: number
  private readonly limits: Limits
  private readonly originCheck: ((origin: string) => boolean) | undefined
  /** Open connections per remote address, kept only with `maxConnectionsPerIp`. */
  private readonly connectionsPerIp = new Map<string, number>()
  /** Handshakes between the request and the 101 (counted against `maxConnections`). */
  pendingHandshakes = 0

  constructor(options: AdmissionOptions, limits: Limits) {
    this.maxConnections = options.maxConnections ?? 0
    this.maxConnectionsPerIp = options.maxConnectionsPerIp ?? 0
    this.limits = limits
    this.originCheck =
      options.allowedOrigins === undefined ? undefined : compileOrigins(options.allowedOrigins)
  }

  /**
   * The rules checked before the application sees the request, with `open` connections open.
   * Returns the refusal, or undefined to go on.
   */
  check(request: UpgradeRequest, socket: Socket, open: number): HandshakeError | undefined {
    const limits = this.limits
    // (On Rally's own port the head parser has enforced this already.)
    if (!isParsedRequest(request) && request.rawHeaders.length / 2 > limits.maxHeaderCount) {
      return new HandshakeError(431, `More than ${limits.maxHeaderCount} header fields`)
    }
    const capError = this.checkCaps(socket, open + this.pendingHandshakes)
    if (capError !== undefined) return capError
    if (this.originCheck !== undefined) {
      // Browsers always send Origin on a WebSocket handshake; other clients need not (RFC 6455
      // 4.1 item 8, 10.2), and a forged Origin proves nothing, so only present origins are judged.
      const origins = request.headersDistinct.origin
      if (origins !== undefined && (origins.length !== 1 || !this.originCheck(origins[0]!))) {
        return new HandshakeError(403, 'Origin not allowed')
      }
    }
    return undefined
  }

  /** maxConnections and maxConnectionsPerIp, with `connections` open or about to be. */
  checkCaps(socket: Socket, connections: number): HandshakeError | undefined {
    if (this.maxConnections > 0 && connections >= this.maxConnections) {
      return new HandshakeError(503, 'Too many connections')
    }
    if (
      this.maxConnectionsPerIp > 0 &&
      (this.connectionsPerIp.get(remoteAddressOf(socket)) ?? 0) >= this.maxConnectionsPerIp
    ) {
      return new HandshakeError(429, 'Too many connections from this address')
    }
    return undefined
  }

  /**
   * Whether open connections are counted per address (`maxConnectionsPerIp`): only then is a
   * socket's address read, which costs a string per connection.
   */
  get countsAddresses(): boolean {
    return this.maxConnectionsPerIp > 0
  }

  connectionOpened(address: string): void {
    this.connectionsPerIp.set(address, (this.connectionsPerIp.get(address) ?? 0) + 1)
  }

  connectionClosed(address: string): void {
    const count = this.connectionsPerIp.get(address)
    if (count === undefined) return
    if (count <= 1) this.connectionsPerIp.delete(address)
    else this.connectionsPerIp.set(address, count - 1)
  }
}

/**
 * Compiles `allowedOrigins`. A "*" stands for one or more DNS labels ("https://*.example"
 * matches "https://a.example" and "https://a.b.example", not "https://example"). Origins are
 * compared in their serialized, lower-case form (RFC 6454 6.2).
 */
function compileOrigins(allowed: readonly (string | RegExp)[]): (origin: string) => boolean {
  const exact = new Set<string>()
  const patterns: { prefix: string; suffix: string }[] = []
  const regexps: RegExp[] = []
  for (const entry of allowed) {
    if (entry instanceof RegExp) {
      regexps.push(entry)
      continue
    }
    const lower = entry.toLowerCase()
    const star = lower.indexOf('*')
    if (star === -1) exact.add(lower)
    else patterns.push({ prefix: lower.slice(0, star), suffix: lower.slice(star + 1) })
  }
  return (origin) => {
    const lower = origin.toLowerCase()
    if (exact.has(lower)) return true
    for (const { prefix, suffix } of patterns) {
      if (
        lower.length > prefix.length + suffix.length &&
        lower.startsWith(prefix) &&
        lower.endsWith(suffix)
      ) {
        const middle = lower.slice(prefix.length, lower.length - suffix.length)
        if (isHostLabels(middle)) return true
      }
    }
    return regexps.some((regexp) => {
      // A /g or /y RegExp remembers where it stopped; each origin is a fresh match.
      regexp.lastIndex = 0
      return regexp.test(origin)
    })
  }
}

/** Letters, digits, hyphens and dots: what "*" may stand for in an origin pattern. */
function isHostLabels(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i)
    const ok = (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x2e
    if (!ok) return false
  }
  return value.length > 0 && !value.startsWith('.') && !value.endsWith('.')
}
