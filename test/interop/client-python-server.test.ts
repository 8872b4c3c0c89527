/**
 * Rally's WHATWG `WebSocket` client against a server nobody here wrote: Python's `websockets`
 * (peers/server.py: an echo server, compression off, plus a few special paths).
 */
import assert from 'node:assert/strict'
import { Buffer } from 'node:buffer'
import { after, before, describe, it } from 'node:test'
import { WebSocket as WsCompatWebSocket } from '../../src/adapters/ws/index.js'
import { type CloseEvent, type ErrorEvent, WebSocket, type WebSocketOptions } from '../../src/index.js'
import { waitUntil } from '../support/timing.js'
import { type PythonServer, requirePythonWebsockets, startPythonServer, withTimeout } from './helpers.js'

const MiB = 1024 * 1024
const SIZES = [0, 1, 125, 126, 65535, 65536, MiB, 16 * MiB]

function textOf(size: number): string {
  return 'abcdefghijklmnopqrstuvwxyz0123456789'.repeat(Math.ceil(size / 36)).slice(0, size)
}

function bytesOf(size: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(size)
  for (let i = 0; i < size; i++) bytes[i] = (i * 31 + seed) & 0xff
  return bytes
}

/** A client with every event recorded; `closed` settles with the close event. */
class Recorder {
  readonly ws: WebSocket
  readonly messages: (string | ArrayBuffer)[] = []
  readonly events: string[] = []
  readonly opened: Promise<void>
  readonly closed: Promise<CloseEvent>
  error: ErrorEvent | undefined
  private waiters: (() => void)[] = []

  constructor(url: string, protocols?: string[], options?: WebSocketOptions) {
    const ws = new WebSocket(url, protocols, options)
    this.ws = ws
    ws.binaryType = 'arraybuffer'
    this.opened = new Promise((resolve, reject) => {
      ws.addEventListener('open', () => resolve())
      ws.addEventListener('close', () => reject(new Error('closed before open')))
    })
    this.opened.catch(() => {})
    this.closed = new Promise((resolve) => {
      ws.addEventListener('close', (event) => {
        this.events.push('close')
        resolve(event as CloseEvent)
      })
    })
    ws.addEventListener('open', () => this.events.push('open'))
    ws.addEventListener('error', (event) => {
      this.events.push('error')
      this.error = event as ErrorEvent
    })
    ws.addEventListener('message', (event) => {
      this.messages.push((event as MessageEvent).data as string | ArrayBuffer)
      for (const waiter of this.waiters.splice(0)) waiter()
    })
  }

  /** Waits until `count` messages have arrived in all. */
  async waitForMessages(count: number, ms: number): Promise<void> {
    await withTimeout(
      (async () => {
        while (this.messages.length < count) {
          if (this.ws.readyState === WebSocket.CLOSED) throw new Error('closed while waiting for messages')
          await new Promise<void>((resolve) => this.waiters.push(resolve))
        }
      })(),
      ms,
      `${count} messages (have ${this.messages.length}; events ${this.events.join(',')})`,
    )
  }

  /** Ends the connection for good, whatever state it is in. */
  dispose(): void {
    if (this.ws.readyState !== WebSocket.CLOSED) this.ws.terminate()
    for (const waiter of this.waiters.splice(0)) waiter()
  }
}

