/**
 * Rally's server on HTTP/2 (issue 16): a `node:http2` secure server with `allowHTTP1`, and
 * `server.attachHttp2(h2)`, so that one port takes WebSockets as RFC 8441 streams of HTTP/2
 * connections and as HTTP/1.1 upgrades over TLS — the same handlers, whichever way a socket came.
 * The handler echoes every message (binary as binary), as bench/servers/rally.ts does, with the
 * same settings (no heartbeat, text as bytes).
 *
 * `--cert F --key F`: the certificate the runner made for 127.0.0.1 (test/support/tls.ts).
 */
import { readFileSync } from 'node:fs'
import { createSecureServer } from 'node:http2'
import { createServer } from '../../src/server/server.js'
import { announce } from './common.js'

process.setSourceMapsEnabled(false)

const argv = process.argv.slice(2)
const certAt = argv.indexOf('--cert')
const keyAt = argv.indexOf('--key')
if (certAt === -1 || keyAt === -1 || argv.length !== 4) {
  console.error('usage: http2.ts --cert FILE --key FILE')
  process.exit(2)
}

const server = createServer({
  heartbeat: false,
  decodeText: false,
  perMessageDeflate: false,
  message(ws, data, isBinary) {
    ws.send(data, { binary: isBinary })
  },
  error() {
    // Resets from the load generator are expected.
  },
})

const h2 = createSecureServer({
  cert: readFileSync(argv[certAt + 1]!),
  key: readFileSync(argv[keyAt + 1]!),
  allowHTTP1: true,
  // Room for the load generator's streams on one connection (Rally's own cap is 100 per session).
  settings: { maxConcurrentStreams: 1000 },
})
h2.on('sessionError', () => {
  // A load generator that resets its connection.
})
server.attachHttp2(h2)

h2.listen(0, '127.0.0.1', () => {
  const address = h2.address()
  announce(typeof address === 'object' && address !== null ? address.port : 0, () => {
    void server.close().finally(() => process.exit(0))
    setTimeout(() => process.exit(0), 2000).unref()
  })
})
