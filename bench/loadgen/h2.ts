/**
 * WebSockets over HTTP/2 (RFC 8441) against WebSockets over HTTP/1.1 with TLS (issue 16), on one
 * server (bench/servers/http2.ts: `allowHTTP1`, so both reach the same Rally handlers). `--via h2`
 * puts every WebSocket on one HTTP/2 connection opened before the measurement; `--via h1` gives each
 * WebSocket its own TCP connection and TLS handshake (resuming the TLS session, as browsers do).
 *
 * Modes:
 *   handshake  --conns slots each open a WebSocket and, on its acceptance (`200` to the extended
 *              CONNECT; `101` to the upgrade), reset it and start over. Counts acceptances. Raw
 *              requests: `node:http2` streams, or a `node:tls` socket and the upgrade by hand.
 *   first      one new socket at a time with Rally's WebSocket client (`{ http2: session }` for
 *              h2): the time from creating it to the first message, the echo of 32 B sent on open.
 *   echo       --conns sockets, each with --window binary messages of --size bytes in flight,
 *              every echo timed and replaced (Rally's WebSocket client).
 *
 * Prints one JSON report (bench/loadgen/node-support.ts) and exits.
 */
import { randomBytes } from 'node:crypto'
import { type ClientHttp2Session, connect as connectHttp2 } from 'node:http2'
import { connect as connectTcp } from 'node:net'
import { performance } from 'node:perf_hooks'
import { connect as connectTls } from 'node:tls'
import { WebSocket } from '../../src/client/websocket.js'
import {
  type Counters,
  fail,
  failed,
  Histogram,
  listArg,
  measureWindow,
  numberArg,
  parseArgv,
  report,
  run,
  within,
} from './node-support.js'

const args = parseArgv(process.argv.slice(2))
const mode = args.get('mode') ?? ''
const via = args.get('via') ?? ''
if (!['handshake', 'first', 'echo'].includes(mode)) fail('--mode must be handshake, first or echo')
if (via !== 'h2' && via !== 'h1') fail('--via must be h2 or h1')
const port = listArg(args, 'ports')[0] ?? fail('--ports is required')
const conns = Math.max(1, numberArg(args, 'conns', 1))
const window = Math.max(1, numberArg(args, 'window', 1))
const size = Math.max(1, numberArg(args, 'size', 32))
const HOST = '127.0.0.1'
const ORIGIN = `https://${HOST}:${port}`
const URL_WSS = `wss://${HOST}:${port}/`
// The runner's certificate is self-signed for 127.0.0.1; what is measured is the server's work.
const tls = { rejectUnauthorized: false }

const counters: Counters = { count: 0, rxBytes: 0, errors: 0, latency: new Histogram() }
let running = true

/** One HTTP/2 connection whose SETTINGS allow the extended CONNECT (RFC 8441 3). */
async function openSession(): Promise<ClientHttp2Session> {
  const session = connectHttp2(ORIGIN, tls)
  session.on('error', () => counters.errors++)
  await within(
    new Promise<void>((resolve, reject) => {
      session.once('remoteSettings', (settings) => {
        if (settings.enableConnectProtocol === true) resolve()
        else reject(new Error('the server did not advertise SETTINGS_ENABLE_CONNECT_PROTOCOL'))
      })
      session.once('error', reject)
    }),
    30_000,
    'the HTTP/2 SETTINGS',
  )
  return session
}

// ------------------------------------------------------------------ handshake

function h2Handshakes(session: ClientHttp2Session): void {
  const slot = () => {
    if (!running) return
    const started = performance.now()
    const stream = session.request(
      {
        ':method': 'CONNECT',
        ':protocol': 'websocket',
        ':scheme': 'https',
        ':path': '/',
        ':authority': `${HOST}:${port}`,
        'sec-websocket-version': '13',
      },
      { endStream: false },
    )
    stream.on('response', (headers) => {
      if (headers[':status'] === 200) {
        counters.count++
        counters.latency.record((performance.now() - started) * 1000)
      } else counters.errors++
      // Ended, not reset: nghttp2 counts a peer's RST_STREAMs and ends a session that sends
      // them faster than it allows (the Rapid Reset mitigation, CVE-2023-44487). The server ends
      // its side when the client's side ends.
      stream.end()
    })
    stream.on('error', () => {})
    // The next handshake once this stream is gone: Rally counts a session's streams until then.
    stream.on('close', slot)
  }
  for (let i = 0; i < conns; i++) slot()
}

