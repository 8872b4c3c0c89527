/**
 * `rally echo` shutdown (README, "CLI": on SIGINT/SIGTERM it closes every connection with 1001 and
 * exits 0), seen by Python `websockets` clients that stay connected.
 */
import assert from 'node:assert/strict'
import { before, describe, it } from 'node:test'
import {
  Child,
  PEERS,
  PYTHON,
  parseReports,
  type RallyEcho,
  reportLine,
  requirePythonWebsockets,
  startRallyEcho,
} from './helpers.js'

/** A Python client that connects, round-trips one message, then waits for the server to close. */
async function holdingClient(url: string): Promise<Child> {
  const child = new Child('client.py hold', PYTHON, [`${PEERS}client.py`, 'hold', url])
  try {
    await child.waitForLine((line) => (reportLine(line)?.event === 'open' ? true : undefined), 15_000, 'open')
    return child
  } catch (error) {
    await child.kill()
    throw error
  }
}

async function shutdownWithClients(signal: NodeJS.Signals, clients: number): Promise<void> {
  let echo: RallyEcho | undefined
  const peers: Child[] = []
  try {
    echo = await startRallyEcho()
    for (let i = 0; i < clients; i++) peers.push(await holdingClient(`${echo.url}/c${i}`))
    const started = Date.now()
    echo.child.process.kill(signal)
    const exit = await echo.child.waitForExit(10_000)
    assert.deepEqual(exit, { code: 0, signal: null }, `rally echo stderr: ${echo.child.stderr}`)
    // The close handshakes complete well inside the server's 5 s close timeout.
    assert.ok(Date.now() - started < 4000, `shutdown took ${Date.now() - started} ms`)
    for (const peer of peers) {
      const peerExit = await peer.waitForExit(10_000)
      const reports = parseReports(peer)
      assert.equal(peerExit.code, 0, `${JSON.stringify(reports)}\n${peer.stderr}`)
      const closed = reports.find((report) => report.event === 'closed')
      assert.equal(closed?.code, 1001, `python saw ${JSON.stringify(reports)}`)
      assert.equal(
        reports.find((report) => report.event === 'unexpected'),
        undefined,
        'no message after the close',
      )
    }
  } finally {
    for (const peer of peers) await peer.kill()
    await echo?.child.kill()
  }
}

describe('rally echo shutdown with python websockets clients', () => {
  before(() => requirePythonWebsockets())

  it('SIGTERM: the connected client sees 1001, and the CLI exits 0', async () => {
    await shutdownWithClients('SIGTERM', 1)
  })

  it('SIGTERM with three clients: each sees 1001, the CLI exits 0', async () => {
    await shutdownWithClients('SIGTERM', 3)
  })

  it('SIGINT: the connected client sees 1001, and the CLI exits 0', async () => {
    await shutdownWithClients('SIGINT', 1)
  })

  it('SIGTERM with a client that never answers the close: exits 0 after the 5 s close timeout', async () => {
    let echo: RallyEcho | undefined
    let peer: Child | undefined
    try {
      echo = await startRallyEcho()
      peer = new Child('client.py stall', PYTHON, [`${PEERS}client.py`, 'stall', `${echo.url}/`])
      await peer.waitForLine(
        (line) => (reportLine(line)?.event === 'open' ? true : undefined),
        15_000,
        'open',
      )
      const started = Date.now()
      echo.child.process.kill('SIGTERM')
      const exit = await echo.child.waitForExit(15_000)
      const elapsed = Date.now() - started
      assert.deepEqual(exit, { code: 0, signal: null }, `rally echo stderr: ${echo.child.stderr}`)
      // The server's closeTimeout (5 s) bounds the wait for the close handshake.
      assert.ok(elapsed >= 4500 && elapsed < 8000, `exited after ${elapsed} ms`)
    } finally {
      await peer?.kill()
      await echo?.child.kill()
    }
  })

  it('SIGTERM right after the readiness line: exits 0 every time (4 processes)', async () => {
    // A harness sends SIGTERM as soon as it reads "listening on ...". The handler must already
    // be installed then; otherwise the default action kills the process (signal, not exit 0).
    const tryOnce = async (): Promise<string> => {
      const echo = await startRallyEcho()
      try {
        echo.child.process.kill('SIGTERM')
        const exit = await echo.child.waitForExit(10_000)
        return exit.signal === null ? `exit ${exit.code}` : `killed by ${exit.signal}`
      } finally {
        await echo.child.kill()
      }
    }
    // Four processes at once: with the handler installed late, most of them die by the signal.
    const exits = await Promise.all(Array.from({ length: 4 }, tryOnce))
    assert.deepEqual(exits, Array(4).fill('exit 0'))
  })
})
