/**
 * permessage-deflate (RFC 7692) with Python `websockets`' own implementation on the other side:
 * `rally echo --deflate` with Python clients making several offers, and Rally's `WebSocket`
 * client (which offers permessage-deflate by default) with a Python server that accepts it.
 */
import assert from 'node:assert/strict'
import { Buffer } from 'node:buffer'
import { randomBytes } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { type CloseEvent, WebSocket, type WebSocketOptions } from '../../src/index.js'
import {
  caseReport,
  type PythonServer,
  type RallyEcho,
  requirePythonWebsockets,
  runPythonClient,
  startPythonServer,
  startRallyEcho,
  withTimeout,
} from './helpers.js'

const MiB = 1024 * 1024

describe('rally echo --deflate with python websockets clients', () => {
  let echo: RallyEcho

  before(async () => {
    requirePythonWebsockets()
    echo = await startRallyEcho(['--deflate'])
  })

  after(async () => {
    await echo?.child.kill()
  })

  it('negotiates each offer and echoes compressed messages exactly', async () => {
    const { exit, reports, stderr } = await runPythonClient('deflate-on', `${echo.url}/`)
    const error = reports.find((report) => report.event === 'error')
    assert.equal(error, undefined, `python client failed: ${JSON.stringify(error)}\n${stderr}`)
    assert.equal(exit.code, 0, stderr)
    const expectedResponses: Record<string, string> = {
      default: 'permessage-deflate',
      'no-context-takeover': 'permessage-deflate; server_no_context_takeover; client_no_context_takeover',
      'window-bits': 'permessage-deflate; server_max_window_bits=10; client_max_window_bits=9',
    }
    for (const [variant, response] of Object.entries(expectedResponses)) {
      const open = reports.find((report) => report.event === 'open' && report.variant === variant)
      assert.ok(open, `no connection for ${variant}`)
      assert.deepEqual(open.extensions, ['permessage-deflate'], variant)
      assert.deepEqual(open.responseExtensions, [response], variant)
      const cases = reports.filter((report) => String(report.case).startsWith(`${variant}/`))
      assert.equal(cases.length, 7 * 3 + 1, `${variant}: ${JSON.stringify(cases.map((c) => c.case))}`)
      for (const report of cases) {
        assert.equal(report.equal, true, `echo differs: ${JSON.stringify(report)}`)
        assert.equal(report.echoType, report.type, `echo type: ${JSON.stringify(report)}`)
      }
      assert.equal(caseReport(reports, `${variant}/text-16MiB/0`).echoSize, 16 * MiB)
      const closed = reports.find((report) => report.event === 'closed' && report.variant === variant)
      assert.equal(closed?.code, 4001, variant)
    }
  })

  it('echoes a pipelined batch in order when some messages inflate off the event loop', async () => {
    const { exit, reports, stderr } = await runPythonClient('deflate-order', `${echo.url}/`)
    assert.equal(exit.code, 0, `${JSON.stringify(reports)}\n${stderr}`)
    const open = reports.find((report) => report.event === 'open')
    assert.deepEqual(open?.responseExtensions, [
      'permessage-deflate; server_no_context_takeover; client_no_context_takeover',
    ])
    const order = caseReport(reports, 'order')
    assert.equal(order.count, 40)
    // Messages must come out in the order they went in (RFC 6455 5.4, 6.2).
    assert.deepEqual(order.received, order.sent, `first mismatch at ${order.firstMismatch}`)
    assert.equal(order.inOrder, true)
  })
})

