/**
 * `rally echo`: every text message back as text, binary as binary, on any path. A test peer for
 * other implementations, so its limits are generous (64 MiB messages, a million fragments); the
 * library's own defaults stay safe.
 */
import { readFileSync } from 'node:fs'
import { createServer } from '../server/server.js'
import { announceWhenListening, parseServerCommand, parseSize, UsageError } from './args.js'

export const ECHO_HELP = `Usage: rally echo [--host 127.0.0.1] [--port 9001] [--deflate] [--tls-cert FILE --tls-key FILE] [--max-payload BYTES]

Echo server: every message comes back with its type (text or binary), on any path.
Accepts the first subprotocol the client offers. --deflate accepts permessage-deflate offers
(RFC 7692, with context takeover as the client offers it). Prints "listening on ws://HOST:PORT" when ready;
SIGINT or SIGTERM closes every connection with 1001 and exits 0.`

const ECHO_MAX_PAYLOAD = 64 * 1024 * 1024

export async function runEcho(argv: string[]): Promise<void> {
  const flags = parseServerCommand(argv, ECHO_HELP, 9001, {
    'tls-cert': { type: 'string' },
    'tls-key': { type: 'string' },
    'max-payload': { type: 'string' },
    deflate: { type: 'boolean' },
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

  const server = createServer({
    host,
    port,
    tls,
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
  await announceWhenListening(server, tls ? 'wss' : 'ws')
}
