/**
 * Graceful shutdown: server.close() sends 1001 to everyone, waits for the closing handshakes
 * (bounded by closeTimeout), then leaves no listener, socket or timer behind — a process whose
 * server and client are closed exits by itself.
 */
import assert from 'node:assert/strict'
import { type ChildProcess, spawn } from 'node:child_process'
import { connect } from 'node:net'
import { describe, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { createServer, WebSocket } from '../../src/index.js'
import {
  activeCounts,
  closeEventOf,
  echoHandlers,
  HOST,
  installGuards,
  newLog,
  openEventOf,
  RawPeer,
  rawHttp,
  trackTimers,
  upgradeRequest,
  waitFor,
  withTimeout,
} from './helpers.js'

installGuards()

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const FIXTURE = fileURLToPath(new URL('./fixtures/exit-cleanly.ts', import.meta.url))

describe('server.close()', { timeout: 60_000 }, () => {
  test('3 clients get 1001; the promise resolves; no Timeout, socket or server handle remains', async () => {
    const baseline = activeCounts()
    const timers = trackTimers()
    const log = newLog()
    // Heartbeat and idle timers exist from the start; long enough not to fire under load.
    const server = createServer({
      port: 0,
      host: HOST,
      heartbeat: { interval: 10_000, timeout: 5000 },
      idleTimeout: 10_000,
      ...echoHandlers(log),
    })
    const clients: WebSocket[] = []
    try {
      await server.ready()
      for (let i = 0; i < 3; i++) clients.push(new WebSocket(`ws://${HOST}:${server.port}/`))
      const closes = clients.map((ws) => closeEventOf(ws, 8000))
      await Promise.all(clients.map((ws) => openEventOf(ws, 3000)))
      await withTimeout(server.close(), 5000, 'server.close()')
      for (const close of await Promise.all(closes)) {
        assert.deepEqual([close.code, close.reason, close.wasClean], [1001, 'Server shutting down', true])
      }
      assert.equal(server.clients.size, 0)
      assert.equal(server.stats().connections, 0)
      assert.deepEqual(
        log.closes.map((c) => c.code),
        [1001, 1001, 1001],
      )
      await waitFor(
        () => {
          const now = activeCounts()
          return (
            now.TCPServerWrap === baseline.TCPServerWrap &&
            now.TCPSocketWrap === baseline.TCPSocketWrap &&
            now.Timeout <= baseline.Timeout
          )
        },
        3000,
        'handles back to the baseline',
        () => ({ baseline, now: activeCounts() }),
      )
      // Unref'd timers too (heartbeat, idle, close timers): none left armed.
      await waitFor(
        () => timers.live().length === 0,
        2000,
        'no armed timer left',
        () => timers.live(),
      )
    } finally {
      timers.stop()
      for (const ws of clients) ws.terminate()
      await server.close()
    }
  })

  test('a peer that never answers the close: destroyed after closeTimeout; close() resolves', async () => {
    const server = createServer({ port: 0, host: HOST, closeTimeout: 300 })
    try {
      await server.ready()
      const peer = await RawPeer.connect(server.port!)
      const started = Date.now()
      await withTimeout(server.close(), 3000, 'server.close()')
      const elapsed = Date.now() - started
      assert.ok(elapsed >= 250 && elapsed < 2000, `resolved after ${elapsed} ms (closeTimeout 300)`)
      const close = await peer.expectCloseFrame()
      assert.equal(close.code, 1001)
      await peer.expectTcpClosed()
      peer.destroy()
    } finally {
      await server.close()
    }
  })

  test('close() twice returns the same promise; new connections are refused meanwhile', async () => {
    const server = createServer({ port: 0, host: HOST, closeTimeout: 500 })
    await server.ready()
    const port = server.port!
    const peer = await RawPeer.connect(port)
    try {
      const first = server.close()
      assert.equal(server.close(), first)
      const late = new WebSocket(`ws://${HOST}:${port}/`)
      const close = await closeEventOf(late, 3000)
      assert.equal(close.code, 1006)
      await withTimeout(first, 3000, 'close')
    } finally {
      peer.destroy()
      await server.close()
    }
  })

  test('an upgrade still pending in an async handler when close() starts gets 503', async () => {
    let release: (() => void) | undefined
    const gate = new Promise<void>((resolve) => {
      release = resolve
    })
    let upgradeStarted = (): void => {}
    const upgrading = new Promise<void>((resolve) => {
      upgradeStarted = resolve
    })
    const server = createServer({
      port: 0,
      host: HOST,
      upgrade: async () => {
        upgradeStarted()
        await gate
        return undefined
      },
    })
    await server.ready()
    try {
      const reply = rawHttp(server.port!, upgradeRequest(), { timeout: 3000 })
      await withTimeout(upgrading, 3000, 'upgrade() to start')
      const closing = server.close()
      release!()
      assert.equal((await reply).statusLine, 'HTTP/1.1 503 Service Unavailable')
      await withTimeout(closing, 3000, 'close')
    } finally {
      release!()
      await server.close()
    }
  })

  test('after close(), a refused peer holding its half of TCP open is not kept alive by the server', async () => {
    const server = createServer({ port: 0, host: HOST })
    await server.ready()
    const baseline = activeCounts().TCPSocketWrap
    const socket = connect({ port: server.port!, host: HOST, allowHalfOpen: true })
    socket.on('error', () => {})
    socket.resume()
    try {
      const ended = new Promise((resolve) => socket.once('end', resolve))
      socket.write(upgradeRequest({ version: '8' }))
      await withTimeout(ended, 2000, 'refusal')
      await withTimeout(server.close(), 3000, 'server.close()')
      // Our socket is still open; the server's side must be gone.
      await waitFor(
        () => activeCounts().TCPSocketWrap === baseline + 1,
        2000,
        "the server's side of the refused connection is destroyed",
        () => ({ baseline, now: activeCounts().TCPSocketWrap }),
      )
    } finally {
      socket.destroy()
      await server.close()
    }
  })

  test('a slowloris connected at close() does not hold close() past closeTimeout', async () => {
    // The default handshakeTimeout (10 s) is for handshakes; shutdown is bounded by closeTimeout.
    const server = createServer({ port: 0, host: HOST, closeTimeout: 500 })
    await server.ready()
    const socket = connect({ port: server.port!, host: HOST })
    socket.on('error', () => {})
    socket.resume()
    try {
      socket.write('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n')
      // Connections are accepted in order: an answer on a later one shows this one was accepted.
      await rawHttp(server.port!, 'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n', { timeout: 3000 })
      const started = Date.now()
      await withTimeout(server.close(), 3000, 'server.close() with a slowloris connected')
      assert.ok(Date.now() - started < 3000)
    } finally {
      socket.destroy()
      await server.close()
    }
  })

  test('handleUpgrade mode: close() clears the liveness timers', async () => {
    const timers = trackTimers()
    try {
      const server = createServer({ heartbeat: { interval: 100, timeout: 50 }, idleTimeout: 1000 })
      assert.ok(timers.live().length >= 2, `expected the heartbeat and idle timers, got ${timers.live()}`)
      await withTimeout(server.close(), 2000, 'close')
      await waitFor(
        () => timers.live().length === 0,
        2000,
        'timers cleared',
        () => timers.live(),
      )
    } finally {
      timers.stop()
    }
  })
})

describe('a process with a closed server and client exits by itself', { timeout: 60_000 }, () => {
  /** Runs the fixture; resolves with the ms between its "closed" line and its exit. */
  function runFixture(mode: string): Promise<{ code: number | null; afterClosed: number; output: string }> {
    const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', FIXTURE, mode], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let output = ''
    let closedAt = 0
    child.stdout!.on('data', (d: Buffer) => {
      output += d.toString()
      if (closedAt === 0 && output.includes('closed')) closedAt = Date.now()
    })
    child.stderr!.on('data', (d: Buffer) => {
      output += d.toString()
    })
    return new Promise((resolve, reject) => {
      // Startup (tsx) may take a while; the 3 s bound starts once everything is closed.
      const watchdog = setInterval(() => {
        if (closedAt !== 0 && Date.now() - closedAt > 3000) {
          clearInterval(watchdog)
          child.kill('SIGKILL')
          reject(new Error(`mode ${mode}: still running 3 s after closing everything\n${output}`))
        }
      }, 50)
      const hardStop = setTimeout(() => {
        clearInterval(watchdog)
        child.kill('SIGKILL')
        reject(new Error(`mode ${mode}: never finished\n${output}`))
      }, 20_000)
      child.on('exit', (code) => {
        clearInterval(watchdog)
        clearTimeout(hardStop)
        resolve({ code, afterClosed: closedAt === 0 ? -1 : Date.now() - closedAt, output })
      })
    })
  }

  for (const mode of ['listen', 'server-first', 'client-heartbeat', 'idle', 'attached']) {
    test(`mode ${mode}: exits with 0 within 3 s of closing`, async () => {
      const result = await runFixture(mode)
      assert.equal(result.code, 0, result.output)
      assert.ok(result.afterClosed >= 0, `never printed "closed": ${result.output}`)
      assert.ok(result.afterClosed < 3000, `exited ${result.afterClosed} ms after closing`)
    })
  }
})