describe('rally WebSocket client with a python websockets server accepting permessage-deflate', () => {
  let server: PythonServer
  const sockets: WebSocket[] = []

  before(async () => {
    requirePythonWebsockets()
    server = await startPythonServer(['--deflate'])
  })

  after(async () => {
    for (const ws of sockets) if (ws.readyState !== WebSocket.CLOSED) ws.terminate()
    await server?.stop()
  })

  /** Opens, sends everything at once, and checks the echoes in order. */
  async function roundTrip(
    path: string,
    options: WebSocketOptions,
    messages: (string | Uint8Array)[],
  ): Promise<{ extensions: string; close: CloseEvent }> {
    const ws = new WebSocket(server.url(path), [], options)
    sockets.push(ws)
    ws.binaryType = 'arraybuffer'
    const received: (string | ArrayBuffer)[] = []
    const closed = new Promise<CloseEvent>((resolve) =>
      ws.addEventListener('close', (event) => resolve(event as CloseEvent)),
    )
    let extensions = ''
    await withTimeout(
      new Promise<void>((resolve, reject) => {
        ws.addEventListener('open', () => {
          extensions = ws.extensions
          for (const message of messages) ws.send(message)
        })
        ws.addEventListener('message', (event) => {
          received.push((event as MessageEvent).data as string | ArrayBuffer)
          if (received.length === messages.length) resolve()
        })
        ws.addEventListener('close', () => reject(new Error(`closed after ${received.length} messages`)))
      }),
      30_000,
      `${messages.length} echoes`,
    )
    for (const [i, expected] of messages.entries()) {
      const got = received[i]!
      if (typeof expected === 'string') {
        assert.ok(got === expected, `message ${i} (text, ${expected.length} chars) differs`)
      } else {
        assert.ok(got instanceof ArrayBuffer, `message ${i} should be binary`)
        assert.ok(Buffer.from(got).equals(expected), `message ${i} (${expected.length} bytes) differs`)
      }
    }
    ws.close(1000)
    return { extensions, close: await withTimeout(closed, 5000, 'close') }
  }

  const MESSAGES = (): (string | Uint8Array)[] => {
    const list: (string | Uint8Array)[] = []
    for (let i = 0; i < 3; i++) {
      list.push(
        'x'.repeat(10),
        '',
        new Uint8Array(0),
        'hello deflate '.repeat(10_000),
        new Uint8Array(MiB),
        new Uint8Array(randomBytes(65536)),
        '😀 漢字 '.repeat(3000),
      )
    }
    list.push('abcdefghijklmnopqrstuvwxyz0123456789'.repeat(466034).slice(0, 16 * MiB))
    return list
  }

  it("accepts python's response (12-bit windows both ways) and round-trips compressed messages", async () => {
    const { extensions, close } = await roundTrip('/echo?t=deflate', { maxPayload: 64 * MiB }, MESSAGES())
    assert.match(extensions, /^permessage-deflate\b/)
    assert.match(extensions, /server_max_window_bits=12/)
    assert.match(extensions, /client_max_window_bits=12/)
    assert.deepEqual([close.code, close.wasClean], [1000, true])
    assert.equal((await server.closedReport('/echo?t=deflate')).code, 1000)
  })

  it('with perMessageDeflate: false, offers nothing and talks uncompressed to the same server', async () => {
    const { extensions, close } = await roundTrip('/echo?t=plain', { perMessageDeflate: false }, [
      'plain',
      new Uint8Array([1, 2, 3]),
    ])
    assert.equal(extensions, '')
    assert.deepEqual([close.code, close.wasClean], [1000, true])
  })

  it('no context takeover: a pipelined batch comes back in order (some inflate off the event loop)', async () => {
    const batch: (string | Uint8Array)[] = []
    for (let i = 0; i < 10; i++) {
      batch.push(new Uint8Array(randomBytes(100_000)), `small ${i}a`, `small ${i}b`, new Uint8Array([i]))
    }
    const { extensions, close } = await roundTrip(
      '/echo?t=order',
      { perMessageDeflate: { clientNoContextTakeover: true, serverNoContextTakeover: true } },
      batch,
    )
    assert.match(extensions, /server_no_context_takeover/)
    assert.deepEqual([close.code, close.wasClean], [1000, true])
  })

  it('gets every message python sent before its close, the compressed 200 KB one included', async () => {
    const ws = new WebSocket(server.url('/burst-close'))
    sockets.push(ws)
    const received: string[] = []
    ws.addEventListener('message', (event) => received.push(String((event as MessageEvent).data)))
    const close = await withTimeout(
      new Promise<CloseEvent>((resolve) =>
        ws.addEventListener('close', (event) => resolve(event as CloseEvent)),
      ),
      5000,
      'close',
    )
    assert.match(ws.extensions, /^permessage-deflate/)
    assert.deepEqual([close.code, close.reason], [4003, 'burst'])
    assert.equal(received.length, 4, `received ${received.map((m) => m.length).join(', ')} chars`)
    assert.equal(received[2], 'three')
    assert.ok(received[3] === 'four'.repeat(50000), 'the 200 KB message, intact')
  })

  it('with no-context-takeover options, python agrees and messages round-trip', async () => {
    const { extensions, close } = await roundTrip(
      '/echo?t=no-takeover',
      { perMessageDeflate: { clientNoContextTakeover: true, serverNoContextTakeover: true } },
      MESSAGES().slice(0, 14),
    )
    assert.match(extensions, /server_no_context_takeover/)
    assert.match(extensions, /client_no_context_takeover/)
    assert.deepEqual([close.code, close.wasClean], [1000, true])
  })
})
