/**
 * Interop with an RFC 8441 client nobody here wrote: hyper-h2 (Debian's python3-h2, HTTP/2 and
 * the extended CONNECT) with wsproto (python3-wsproto, RFC 6455 framing), driven by
 * test/http2/peers/h2_websocket_client.py against Rally's server on a node:http2 secure server.
 * One TLS connection: the setting advertised, three WebSocket streams answered 200 with the
 * chosen subprotocol and no Sec-WebSocket-Accept, text, binary, ping/pong, a 100 KB message past
 * the initial stream window both ways, one stream reset (its socket alone closes, 1006), and the
 * closing handshake on the others (1000, clean, END_STREAM rather than a reset).
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { after, before, describe, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import type { CloseInfo, RallyServer, ServerStats } from '../../src/index.js'
import { Child, PYTHON, parseReports, type Report } from '../interop/helpers.js'
import { EventQueue } from '../support/events.js'
import { type Certificate, makeCertificate, withH2Server } from './helpers.js'

const PEER = fileURLToPath(new URL('./peers/h2_websocket_client.py', import.meta.url))
const STREAMS = 3

let certificate: Certificate
before(() => {
  const probe = spawnSync(PYTHON, ['-c', 'import h2, wsproto; print(h2.__version__, wsproto.__version__)'], {
    encoding: 'utf8',
    timeout: 10_000,
  })
  assert.equal(
    probe.status,
    0,
    `${PYTHON} cannot import h2 and wsproto (the test set-up, scripts/ensure-system-deps.mjs, ` +
      `installs python3-h2 and python3-wsproto): ${probe.stderr}`,
  )
  certificate = makeCertificate()
})
after(() => certificate?.dispose())

describe('a foreign HTTP/2 WebSocket client: hyper-h2 + wsproto', () => {
  test('settings, three streams on one connection, echoes, a large message, a reset stream, clean closes', async () => {
    const closes = new EventQueue<{ url: string; code: number; info: CloseInfo }>()
    let statsWhenOpen: ServerStats['transports'] | undefined
    let opened = 0
    // Set as the harness starts, before the peer is spawned: the open handler reads the stats.
    let rally: RallyServer<{ url: string }> | undefined
    await withH2Server<{ url: string }>(
      certificate,
      {
        protocols: ['chat'],
        upgrade: (request) => ({ url: request.url ?? '' }),
        open: (ws) => {
          // Read while all three are open, before the peer resets one.
          if (++opened === STREAMS) statsWhenOpen = { ...rally!.stats().transports }
          assert.equal(ws.protocol, 'chat')
        },
        message: (ws, data, isBinary) => void ws.send(data, { binary: isBinary }),
        close: (ws, code, _reason, info) => closes.push({ url: ws.data.url, code, info }),
      },
      async (h) => {
        rally = h.rally
        const child = new Child('h2_websocket_client.py', PYTHON, [
          PEER,
          String(h.port),
          certificate.certFile,
          String(STREAMS),
        ])
        let reports: Report[] = []
        try {
          const exit = await child.waitForExit(60_000)
          reports = parseReports(child)
          assert.deepEqual(exit, { code: 0, signal: null }, `stderr: ${child.stderr}\n${child.stdout}`)
        } finally {
          await child.kill()
        }
        const of = (event: string) => reports.filter((report) => report.event === event)

        assert.deepEqual(of('alpn'), [{ event: 'alpn', protocol: 'h2' }])
        // RFC 8441 3: SETTINGS_ENABLE_CONNECT_PROTOCOL = 1 in the server's SETTINGS.
        assert.deepEqual(of('settings'), [{ event: 'settings', enable_connect_protocol: 1 }])
        const ids = [1, 3, 5]
        assert.deepEqual(
          of('response'),
          ids.map((stream) => ({
            event: 'response',
            stream,
            status: '200',
            protocol: 'chat',
            accept: false,
          })),
        )
        assert.deepEqual(
          of('echoes'),
          ids.map((stream, i) => ({
            event: 'echoes',
            stream,
            text: `hello ${i}`,
            binary: [i, 1, 2, 3],
            pong: `ping ${i}`,
          })),
        )
        assert.deepEqual(of('big'), [{ event: 'big', stream: 1, length: 100 * 1024 }])
        assert.deepEqual(of('after_reset'), [{ event: 'after_reset', stream: 3, text: 'after the reset' }])
        assert.deepEqual(of('closed'), [
          { event: 'closed', stream: 1, code: 1000, reason: 'bye', reset: null },
          { event: 'closed', stream: 3, code: 1000, reason: 'bye', reset: null },
        ])
        assert.equal(of('done').length, 1)
        assert.deepEqual(statsWhenOpen, { http1: 0, http2: STREAMS, http2Sessions: 1 })

        // Server side: the reset stream's socket alone closed abnormally; the others cleanly.
        const byUrl = new Map<string, { code: number; clean: boolean }>()
        for (let i = 0; i < STREAMS; i++) {
          const close = await closes.next(20_000, 'a server-side close')
          byUrl.set(close.url, { code: close.code, clean: close.info.wasClean })
        }
        assert.deepEqual(Object.fromEntries([...byUrl].sort()), {
          '/echo/0': { code: 1000, clean: true },
          '/echo/1': { code: 1000, clean: true },
          '/echo/2': { code: 1006, clean: false },
        })
        assert.deepEqual(h.rally.stats().transports, { http1: 0, http2: 0, http2Sessions: 0 })
      },
    )
  })
})
