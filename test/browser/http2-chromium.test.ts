/**
 * The RFC 8441 proof in a real browser: headless Chromium loads a page over HTTPS from a
 * `node:http2` secure server (allowHTTP1) with Rally attached, and the page opens several
 * WebSockets to the same origin. Chromium uses the extended CONNECT by default (no flag: only
 * `--ignore-certificate-errors-spki-list`, which makes it trust the test's self-signed
 * certificate): the server sees every socket's handshake as a CONNECT with `httpVersion` 2.0 on
 * the very TLS socket that served the page, `server.stats().transports` reads one HTTP/2 session
 * carrying all of them and no HTTP/1.1 WebSocket, and messages flow both ways, with a fetch of the
 * page's API answered on the same connection while the sockets are open.
 */
import assert from 'node:assert/strict'
import { createHash, createPublicKey } from 'node:crypto'
import { createSecureServer, type Http2SecureServer } from 'node:http2'
import type { AddressInfo } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { type Browser, chromium } from 'playwright-core'
import { createServer, type RallyServer, type ServerWebSocket } from '../../src/index.js'
import { EventQueue } from '../support/events.js'
import { type Certificate, makeCertificate } from '../support/tls.js'
import { assertChromium, bounded, CHROMIUM, CHROMIUM_ARGS, collectErrors } from './browser-support.js'

const SOCKETS = 4

/** The page: opens SOCKETS WebSockets, sends one message on each, records the echoes. */
const PAGE = `<!doctype html><meta charset="utf-8"><title>h2</title><script>
window.results = { opened: 0, echoes: [], closes: [], errors: 0 }
for (let i = 0; i < ${SOCKETS}; i++) {
  const ws = new WebSocket('wss://' + location.host + '/ws/' + i)
  ws.onopen = () => { window.results.opened++; ws.send('hello ' + i) }
  ws.onmessage = (event) => { window.results.echoes.push(event.data) }
  ws.onerror = () => { window.results.errors++ }
  ws.onclose = (event) => { window.results.closes.push(event.code) }
  window['socket' + i] = ws
}
</script>`

/** The base64 SHA-256 of the certificate's SubjectPublicKeyInfo, as Chromium's SPKI pin wants it. */
function spkiPin(cert: Buffer): string {
  const spki = createPublicKey(cert).export({ type: 'spki', format: 'der' })
  return createHash('sha256').update(spki).digest('base64')
}

interface Results {
  opened: number
  echoes: string[]
  closes: number[]
  errors: number
}

