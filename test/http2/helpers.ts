/**
 * WebSockets over HTTP/2 (RFC 8441) from the test side: a self-signed certificate made with
 * openssl, a node:http2 secure server (allowHTTP1) with a Rally server attached, and a client
 * doing the extended CONNECT by hand on a node:http2 session, its WebSocket run by Rally's socket
 * driver over the client stream.
 */
import assert from 'node:assert/strict'
import {
  type ClientHttp2Session,
  type ClientHttp2Stream,
  createSecureServer,
  type Http2SecureServer,
  connect as http2Connect,
  type IncomingHttpHeaders,
  type OutgoingHttpHeaders,
} from 'node:http2'
import type { AddressInfo } from 'node:net'
import { createServer, type RallyServer, type ServerOptions } from '../../src/index.js'
import { type DriverListener, SocketDriver } from '../../src/node/socket-driver.js'
import type { CloseInfo, ProtocolError } from '../../src/protocol/index.js'

import type { Certificate } from '../support/tls.js'

export { type Certificate, makeCertificate } from '../support/tls.js'

export interface H2Harness<UserData> {
  rally: RallyServer<UserData>
  h2: Http2SecureServer
  port: number
  /** Opens a client session and waits for the server's SETTINGS. */
  session(): Promise<ClientHttp2Session>
}

/**
 * Runs `body` with an HTTP/2 secure server (allowHTTP1) on a free port, a Rally server attached,
 * and a plain 'request' handler answering "page <path>" for ordinary requests.
 */
export async function withH2Server<UserData>(
  certificate: Certificate,
  options: ServerOptions<UserData>,
  body: (h: H2Harness<UserData>) => Promise<void>,
  attachOptions?: Parameters<RallyServer<UserData>['attachHttp2']>[1],
): Promise<void> {
  const h2 = createSecureServer({ key: certificate.key, cert: certificate.cert, allowHTTP1: true })
  h2.on('request', (request, response) => {
    response.setHeader('content-type', 'text/plain')
    response.end(`page ${request.url}`)
  })
  const rally = createServer<UserData>({ heartbeat: false, ...options })
  rally.attachHttp2(h2, attachOptions)
  await new Promise<void>((resolve) => h2.listen(0, '127.0.0.1', resolve))
  const port = (h2.address() as AddressInfo).port
  const sessions: ClientHttp2Session[] = []
  try {
    await body({
      rally,
      h2,
      port,
      session: async () => {
        const session = http2Connect(`https://localhost:${port}`, { ca: certificate.cert })
        sessions.push(session)
        session.on('error', () => {})
        await new Promise<void>((resolve, reject) => {
          session.once('remoteSettings', () => resolve())
          session.once('error', reject)
        })
        return session
      },
    })
  } finally {
    for (const session of sessions) session.destroy()
    await rally.close()
    await new Promise<void>((resolve) => h2.close(() => resolve()))
  }
}

/** The headers of an extended CONNECT for a WebSocket (RFC 8441 4 and 5). */
export function connectHeaders(
  port: number,
  extra: OutgoingHttpHeaders = {},
  path = '/',
): OutgoingHttpHeaders {
  return {
    ':method': 'CONNECT',
    ':protocol': 'websocket',
    ':scheme': 'https',
    ':path': path,
    ':authority': `localhost:${port}`,
    'sec-websocket-version': '13',
    ...extra,
  }
}

/** The response to a request: its headers, or the stream's reset code if it was reset first. */
export function responseOf(
  stream: ClientHttp2Stream,
): Promise<{ headers: IncomingHttpHeaders; status: number } | { rstCode: number }> {
  return new Promise((resolve) => {
    stream.on('error', () => {})
    stream.once('response', (headers) => resolve({ headers, status: Number(headers[':status']) }))
    stream.once('close', () => resolve({ rstCode: stream.rstCode ?? -1 }))
  })
}

/** Reads a stream's whole body as text. */
export function bodyOf(stream: ClientHttp2Stream): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = ''
    stream.setEncoding('utf8')
    stream.on('data', (chunk: string) => {
      text += chunk
    })
    stream.once('end', () => resolve(text))
    stream.once('error', reject)
  })
}

/** A WebSocket client over an HTTP/2 stream: Rally's driver, client side, on the stream. */
export class StreamClient implements DriverListener {
  readonly driver: SocketDriver
  readonly messages: string[] = []
  closeInfo: CloseInfo | undefined
  closeFrame: { code: number; reason: string } | undefined
  private waiters: (() => void)[] = []

  constructor(readonly stream: ClientHttp2Stream) {
    this.driver = new SocketDriver('client', stream, this, { closeTimeout: 2000 })
    this.driver.attach()
  }

  /** Opens a WebSocket stream on `session` and waits for its 200. */
  static async open(
    session: ClientHttp2Session,
    port: number,
    extra?: OutgoingHttpHeaders,
    path?: string,
  ): Promise<{ client: StreamClient; headers: IncomingHttpHeaders }> {
    const stream = session.request(connectHeaders(port, extra, path), { endStream: false })
    const response = await responseOf(stream)
    assert.ok('status' in response, `the stream was reset (${JSON.stringify(response)})`)
    assert.equal(response.status, 200)
    return { client: new StreamClient(stream), headers: response.headers }
  }

  send(text: string): void {
    this.driver.connection.sendText(Buffer.from(text))
  }

  /** Waits for the `count`-th message (1-based) and returns it. */
  async message(count = this.messages.length + 1): Promise<string> {
    await this.until(() => this.messages.length >= count)
    return this.messages[count - 1]!
  }

  async closed(): Promise<CloseInfo> {
    await this.until(() => this.closeInfo !== undefined)
    return this.closeInfo!
  }

  until(condition: () => boolean): Promise<void> {
    if (condition()) return Promise.resolve()
    return new Promise((resolve) => {
      const check = () => {
        if (condition()) resolve()
        else this.waiters.push(check)
      }
      this.waiters.push(check)
    })
  }

  private wake(): void {
    const waiters = this.waiters
    this.waiters = []
    for (const waiter of waiters) waiter()
  }

  onMessage(data: Uint8Array): void {
    this.messages.push(Buffer.from(data).toString('utf8'))
    this.wake()
  }
  onPing(): void {}
  onPong(): void {}
  onCloseFrame(code: number, reason: string): void {
    this.closeFrame = { code, reason }
    this.wake()
  }
  onProtocolError(_error: ProtocolError): void {}
  onDrain(): void {}
  onClosed(info: CloseInfo): void {
    this.closeInfo = info
    this.wake()
  }
}

/** A masked client frame (RFC 6455 5.2), zero mask key: payload bytes unchanged on the wire. */
export function maskedFrame(opcode: number, payload: Buffer): Buffer {
  assert.ok(payload.length < 126)
  return Buffer.concat([Buffer.from([0x80 | opcode, 0x80 | payload.length, 0, 0, 0, 0]), payload])
}

/** Resolves with the first `length` bytes the stream delivers. */
export function readBytes(stream: ClientHttp2Stream, length: number): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    let total = 0
    const onData = (chunk: Buffer) => {
      chunks.push(chunk)
      total += chunk.length
      if (total >= length) {
        stream.removeListener('data', onData)
        stream.pause()
        resolve(Buffer.concat(chunks).subarray(0, length))
      }
    }
    stream.on('data', onData)
  })
}