describe('rally WebSocket client with a python websockets server', () => {
  let server: PythonServer
  const clients: Recorder[] = []

  function connect(path: string, protocols?: string[], options?: WebSocketOptions): Recorder {
    const client = new Recorder(server.url(path), protocols, options)
    clients.push(client)
    return client
  }

  before(async () => {
    requirePythonWebsockets()
    server = await startPythonServer()
  })

  after(async () => {
    for (const client of clients) client.dispose()
    await server?.stop()
  })

  it('round-trips text and binary of every size, in order, with exact content', async () => {
    const client = connect('/echo?t=sizes')
    await withTimeout(client.opened, 5000, 'open')
    // Python declines the permessage-deflate offer the client makes by default.
    assert.equal(client.ws.extensions, '')
    assert.equal(client.ws.protocol, '')
    const sent: (string | Uint8Array)[] = []
    for (const [i, size] of SIZES.entries()) {
      sent.push(textOf(size), bytesOf(size, i))
    }
    const utf8 = 'emoji 😀🎉👍🏽 CJK 漢字かなカナ한국어 mixed é ß ∑ 𝄞'
    sent.push(utf8)
    // Everything at once: the echoes must come back in the order sent.
    for (const message of sent) client.ws.send(message)
    await client.waitForMessages(sent.length, 30_000)
    assert.equal(client.messages.length, sent.length)
    for (const [i, expected] of sent.entries()) {
      const got = client.messages[i]!
      if (typeof expected === 'string') {
        assert.equal(typeof got, 'string', `message ${i} should be text`)
        assert.equal((got as string).length, expected.length, `message ${i} length`)
        assert.ok(got === expected, `message ${i} (text, ${expected.length} chars) differs`)
      } else {
        assert.ok(got instanceof ArrayBuffer, `message ${i} should be an ArrayBuffer`)
        assert.equal(got.byteLength, expected.byteLength, `message ${i} length`)
        assert.ok(
          Buffer.from(got).equals(expected),
          `message ${i} (binary, ${expected.length} bytes) differs`,
        )
      }
    }
    assert.equal(client.messages.at(-1), utf8)
    client.ws.close(4001, 'bye')
    const close = await withTimeout(client.closed, 5000, 'close')
    // Python websockets echoes the close frame, reason included.
    assert.deepEqual([close.code, close.reason, close.wasClean], [4001, 'bye', true])
    assert.deepEqual(client.events, ['open', 'close'])
    const seen = await server.closedReport('/echo?t=sizes')
    assert.deepEqual([seen.code, seen.reason], [4001, 'bye'])
  })

  it('gets a server-initiated close: 4002 "server bye", wasClean', async (t) => {
    const client = connect('/close-after-first')
    await withTimeout(client.opened, 5000, 'open')
    client.ws.send('first')
    const close = await withTimeout(client.closed, 5000, 'close')
    assert.equal(close.code, 4002)
    assert.equal(close.reason, 'server bye')
    assert.equal(close.wasClean, true)
    assert.equal(client.ws.readyState, WebSocket.CLOSED)
    assert.deepEqual(client.events, ['open', 'close'])
    // The client's reply echoes the code (RFC 6455 5.5.1); Rally leaves the reason out.
    const seen = await server.closedReport('/close-after-first')
    assert.equal(seen.code, 4002)
    t.diagnostic(`close reason echoed by the rally client: ${JSON.stringify(seen.reason)}`)
  })

  it('gets every message sent before a server close, in order, then the close (4003 "burst")', async () => {
    const client = connect('/burst-close')
    const close = await withTimeout(client.closed, 5000, 'close')
    assert.equal(client.messages.length, 4, `events: ${client.events.join(',')}`)
    assert.equal(client.messages[0], 'one')
    assert.ok(client.messages[1] instanceof ArrayBuffer)
    assert.equal(Buffer.from(client.messages[1] as ArrayBuffer).toString(), 'two')
    assert.equal(client.messages[2], 'three')
    assert.ok(client.messages[3] === 'four'.repeat(50000), 'the 200 KB message')
    assert.deepEqual([close.code, close.reason, close.wasClean], [4003, 'burst', true])
    assert.deepEqual(client.events, ['open', 'close'])
  })

  it("answers the python server's pings (empty, 2 bytes, 125 bytes) with pongs", async () => {
    const client = connect('/server-pings')
    await client.waitForMessages(1, 10_000)
    assert.deepEqual(JSON.parse(client.messages[0] as string), { pongs: 3 })
    client.ws.close()
    assert.equal((await withTimeout(client.closed, 5000, 'close')).wasClean, true)
  })

  it('subprotocols: gets the one python picks, or none when python picks none', async () => {
    const picked = connect('/echo?t=proto', ['v2.example', 'superchat'])
    await withTimeout(picked.opened, 5000, 'open')
    assert.equal(picked.ws.protocol, 'superchat')
    // The server may choose no subprotocol at all (RFC 6455 4.2.2); the connection still opens.
    const none = connect('/echo?t=no-proto', ['v2.example'])
    await withTimeout(none.opened, 5000, 'open')
    assert.equal(none.ws.protocol, '')
    none.ws.send('still works')
    await none.waitForMessages(1, 5000)
    assert.equal(none.messages[0], 'still works')
    picked.ws.close()
    none.ws.close()
    await withTimeout(Promise.all([picked.closed, none.closed]), 5000, 'close')
  })

  it('ping(): the python server receives the payload and answers; the connection stays usable', async () => {
    const client = connect('/pings')
    await withTimeout(client.opened, 5000, 'open')
    client.ws.ping('hello')
    client.ws.ping(new Uint8Array([0, 255]))
    client.ws.ping()
    client.ws.send('report-pings')
    await client.waitForMessages(1, 5000)
    assert.deepEqual(JSON.parse(client.messages[0] as string), [
      Buffer.from('hello').toString('hex'),
      '00ff',
      '',
    ])
    client.ws.send('after pings')
    await client.waitForMessages(2, 5000)
    assert.equal(client.messages[1], 'after pings')
    client.ws.close()
    const close = await withTimeout(client.closed, 5000, 'close')
    assert.equal(close.wasClean, true)
    assert.equal(client.error, undefined)
  })

  it("heartbeat: the python server's pongs keep an idle connection open", async () => {
    const client = connect('/pings?t=heartbeat', undefined, { heartbeat: { interval: 300, timeout: 250 } })
    let pongs = 0
    client.ws.addEventListener('pong', () => pongs++)
    await withTimeout(client.opened, 5000, 'open')
    // Nothing but pongs arrives; without them the heartbeat would have terminated the connection
    // (1006) 550 ms in. Four answered rounds, each judged by the client, and it is still open.
    await waitUntil(() => pongs >= 4 || client.ws.readyState !== WebSocket.OPEN, 5000, 'four pongs')
    assert.equal(client.ws.readyState, WebSocket.OPEN, `events: ${client.events.join(',')}`)
    client.ws.send('report-pings')
    await client.waitForMessages(1, 5000)
    const pings = JSON.parse(client.messages[0] as string) as string[]
    assert.ok(pings.length >= 3, `python received ${pings.length} heartbeat pings`)
    client.ws.close(1000)
    const close = await withTimeout(client.closed, 5000, 'close')
    assert.deepEqual([close.code, close.wasClean], [1000, true])
    assert.equal((await server.closedReport('/pings?t=heartbeat')).code, 1000)
  })

  it("rallyjs/ws client: ping() gets a 'pong' event with the same payload from python", async () => {
    const ws = new WsCompatWebSocket(server.url('/pings?t=ws'))
    try {
      await withTimeout(
        new Promise<void>((resolve, reject) => {
          ws.once('open', () => resolve())
          ws.once('error', reject)
        }),
        5000,
        'open',
      )
      const pong = withTimeout(
        new Promise<Buffer>((resolve) => ws.once('pong', (data: Buffer) => resolve(data))),
        5000,
        'pong',
      )
      ws.ping('payload-42')
      assert.equal((await pong).toString(), 'payload-42')
      const closed = withTimeout(
        new Promise<[number, string]>((resolve) =>
          ws.once('close', (code: number, reason: Buffer) => resolve([code, reason.toString()])),
        ),
        5000,
        'close',
      )
      ws.close(1000, 'done')
      assert.deepEqual(await closed, [1000, 'done'])
      const seen = await server.closedReport('/pings?t=ws')
      assert.deepEqual([seen.code, seen.reason], [1000, 'done'])
    } finally {
      ws.terminate()
    }
  })

  it('a refused handshake (403) gives error, then close 1006 not clean', async () => {
    const client = connect('/forbidden')
    const close = await withTimeout(client.closed, 5000, 'close')
    assert.deepEqual(client.events, ['error', 'close'])
    assert.equal(close.code, 1006)
    assert.equal(close.wasClean, false)
    assert.equal(close.reason, '')
    assert.match(client.error?.message ?? '', /403/, `error message: ${client.error?.message}`)
    assert.equal(client.ws.readyState, WebSocket.CLOSED)
  })

  it('a 16 MiB + 1 message from python is refused with 1009 under the default 16 MiB limit', async () => {
    const client = connect('/echo?t=too-big')
    await withTimeout(client.opened, 5000, 'open')
    // Echoed back by python, the message is over the client's limit: the client closes with 1009.
    client.ws.send(new Uint8Array(16 * MiB + 1))
    const close = await withTimeout(client.closed, 10_000, 'close')
    assert.equal(client.messages.length, 0)
    assert.equal(close.code, 1006, 'the client failed the connection itself (WHATWG: 1006 to the app)')
    assert.equal(close.wasClean, false)
    assert.deepEqual(client.events, ['open', 'error', 'close'])
    // What the client sent python: 1009 Message Too Big.
    assert.equal((await server.closedReport('/echo?t=too-big', 10_000)).code, 1009)
  })
})