const KEY = randomBytes(16).toString('base64')
const UPGRADE = `GET / HTTP/1.1\r\nHost: ${HOST}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n`

function h1Handshakes(): void {
  let ticket: Buffer | undefined
  const slot = () => {
    if (!running) return
    const started = performance.now()
    // TLS over a TCP socket of our own: the TCP socket can be reset (TLS sockets cannot).
    const tcp = connectTcp({ host: HOST, port })
    tcp.on('error', () => {})
    const socket = connectTls({
      socket: tcp,
      servername: undefined,
      ...tls,
      ALPNProtocols: ['http/1.1'],
      session: ticket,
    })
    socket.on('session', (session: Buffer) => {
      ticket = session
    })
    let head = ''
    socket.setEncoding('latin1')
    socket.on('secureConnect', () => socket.write(UPGRADE))
    socket.on('data', (chunk: string) => {
      head += chunk
      if (!head.includes('\r\n\r\n')) return
      if (head.startsWith('HTTP/1.1 101')) {
        counters.count++
        counters.latency.record((performance.now() - started) * 1000)
      } else counters.errors++
      // Reset rather than close: no TIME_WAIT, as the C load generator's handshakes.
      tcp.resetAndDestroy()
      socket.destroy()
    })
    socket.on('error', () => {})
    socket.on('close', slot)
  }
  for (let i = 0; i < conns; i++) slot()
}

// ------------------------------------------------------------------ first message, echo

function openSocket(session: ClientHttp2Session | undefined): WebSocket {
  const socket = new WebSocket(URL_WSS, [], {
    tls,
    perMessageDeflate: false,
    ...(session === undefined ? {} : { http2: session }),
  })
  socket.binaryType = 'arraybuffer'
  return socket
}

const payload = new Uint8Array(size)

async function firstMessages(session: ClientHttp2Session | undefined): Promise<void> {
  while (running) {
    const started = performance.now()
    const socket = openSocket(session)
    await within(
      new Promise<void>((resolve, reject) => {
        socket.onopen = () => socket.send(payload)
        socket.onmessage = () => {
          counters.count++
          counters.latency.record((performance.now() - started) * 1000)
          resolve()
        }
        socket.onerror = () => reject(new Error('a new socket failed'))
      }),
      30_000,
      'a first message',
    )
    // The next socket opens while this one closes, as on a page.
    socket.close()
  }
}

async function echo(session: ClientHttp2Session | undefined): Promise<void> {
  const sockets = await Promise.all(
    Array.from(
      { length: conns },
      () =>
        new Promise<WebSocket>((resolve, reject) => {
          const socket = openSocket(session)
          socket.onopen = () => resolve(socket)
          socket.onerror = () => reject(new Error('an echo socket failed to open'))
        }),
    ),
  )
  for (const socket of sockets) {
    // Echoes come back in order: a ring of send times per socket.
    const sentAt: number[] = []
    socket.onmessage = () => {
      counters.count++
      counters.rxBytes += size
      counters.latency.record((performance.now() - sentAt.shift()!) * 1000)
      if (running) {
        sentAt.push(performance.now())
        socket.send(payload)
      }
    }
    socket.onclose = () => counters.errors++
    for (let i = 0; i < window; i++) {
      sentAt.push(performance.now())
      socket.send(payload)
    }
  }
}

async function main(): Promise<void> {
  const started = performance.now()
  const session = via === 'h2' ? await openSession() : undefined
  if (mode === 'handshake') {
    if (session !== undefined) h2Handshakes(session)
    else h1Handshakes()
  } else if (mode === 'first') {
    firstMessages(session).catch(failed)
  } else await within(echo(session), 120_000, `${conns} echo sockets`)
  const connectSeconds = (performance.now() - started) / 1000
  const fields = await measureWindow(counters, {
    warmup: numberArg(args, 'warmup', 0.5),
    duration: numberArg(args, 'duration', 2),
    serverPids: listArg(args, 'server-pids'),
  })
  running = false
  report(
    {
      mode,
      via,
      conns,
      window,
      opened: conns,
      open_at_end: conns,
      connect_s: connectSeconds,
      payload_bytes: size,
      ...fields,
    },
    counters,
  )
}

run(main)
