/**
 * The client runs unchanged in a browser, build-free: its modules import only each other and
 * protocol.ts, by relative paths ending in .js, and nothing from Node — checked on the sources —
 * and a real Chromium (playwright-core, Debian's /usr/bin/chromium) loads them as plain ES
 * modules (each file only stripped of its types, as tsc's output is), connects to a realtime
 * server with the browser's own WebSocket, receives publications, and cuts a long backoff short
 * when the page hears the `online` event or becomes visible again.
 */
import assert from 'node:assert/strict'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { type Browser, chromium } from 'playwright-core'
import ts from 'typescript'
import { createRealtime, DisconnectCode, type Realtime } from '../../src/realtime/index.js'

const CHROMIUM = '/usr/bin/chromium'
const SRC = fileURLToPath(new URL('../../src/', import.meta.url))
const CLIENT_DIR = join(SRC, 'realtime', 'client')

/** Every import/export specifier of a module (TypeScript's scanner: comments do not count). */
function specifiers(source: string): string[] {
  return ts.preProcessFile(source, true, true).importedFiles.map((file) => file.fileName)
}

describe('RallyClient in browsers', () => {
  test('the client modules import nothing but relative .js paths inside the realtime folder', () => {
    // Subfolders too (transports/): the browser loads whatever index.ts reaches.
    const files = readdirSync(CLIENT_DIR, { recursive: true, encoding: 'utf8' })
      .filter((name) => name.endsWith('.ts'))
      .map((name) => join(CLIENT_DIR, name))
    files.push(join(SRC, 'realtime', 'protocol.ts'))
    for (const file of files) {
      const source = readFileSync(file, 'utf8')
      for (const specifier of specifiers(source)) {
        assert.match(specifier, /^\.\.?\/[\w./-]+\.js$/, `${file}: bare or extensionless import ${specifier}`)
        const target = join(file, '..', specifier.replace(/\.js$/, '.ts'))
        assert.ok(
          target.startsWith(join(SRC, 'realtime')),
          `${file}: ${specifier} leaves src/realtime (the browser gets only those files)`,
        )
        assert.ok(existsSync(target), `${file}: ${specifier} does not exist`)
      }
    }
  })

  describe('in Chromium', { skip: existsSync(CHROMIUM) ? false : `${CHROMIUM} is not installed` }, () => {
    let browser: Browser
    let http: HttpServer
    let realtime: Realtime
    let realtimePort: number
    let httpPort: number

    before(async () => {
      realtime = createRealtime({
        channels: { 'feed:*': { history: { size: 100, ttl: 60_000 } } },
        onError: () => {},
      })
      const server = await realtime.listen({ port: 0, host: '127.0.0.1' })
      realtimePort = server.port!
      // Serves src/realtime/**.ts as JavaScript with the types stripped, at the same paths.
      http = createHttpServer((request, response) => {
        const path = new URL(request.url ?? '/', 'http://x').pathname
        if (path === '/') {
          response.writeHead(200, { 'content-type': 'text/html' })
          response.end('<!doctype html><meta charset="utf-8"><title>client</title>')
          return
        }
        const file = join(SRC, path.replace(/\.js$/, '.ts'))
        if (!path.startsWith('/realtime/') || !file.startsWith(join(SRC, 'realtime')) || !existsSync(file)) {
          response.writeHead(404).end()
          return
        }
        const output = ts.transpileModule(readFileSync(file, 'utf8'), {
          compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
        })
        response.writeHead(200, { 'content-type': 'text/javascript' })
        response.end(output.outputText)
      })
      await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve))
      httpPort = (http.address() as AddressInfo).port
      browser = await chromium.launch({
        executablePath: CHROMIUM,
        args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
      })
    })

    after(async () => {
      await browser?.close()
      await new Promise<void>((resolve) => (http ? http.close(() => resolve()) : resolve()))
      await realtime?.close()
    })

    test('connects with the browser WebSocket, receives publications, retries at once when online or visible again', async () => {
      const page = await browser.newPage()
      try {
        await page.goto(`http://127.0.0.1:${httpPort}/`)
        // Plain JavaScript in a string: it runs in the page, not through tsx.
        await page.evaluate(`(async () => {
          const { RallyClient } = await import('/realtime/client/index.js')
          // A backoff close to a minute: only the online event can bring the client back in time.
          const client = new RallyClient('ws://127.0.0.1:${realtimePort}/', {
            reconnect: { minDelay: 60000, maxDelay: 60000, random: () => 0.99 },
          })
          window.log = []
          window.client = client
          client.on('state', ({ state }) => window.log.push('state:' + state))
          const feed = client.channel('feed:browser')
          feed.on('subscribed', ({ recovered }) => window.log.push('subscribed:' + recovered))
          feed.on('publication', (pub) => window.log.push('pub:' + pub.data))
          client.connect()
        })()`)
        const log = (): Promise<string[]> => page.evaluate('window.log') as Promise<string[]>
        await page.waitForFunction(`window.log.includes('subscribed:false')`, undefined, { timeout: 10_000 })
        for (const n of [1, 2, 3]) await realtime.publish('feed:browser', n)
        await page.waitForFunction(`window.log.includes('pub:3')`, undefined, { timeout: 10_000 })
        // The server sends it away (reconnect allowed); the client settles into its long backoff.
        const id = (await page.evaluate('window.client.clientId')) as string
        assert.ok(realtime.disconnect(id, DisconnectCode.ForceReconnect))
        await page.waitForFunction(`window.client.state === 'disconnected'`, undefined, { timeout: 10_000 })
        await realtime.publish('feed:browser', 4)
        await page.evaluate(`window.dispatchEvent(new Event('online'))`)
        await page.waitForFunction(`window.log.includes('pub:4')`, undefined, { timeout: 10_000 })
        // Again, with the page becoming visible instead (headless pages are always 'visible').
        const second = (await page.evaluate('window.client.clientId')) as string
        assert.ok(realtime.disconnect(second, DisconnectCode.ForceReconnect))
        await page.waitForFunction(`window.client.state === 'disconnected'`, undefined, { timeout: 10_000 })
        await realtime.publish('feed:browser', 5)
        await page.evaluate(`document.dispatchEvent(new Event('visibilitychange'))`)
        await page.waitForFunction(`window.log.includes('pub:5')`, undefined, { timeout: 10_000 })
        const events = await log()
        assert.deepEqual(
          events.filter((e) => e.startsWith('pub:')),
          ['pub:1', 'pub:2', 'pub:3', 'pub:4', 'pub:5'],
        )
        assert.deepEqual(
          events.filter((e) => e.startsWith('subscribed:')),
          ['subscribed:false', 'subscribed:true', 'subscribed:true'],
        )
        await page.evaluate('window.client.close()')
      } finally {
        await page.close()
      }
    })
  })
})