describe('WebSockets over HTTP/2 in headless Chromium (RFC 8441)', { timeout: 90_000 }, () => {
  let certificate: Certificate
  let browser: Browser
  let h2: Http2SecureServer
  let rally: RallyServer<undefined>
  let port: number
  /** The TLS socket of every page request, and the HTTP version it came with. */
  const pageRequests: { url: string; socket: object; httpVersion: string }[] = []
  /** The socket and request line of every WebSocket handshake the server decided. */
  const handshakes: { url: string; socket: object; method: string; httpVersion: string }[] = []
  const open: ServerWebSocket<undefined>[] = []
  /** Resolves the waiter of each server-side close in turn. */
  const closed = new EventQueue<true>()

  before(async () => {
    assertChromium()
    certificate = makeCertificate()
    h2 = createSecureServer({ key: certificate.key, cert: certificate.cert, allowHTTP1: true })
    h2.on('request', (request, response) => {
      // The compatibility API's request.socket is a proxy; the session's socket is the real one,
      // the same object the upgrade hook sees for a CONNECT stream.
      const socket = request.stream?.session?.socket ?? request.socket
      pageRequests.push({ url: request.url, socket, httpVersion: request.httpVersion })
      if (request.url === '/api/ping') {
        response.setHeader('content-type', 'application/json')
        response.end(JSON.stringify({ pong: true, httpVersion: request.httpVersion }))
        return
      }
      response.setHeader('content-type', 'text/html; charset=utf-8')
      response.end(PAGE)
    })
    rally = createServer({
      heartbeat: false,
      upgrade(request) {
        handshakes.push({
          url: request.url ?? '',
          socket: request.socket,
          method: request.method ?? '',
          httpVersion: request.httpVersion,
        })
        return undefined
      },
      open(ws) {
        open.push(ws)
      },
      message(ws, data) {
        ws.send(`echo ${String(data)}`)
      },
      close() {
        closed.push(true)
      },
    })
    rally.attachHttp2(h2)
    await new Promise<void>((resolve) => h2.listen(0, '127.0.0.1', resolve))
    port = (h2.address() as AddressInfo).port
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      // The only flag: trust this one self-signed key. RFC 8441 needs none: Chromium uses it on its
      // own once the server's SETTINGS carry SETTINGS_ENABLE_CONNECT_PROTOCOL.
      args: [...CHROMIUM_ARGS, `--ignore-certificate-errors-spki-list=${spkiPin(certificate.cert)}`],
    })
  })

  after(async () => {
    await bounded(browser?.close(), 10_000)
    await bounded(rally?.close(), 10_000)
    if (h2 !== undefined) {
      // Chromium is gone, so are its sessions; close() waits for them.
      await bounded(new Promise<void>((resolve) => h2.close(() => resolve())), 10_000)
    }
    certificate?.dispose()
  })

  it('the page and its sockets share one HTTP/2 connection; stats count them as streams; messages flow', async () => {
    const page = await browser.newPage()
    const errors = collectErrors(page)
    const response = await page.goto(`https://127.0.0.1:${port}/`)
    assert.equal(response?.status(), 200)
    await page.waitForFunction(
      `window.results.echoes.length === ${SOCKETS} || window.results.errors > 0`,
      undefined,
      { timeout: 30_000 },
    )
    const results = (await page.evaluate('window.results')) as Results
    assert.equal(results.errors, 0, `socket errors in the page: ${JSON.stringify(results)}`)
    assert.equal(results.opened, SOCKETS)
    assert.deepEqual(
      [...results.echoes].sort(),
      Array.from({ length: SOCKETS }, (_, i) => `echo hello ${i}`),
    )

    // The page came over HTTP/2 ...
    const pageLoad = pageRequests.find((request) => request.url === '/')
    assert.ok(pageLoad !== undefined, 'the page request reached the server')
    assert.equal(pageLoad.httpVersion, '2.0')
    // ... and every socket arrived as an extended CONNECT on that same TLS connection.
    assert.equal(handshakes.length, SOCKETS)
    for (const handshake of handshakes) {
      assert.equal(handshake.method, 'CONNECT', `${handshake.url} came as ${handshake.method}`)
      assert.equal(handshake.httpVersion, '2.0')
      assert.equal(handshake.socket, pageLoad.socket, `${handshake.url} on another connection`)
    }
    assert.deepEqual(rally.stats().transports, { http1: 0, http2: SOCKETS, http2Sessions: 1 })

    // An API call while the sockets are open: answered on the same connection.
    const ping = (await page.evaluate("fetch('/api/ping').then((r) => r.json())")) as {
      pong: boolean
      httpVersion: string
    }
    assert.deepEqual(ping, { pong: true, httpVersion: '2.0' })
    const apiCall = pageRequests.find((request) => request.url === '/api/ping')
    assert.equal(apiCall?.socket, pageLoad.socket)

    // The server speaks first too, on every stream; then the page closes two sockets cleanly.
    for (const ws of open) ws.send('from server')
    await page.waitForFunction(
      `window.results.echoes.filter((m) => m === 'from server').length === ${SOCKETS}`,
      undefined,
      { timeout: 30_000 },
    )
    await page.evaluate("window.socket0.close(1000, 'bye'); window.socket1.close(1000, 'bye')")
    await page.waitForFunction('window.results.closes.length === 2', undefined, { timeout: 30_000 })
    const closes = (await page.evaluate('window.results.closes')) as number[]
    assert.deepEqual(closes, [1000, 1000])
    // The closed streams leave the stats (counted before the close handler runs); the connection
    // still carries the other two.
    await closed.next(20_000, 'a server-side close')
    await closed.next(20_000, 'a server-side close')
    assert.deepEqual(rally.stats().transports, { http1: 0, http2: SOCKETS - 2, http2Sessions: 1 })
    assert.deepEqual(errors, [])
    await page.close()
  })
})
