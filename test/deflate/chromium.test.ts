/**
 * permessage-deflate with a real browser: Debian's Chromium (driven by playwright-core) opens a
 * WebSocket to a Rally server with perMessageDeflate: true and echoes text and binary messages
 * of 10 B, 2 KiB, 100 KiB and 1 MiB; the page checks every echo byte for byte.
 */
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, test } from 'node:test'
import { type Browser, chromium } from 'playwright-core'
import { disposeAll, HOST, once, startServer, withTimeout } from './helpers.js'

const CHROMIUM = '/usr/bin/chromium'
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]

const PAGE = '<!doctype html><meta charset="utf-8"><title>deflate</title><p>permessage-deflate test page</p>'

/**
 * Runs in the page (plain JavaScript in a string: tsx's helpers do not exist there). Opens the
 * WebSocket, echoes each case, compares in the page and returns the results.
 */
const PAGE_SCRIPT = `async (wsUrl) => {
  const sizes = [10, 2 * 1024, 100 * 1024, 1024 * 1024]
  let seed = 12345
  const random = () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff
    return seed
  }
  const makeText = (size, unicode) => {
    // Half repetitive, half pseudo-random: compressible, but not trivially.
    const alphabet = unicode ? ['a', 'é', '€', '😀', 'b'] : 'abcdefghijklmnopqrstuvwxyz'.split('')
    const parts = []
    let length = 0
    while (length < size) {
      const part = length % 2048 < 1024 ? 'permessage-deflate ' : alphabet[random() % alphabet.length]
      parts.push(part)
      length += part.length
    }
    const text = parts.join('').slice(0, size)
    // Never end on half a surrogate pair (it would be sent as U+FFFD).
    return /[\\uD800-\\uDBFF]$/.test(text) ? text.slice(0, -1) + 'x' : text
  }
  const makeBytes = (size, compressible) => {
    const bytes = new Uint8Array(size)
    for (let i = 0; i < size; i++) bytes[i] = compressible ? i & 0x3f : random() & 0xff
    return bytes.buffer
  }
  const ws = new WebSocket(wsUrl)
  ws.binaryType = 'arraybuffer'
  const queue = []
  let wake
  ws.onmessage = (event) => {
    queue.push(event.data)
    if (wake) wake()
  }
  await new Promise((resolve, reject) => {
    ws.onopen = () => resolve()
    ws.onerror = () => reject(new Error('WebSocket error before open'))
  })
  const next = async () => {
    while (queue.length === 0) {
      await new Promise((resolve, reject) => {
        wake = resolve
        setTimeout(() => reject(new Error('no echo within 10 s')), 10000)
      })
    }
    return queue.shift()
  }
  const results = []
  for (const size of sizes) {
    const cases = [
      ['ascii text', makeText(size, false)],
      ['unicode text', makeText(size, true)],
      ['compressible binary', makeBytes(size, true)],
      ['random binary', makeBytes(size, false)],
    ]
    for (const [kind, payload] of cases) {
      ws.send(payload)
      const echo = await next()
      let ok
      let echoSize
      if (typeof payload === 'string') {
        ok = echo === payload
        echoSize = typeof echo === 'string' ? echo.length : -1
      } else {
        const a = new Uint8Array(payload)
        const b = echo instanceof ArrayBuffer ? new Uint8Array(echo) : new Uint8Array(0)
        ok = a.length === b.length && a.every((byte, i) => byte === b[i])
        echoSize = b.length
      }
      results.push({ kind, size, ok, echoSize, echoType: typeof echo === 'string' ? 'text' : 'binary' })
    }
  }
  const extensions = ws.extensions
  const closed = new Promise((resolve) => {
    ws.onclose = (event) => resolve(event.code)
  })
  ws.close(1000, 'done')
  return { results, extensions, close: await closed }
}`

interface Result {
  kind: string
  size: number
  ok: boolean
  echoSize: number
  echoType: string
}

describe('Chromium ↔ Rally server with permessage-deflate', { timeout: 40_000 }, () => {
  let browser: Browser | undefined
  let http: HttpServer | undefined

  before(async () => {
    assert.ok(
      existsSync(CHROMIUM),
      `${CHROMIUM} is missing: the test set-up (scripts/ensure-system-deps.mjs, run by ` +
        '`node scripts/run-tests.mjs --only deflate`) installs it with apt-get',
    )
    http = createHttpServer((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' })
      res.end(PAGE)
    })
    http.listen(0, HOST)
    await once(http, 'listening')
    browser = await withTimeout(
      chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 15_000 }),
      20_000,
      'chromium.launch',
    )
  })

  after(async () => {
    await browser?.close().catch(() => {})
    if (http !== undefined) {
      http.closeAllConnections()
      await new Promise<void>((resolve) => http!.close(() => resolve()))
    }
    await disposeAll()
  })

  test('echo of text and binary messages, 10 B to 1 MiB', { timeout: 30_000 }, async () => {
    const offers: string[] = []
    const negotiated: string[] = []
    const serverSizes: number[] = []
    const { port } = await startServer({
      perMessageDeflate: true,
      decodeText: false,
      upgrade(req) {
        offers.push(String(req.headers['sec-websocket-extensions'] ?? ''))
        return undefined
      },
      open(ws) {
        negotiated.push(ws.extensions)
      },
      message(ws, data, isBinary) {
        serverSizes.push((data as Buffer).length)
        ws.send(data, { binary: isBinary })
      },
    })
    const page = await browser!.newPage()
    try {
      page.setDefaultTimeout(20_000)
      await page.goto(`http://${HOST}:${(http!.address() as AddressInfo).port}/`)
      const outcome = (await page.evaluate(
        `(${PAGE_SCRIPT})(${JSON.stringify(`ws://${HOST}:${port}/`)})`,
      )) as {
        results: Result[]
        extensions: string
        close: number
      }

      assert.equal(outcome.results.length, 16)
      for (const result of outcome.results) {
        assert.ok(result.ok, `echo differs in the page: ${JSON.stringify(result)}`)
        assert.equal(result.echoType, result.kind.endsWith('text') ? 'text' : 'binary')
      }
      assert.equal(outcome.close, 1000)
      assert.equal(offers.length, 1)
      assert.match(offers[0]!, /permessage-deflate/, "Chromium's offer")
      assert.equal(negotiated.length, 1)
      assert.ok(negotiated[0]!.startsWith('permessage-deflate'), `server ws.extensions: ${negotiated[0]}`)
      assert.equal(outcome.extensions, negotiated[0], 'the page sees what the server answered')
      assert.equal(serverSizes.length, 16)
    } finally {
      await page.close().catch(() => {})
    }
  })
})
