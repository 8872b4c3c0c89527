/**
 * `rally echo`: every text message back as text, binary as binary, on any path. A test peer for
 * other implementations, so its limits are generous (64 MiB messages, a million fragments); the
 * library's own defaults stay safe.
 */
import { readFileSync } from 'node:fs'
import { createSecureServer } from 'node:http2'
import type { AddressInfo } from 'node:net'
import { createServer } from '../server/server.js'
import { announceWhenListening, parseServerCommand, parseSize, UsageError } from './args.js'

export const ECHO_HELP = `Usage: rally echo [--host 127.0.0.1] [--port 9001] [--deflate] [--tls-cert FILE --tls-key FILE [--http2]] [--max-payload BYTES]

Echo server: every message comes back with its type (text or binary), on any path.
Accepts the first subprotocol the client offers. --deflate accepts permessage-deflate offers
(RFC 7692, with context takeover as the client offers it). --http2 (with --tls-cert/--tls-key)
serves on a node:http2 server: WebSockets over HTTP/2 streams (RFC 8441 extended CONNECT) and
HTTP/1.1 upgrades on the same port; other HTTP requests get 404. Prints "listening on ws://HOST:PORT" when ready;
SIGINT or SIGTERM closes every connection with 1001 and exits 0.`

const ECHO_MAX_PAYLOAD = 64 * 1024 * 1024

export async function runEcho(argv: string[]): Promise<void> {
  const flags = parseServerCommand(argv, ECHO_HELP, 9001, {
    'tls-cert': { type: 'string' },
    'tls-key': { type: 'string' },
    'max-payload': { type: 'string' },
    deflate: { type: 'boolean' },
    http2: { type: 'boolean' },
  })
  if (flags === undefined) return
  const { values, host, port } = flags
  const maxPayload = parseSize('max-payload', values['max-payload'] as string | undefined, ECHO_MAX_PAYLOAD)
  const certFile = values['tls-cert'] as string | undefined
  const keyFile = values['tls-key'] as string | undefined
  if ((certFile === undefined) !== (keyFile === undefined))
    throw new UsageError('--tls-cert and --tls-key go together')
  let tls: { cert: Buffer; key: Buffer } | undefined
  if (certFile !== undefined && keyFile !== undefined) {
    try {
      tls = { cert: readFileSync(certFile), key: readFileSync(keyFile) }
    } catch (error) {
      throw new UsageError(`cannot read TLS files: ${(error as Error).message}`)
    }
  }

  const http2 = values.http2 === true
  if (http2 && tls === undefined) throw new UsageError('--http2 needs --tls-cert and --tls-key')

  const server = createServer({
    // Over HTTP/2 the node:http2 server listens; Rally is attached to it.
    ...(http2 ? {} : { host, port, tls }),
    maxPayload,
    // As a test peer, accept whatever the client offers, context takeover included.
    perMessageDeflate: values.deflate
      ? { serverNoContextTakeover: false, clientNoContextTakeover: false }
      : false,
    limits: { maxFragments: 1 << 20 },
    maxBackpressure: 4 * maxPayload,
    decodeText: false,
    upgrade(_request, context) {
      context.protocol = context.protocols[0]
    },
    message(ws, data, isBinary) {
      ws.send(data, { binary: isBinary })
    },
    error() {
      // Peers that break the protocol are expected here; they get their close code.
    },
  })
  if (!http2) {
    await announceWhenListening(server, tls ? 'wss' : 'ws')
    return
  }
  const h2 = createSecureServer({ ...tls, allowHTTP1: true, settings: { enableConnectProtocol: true } })
  h2.on('request', (_request, response) => {
    response.statusCode = 404
    response.setHeader('content-type', 'text/plain; charset=utf-8')
    response.end('rally echo: open a WebSocket (HTTP/1.1 upgrade or RFC 8441 extended CONNECT)\n')
  })
  server.attachHttp2(h2)
  const listening = new Promise<void>((resolve, reject) => {
    h2.once('error', reject)
    h2.listen(port, host, () => resolve())
  })
  await announceWhenListening(
    {
      ready: () => listening,
      // Idle HTTP/2 sessions are not waited for: the process exits once the WebSockets closed.
      close: async () => {
        h2.close()
        await server.close()
      },
      address: () => {
        const address = h2.address()
        return address !== null && typeof address === 'object' ? (address as AddressInfo) : undefined
      },
    },
    'wss',
  )
}
