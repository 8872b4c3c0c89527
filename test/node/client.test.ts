/**
 * The WHATWG WebSocket client over real sockets: argument checks, connection failures (refused,
 * non-101, handshake timeout), event handler attributes, send after close, binary types, and
 * what the client does with a misbehaving server.
 */
import assert from 'node:assert/strict'
import { Buffer } from 'node:buffer'
import net from 'node:net'
import { after, before, describe, it } from 'node:test'
import { CloseEvent, ErrorEvent, type ServerWebSocket, WebSocket } from '../../src/index.js'
import { computeAcceptKey, encodeFrameHeader, Opcode } from '../../src/protocol/index.js'
import {
  closedPort,
  collectMessages,
  disposeAll,
  EventQueue,
  listen,
  newClient,
  once,
  openClient,
  type StartedServer,
  startServer,
  track,
  waitUntil,
  withTimeout,
} from './helpers.js'

function assertDomException(fn: () => unknown, name: string): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof DOMException, `expected a DOMException, got ${String(error)}`)
    assert.equal(error.name, name)
    return true
  })
}

interface Observed {
  events: string[]
  states: number[]
  close: CloseEvent
  error: ErrorEvent | undefined
}

/** Records the order of open/error/close and readyState at each, until close. */
function observe(ws: WebSocket, ms = 5000): Promise<Observed> {
  const events: string[] = []
  const states: number[] = []
  let error: ErrorEvent | undefined
  for (const type of ['open', 'error']) {
    ws.addEventListener(type, (event) => {
      events.push(type)
      states.push(ws.readyState)
      if (type === 'error') error = event as ErrorEvent
    })
  }
  return withTimeout(
    new Promise<Observed>((resolve) => {
      ws.addEventListener('close', (event) => {
        events.push('close')
        states.push(ws.readyState)
        resolve({ events, states, close: event as CloseEvent, error })
      })
    }),
    ms,
    'the close event',
  )
}

describe('WHATWG client: argument checks', () => {
  let started: StartedServer<undefined>
  before(async () => {
    started = await startServer({
      message(ws, data, isBinary) {
        ws.send(data, { binary: isBinary })
      },
    })
  })
  after(disposeAll)

  it('send() while CONNECTING throws InvalidStateError', async () => {
    const ws = newClient(started.url)
    assert.equal(ws.readyState, WebSocket.CONNECTING)
    assertDomException(() => ws.send('too early'), 'InvalidStateError')
    await once(ws, 'open')
    ws.close()
  })

  it('close(1001) throws InvalidAccessError; so do 999, 2999, 5000 and 1000.5', async () => {
    const ws = await openClient(started.url)
    for (const code of [1001, 999, 1005, 2999, 5000, 1000.5]) {
      assertDomException(() => ws.close(code), 'InvalidAccessError')
    }
    assert.equal(ws.readyState, WebSocket.OPEN, 'a refused close() changes nothing')
    ws.close(1000)
  })

  it('a close reason over 123 UTF-8 bytes throws SyntaxError; 123 bytes is fine', async () => {
    const ws = await openClient(started.url)
    assertDomException(() => ws.close(1000, 'x'.repeat(124)), 'SyntaxError')
    // 62 × 'é' = 124 bytes though only 62 characters.
    assertDomException(() => ws.close(1000, 'é'.repeat(62)), 'SyntaxError')
    assert.equal(ws.readyState, WebSocket.OPEN)
    const closed = once<CloseEvent>(ws, 'close')
    ws.close(4000, 'y'.repeat(123))
    assert.equal((await closed).code, 4000)
  })

  it('invalid URL, ftp: scheme and #fragment throw SyntaxError', () => {
    assertDomException(() => new WebSocket('not a url'), 'SyntaxError')
    assertDomException(() => new WebSocket('ftp://127.0.0.1/'), 'SyntaxError')
    assertDomException(() => new WebSocket(`${started.url}/#frag`), 'SyntaxError')
    assertDomException(() => new WebSocket(`${started.url}/?q=1#frag`), 'SyntaxError')
  })

  // Regression test. Found as a bug (src/client/client-connection.ts parseWebSocketUrl checked
  // only `url.hash !== ''`, and an EMPTY fragment "ws://host/#" has hash '' although the URL
  // record's fragment is '' — non-null — so the WHATWG constructor must throw); fixed in src
  // while these tests were written.
  it("an empty fragment ('ws://host/#') also throws SyntaxError", () => {
    let created: WebSocket | undefined
    assertDomException(() => {
      // Tracked, so that if it does not throw, the connection it opens is cleaned up.
      created = track(new WebSocket(`${started.url}/#`))
    }, 'SyntaxError')
    assert.equal(created, undefined)
  })

  it('duplicate or invalid subprotocols throw SyntaxError', () => {
    assertDomException(() => new WebSocket(started.url, ['a', 'a']), 'SyntaxError')
    assertDomException(() => new WebSocket(started.url, ['chat', 'CHAT']), 'SyntaxError')
    assertDomException(() => new WebSocket(started.url, ['has space']), 'SyntaxError')
    assertDomException(() => new WebSocket(started.url, ['']), 'SyntaxError')
  })

  it('http: URLs are mapped to ws:', async () => {
    const ws = await openClient(started.url.replace('ws:', 'http:'))
    assert.equal(ws.url, `${started.url}/`)
    ws.close()
  })
})

describe('WHATWG client: connection failures', () => {
  after(disposeAll)

  it("connection refused → 'error' then 'close' 1006, not clean, readyState CLOSED during both", async () => {
    const port = await closedPort()
    const ws = newClient(`ws://127.0.0.1:${port}`)
    const seen = await observe(ws)
    assert.deepEqual(seen.events, ['error', 'close'])
    assert.deepEqual(seen.states, [WebSocket.CLOSED, WebSocket.CLOSED])
    assert.equal(seen.close.code, 1006)
    assert.equal(seen.close.wasClean, false)
    assert.equal(seen.close.reason, '')
    assert.ok(seen.close instanceof CloseEvent)
    assert.ok(seen.error instanceof ErrorEvent)
  })

  it('a server answering 403 → error then close 1006', async () => {
    const { url } = await startServer({
      upgrade() {
        return new Response('go away', { status: 403 })
      },
    })
    const ws = newClient(url)
    const seen = await observe(ws)
    assert.deepEqual(seen.events, ['error', 'close'])
    assert.equal(seen.close.code, 1006)
    assert.equal(seen.close.wasClean, false)
    assert.match(seen.error!.message, /403/)
    assert.equal(ws.readyState, WebSocket.CLOSED)
  })

  it('a server that accepts TCP and never answers → error + close 1006 after handshakeTimeout', async () => {
    const silent = net.createServer((socket) => {
      track(socket)
      socket.on('error', () => {})
    })
    const port = await listen(silent)
    const start = Date.now()
    const ws = newClient(`ws://127.0.0.1:${port}`, undefined, { handshakeTimeout: 200 })
    const seen = await observe(ws, 3000)
    const elapsed = Date.now() - start
    assert.deepEqual(seen.events, ['error', 'close'])
    assert.equal(seen.close.code, 1006)
    assert.equal(seen.close.wasClean, false)
    assert.ok(elapsed >= 180 && elapsed < 2000, `timed out after ${elapsed} ms (handshakeTimeout 200)`)
  })

  it('close() while CONNECTING → error, then close 1006', async () => {
    const { url } = await startServer()
    const ws = newClient(url)
    const seen = observe(ws)
    ws.close()
    assert.equal(ws.readyState, WebSocket.CLOSING)
    const result = await seen
    assert.deepEqual(result.events, ['error', 'close'])
    assert.equal(result.close.code, 1006)
  })

  it('a 101 with the wrong Sec-WebSocket-Accept → error, close 1006', async () => {
    const liar = net.createServer((socket) => {
      track(socket)
      socket.on('error', () => {})
      socket.once('data', () => {
        socket.write(
          'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
            'Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n',
        )
      })
    })
    const port = await listen(liar)
    const seen = await observe(newClient(`ws://127.0.0.1:${port}`))
    assert.deepEqual(seen.events, ['error', 'close'])
    assert.equal(seen.close.code, 1006)
  })
})

describe('WHATWG client: events and sending', () => {
  let started: StartedServer<undefined>
  const sockets = new EventQueue<ServerWebSocket<undefined>>()
  before(async () => {
    started = await startServer({
      open(ws) {
        sockets.push(ws)
      },
      message(ws, data, isBinary) {
        ws.send(data, { binary: isBinary })
      },
    })
  })
  after(disposeAll)

  it('onopen/onmessage/onclose attributes and addEventListener both fire', async () => {
    const ws = newClient(started.url)
    const log: string[] = []
    ws.onopen = function (this: WebSocket, event) {
      assert.equal(this, ws)
      log.push(`onopen:${event.type}`)
      ws.send('ping-text')
    }
    ws.addEventListener('open', () => log.push('listener:open'))
    const gotMessage = new Promise<void>((resolve) => {
      ws.onmessage = (event) => {
        log.push(`onmessage:${(event as MessageEvent).data}`)
        resolve()
      }
    })
    ws.addEventListener('message', (event) => log.push(`listener:${(event as MessageEvent).data}`))
    const closed = new Promise<CloseEvent>((resolve) => {
      ws.onclose = (event) => {
        log.push('onclose')
        resolve(event as CloseEvent)
      }
    })
    ws.addEventListener('close', () => log.push('listener:close'))
    assert.equal(typeof ws.onopen, 'function')
    await withTimeout(gotMessage, 2000, 'onmessage')
    ws.close(1000, 'bye')
    const event = await withTimeout(closed, 2000, 'onclose')
    await new Promise((r) => setImmediate(r))
    assert.deepEqual(log, [
      'onopen:open',
      'listener:open',
      'onmessage:ping-text',
      'listener:ping-text',
      'onclose',
      'listener:close',
    ])
    assert.equal(event.code, 1000)
    assert.equal(event.wasClean, true)
  })

  it('replacing an attribute handler replaces it; null removes it', async () => {
    const ws = await openClient(started.url)
    const calls: string[] = []
    ws.onmessage = () => calls.push('first')
    ws.onmessage = () => calls.push('second')
    const messages = collectMessages(ws)
    ws.send('a')
    await messages.next()
    ws.onmessage = null
    assert.equal(ws.onmessage, null)
    ws.send('b')
    await messages.next()
    assert.deepEqual(calls, ['second'])
    ws.close()
  })

  it('after close, send() does not throw and increases bufferedAmount by the UTF-8 byte length', async () => {
    const ws = await openClient(started.url)
    const closed = once<CloseEvent>(ws, 'close')
    ws.close()
    assert.equal(ws.readyState, WebSocket.CLOSING)
    let before = ws.bufferedAmount
    ws.send('hello')
    assert.equal(ws.bufferedAmount - before, 5)
    await closed
    assert.equal(ws.readyState, WebSocket.CLOSED)
    before = ws.bufferedAmount
    assert.doesNotThrow(() => ws.send('é€'))
    assert.equal(ws.bufferedAmount - before, 5, "'é€' is 5 UTF-8 bytes")
    ws.send(new Uint8Array(10))
    ws.send(new ArrayBuffer(7))
    ws.send(new Blob([Buffer.alloc(3)]))
    assert.equal(ws.bufferedAmount - before, 5 + 10 + 7 + 3)
    // Once CLOSED nothing can leave: it never goes down again. No event marks that; a bounded
    // wait for the decrease that must not come (the Blob's bytes are read asynchronously).
    const wentDown = await waitUntil(
      () => ws.bufferedAmount - before < 5 + 10 + 7 + 3,
      50,
      'a decrease',
    ).then(
      () => true,
      () => false,
    )
    assert.equal(wentDown, false, 'bufferedAmount never goes down once CLOSED')
    assert.equal(ws.bufferedAmount - before, 5 + 10 + 7 + 3)
  })

  // Regression test. Found as a bug (src/client/websocket.ts `get bufferedAmount()` added the
  // socket's writableLength, so it counted frame headers, masking keys and the close frame: 11
  // right after send('hello'), 6 right after close()). WHATWG: bufferedAmount "does not include
  // framing overhead incurred by the protocol". Fixed in src while these tests were written.
  it('bufferedAmount counts application data only, not framing overhead or the close frame', async () => {
    const ws = await openClient(started.url)
    ws.binaryType = 'arraybuffer'
    const messages = collectMessages(ws)
    ws.send('hello')
    const afterSend = ws.bufferedAmount
    ws.send('abc')
    const afterTwo = ws.bufferedAmount
    ws.ping('not counted')
    const afterPing = ws.bufferedAmount
    await messages.next()
    await messages.next()
    const afterEchoes = ws.bufferedAmount
    // A large message: all of it counted at once, none of it once the server has echoed it.
    ws.send(new Uint8Array(4 * 1024 * 1024))
    const afterLarge = ws.bufferedAmount
    assert.equal((await messages.next(5000)).data.byteLength, 4 * 1024 * 1024)
    const afterLargeEcho = ws.bufferedAmount
    const closed = once<CloseEvent>(ws, 'close')
    ws.close()
    const afterClose = ws.bufferedAmount
    await closed
    assert.deepEqual(
      {
        afterSend,
        afterTwo,
        afterPing,
        afterEchoes,
        afterLarge,
        afterLargeEcho,
        afterClose,
        closed: ws.bufferedAmount,
      },
      {
        afterSend: 5,
        afterTwo: 8,
        afterPing: 8,
        afterEchoes: 0,
        afterLarge: 4 * 1024 * 1024,
        afterLargeEcho: 0,
        afterClose: 0,
        closed: 0,
      },
    )
  })

  it("binaryType 'blob' (default) gives a Blob with the exact bytes; 'arraybuffer' an ArrayBuffer", async () => {
    const ws = await openClient(started.url)
    const messages = collectMessages(ws)
    assert.equal(ws.binaryType, 'blob')
    const bytes = Buffer.from([0, 1, 2, 253, 254, 255])
    ws.send(bytes)
    const blobEvent = await messages.next()
    assert.ok(blobEvent.data instanceof Blob)
    assert.deepEqual([...new Uint8Array(await blobEvent.data.arrayBuffer())], [...bytes])
    ws.binaryType = 'arraybuffer'
    ws.send(bytes)
    const abEvent = await messages.next()
    assert.ok(abEvent.data instanceof ArrayBuffer)
    assert.deepEqual([...new Uint8Array(abEvent.data)], [...bytes])
    // Invalid values are ignored (the spec's enumerated attribute).
    ws.binaryType = 'nonsense' as 'blob'
    assert.equal(ws.binaryType, 'arraybuffer')
    assert.equal(blobEvent.origin, `ws://127.0.0.1:${started.port}`)
    ws.close()
  })

  it('send() of a Blob, a DataView and a typed array view keeps order and exact bytes', async () => {
    const ws = await openClient(started.url)
    ws.binaryType = 'arraybuffer'
    const messages = collectMessages(ws)
    const backing = new Uint8Array([10, 11, 12, 13, 14, 15, 16, 17])
    ws.send(new Blob([new Uint8Array([1, 2, 3])]))
    ws.send('after blob')
    ws.send(new DataView(backing.buffer, 2, 3))
    ws.send(new Uint16Array(backing.buffer, 4, 2))
    const got: unknown[] = []
    for (let i = 0; i < 4; i++) {
      const data = (await messages.next()).data
      got.push(typeof data === 'string' ? data : [...new Uint8Array(data)])
    }
    assert.deepEqual(got, [[1, 2, 3], 'after blob', [12, 13, 14], [14, 15, 16, 17]])
    ws.close()
  })

  it('a message over the client maxPayload fails the connection: error, close 1006; the server sees 1009', async () => {
    const closes = new EventQueue<number>()
    const { url } = await startServer({
      open(ws) {
        ws.send(Buffer.alloc(2000))
      },
      close(_ws, code) {
        closes.push(code)
      },
    })
    const ws = newClient(url, undefined, { maxPayload: 1024 })
    const seen = await observe(ws)
    assert.deepEqual(seen.events, ['open', 'error', 'close'])
    assert.equal(seen.close.code, 1006)
    assert.equal(seen.close.wasClean, false)
    assert.equal(await closes.next(), 1009)
  })

  it('a masked frame from the server fails the client connection (1002 to the server)', async () => {
    const closeFrames = new EventQueue<Buffer>()
    let serverSide: net.Socket | undefined
    const evil = net.createServer((socket) => {
      serverSide = track(socket)
      socket.on('error', () => {})
      let head = ''
      socket.on('data', (chunk: Buffer) => {
        if (!head.includes('\r\n\r\n')) {
          head += chunk.toString('latin1')
          if (!head.includes('\r\n\r\n')) return
          const key = /sec-websocket-key: *(\S+)/i.exec(head)![1]!
          socket.write(
            'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
              `Sec-WebSocket-Accept: ${computeAcceptKey(key)}\r\n\r\n`,
          )
          const header = encodeFrameHeader(Opcode.Text, 2, { mask: true, maskKey: new Uint8Array(4) })
          socket.write(Buffer.concat([header, Buffer.from('hi')]))
          return
        }
        closeFrames.push(chunk)
      })
    })
    const port = await listen(evil)
    const ws = newClient(`ws://127.0.0.1:${port}`)
    const messages = collectMessages(ws)
    const seen = observe(ws)
    const closeFrame = await closeFrames.next(2000, 'the client close frame')
    assert.equal(closeFrame[0], 0x88)
    assert.ok((closeFrame[1]! & 0x80) !== 0, 'client frames are masked')
    const code = ((closeFrame[6]! ^ closeFrame[2]!) << 8) | (closeFrame[7]! ^ closeFrame[3]!)
    assert.equal(code, 1002)
    serverSide!.end()
    const result = await seen
    assert.deepEqual(result.events, ['open', 'error', 'close'])
    assert.equal(result.close.code, 1006)
    assert.equal(messages.size, 0)
  })

  it('ping() is a Node extension; the server answers with a pong', async () => {
    const pongs = new EventQueue<string>()
    const { url } = await startServer({
      ping(_ws, data) {
        pongs.push(data.toString())
      },
    })
    const ws = await openClient(url)
    ws.ping('hello?')
    assert.equal(await pongs.next(), 'hello?')
    ws.close()
  })
})

/**
 * A hand-made server: answers the handshake with a valid 101 followed by `after101` in the same
 * write, then hands every later chunk to `onData`.
 */
async function fakeServer(
  after101: Buffer,
  onData: (socket: net.Socket, chunk: Buffer) => void = () => {},
): Promise<{ port: number; sockets: EventQueue<net.Socket> }> {
  const sockets = new EventQueue<net.Socket>()
  const server = net.createServer((socket) => {
    track(socket)
    socket.on('error', () => {})
    let head = ''
    socket.on('data', (chunk: Buffer) => {
      if (head.includes('\r\n\r\n')) {
        onData(socket, chunk)
        return
      }
      head += chunk.toString('latin1')
      if (!head.includes('\r\n\r\n')) return
      const key = /sec-websocket-key: *(\S+)/i.exec(head)![1]!
      socket.write(
        Buffer.concat([
          Buffer.from(
            'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
              `Sec-WebSocket-Accept: ${computeAcceptKey(key)}\r\n\r\n`,
            'latin1',
          ),
          after101,
        ]),
      )
      sockets.push(socket)
    })
  })
  return { port: await listen(server), sockets }
}

/** An unmasked server frame. */
function serverFrame(opcode: number, payload: Buffer | string): Buffer {
  const data = typeof payload === 'string' ? Buffer.from(payload) : payload
  return Buffer.concat([encodeFrameHeader(opcode, data.length), data])
}

describe('WHATWG client against a hand-made server', () => {
  after(disposeAll)

  it('frames sent in the same TCP write as the 101 are delivered after open, in order', async () => {
    const { port } = await fakeServer(
      Buffer.concat([
        serverFrame(Opcode.Text, 'one'),
        serverFrame(Opcode.Binary, Buffer.from([2, 2])),
        serverFrame(Opcode.Text, 'three'),
      ]),
    )
    const ws = newClient(`ws://127.0.0.1:${port}`)
    ws.binaryType = 'arraybuffer'
    const log: unknown[] = []
    ws.addEventListener('open', () => log.push('open'))
    const done = new Promise<void>((resolve) => {
      ws.addEventListener('message', (event) => {
        const data = (event as MessageEvent).data
        log.push(typeof data === 'string' ? data : [...new Uint8Array(data as ArrayBuffer)])
        if (log.length === 4) resolve()
      })
    })
    await withTimeout(done, 2000, 'three messages')
    assert.deepEqual(log, ['open', 'one', [2, 2], 'three'])
  })

  it('a server that never answers the client close: closed after closeTimeout, 1006, not clean', async () => {
    const { port } = await fakeServer(Buffer.alloc(0))
    const ws = await openClient(`ws://127.0.0.1:${port}`, undefined, { closeTimeout: 200 })
    const start = Date.now()
    const closed = once<CloseEvent>(ws, 'close', 3000)
    ws.close(1000)
    const event = await closed
    const elapsed = Date.now() - start
    assert.equal(event.code, 1006)
    assert.equal(event.wasClean, false)
    assert.ok(elapsed >= 180 && elapsed < 2000, `closed after ${elapsed} ms (closeTimeout 200)`)
  })

  it('a server close frame answered, TCP never closed by the server: closed after closeTimeout with its code', async () => {
    const replies = new EventQueue<Buffer>()
    const { port, sockets } = await fakeServer(Buffer.alloc(0), (_socket, chunk) => replies.push(chunk))
    const ws = await openClient(`ws://127.0.0.1:${port}`, undefined, { closeTimeout: 200 })
    const closed = once<CloseEvent>(ws, 'close', 3000)
    const states: number[] = []
    ws.addEventListener('close', () => states.push(ws.readyState))
    const serverSocket = await sockets.next()
    serverSocket.write(
      serverFrame(Opcode.Close, Buffer.concat([Buffer.from([0x0f, 0xa1]), Buffer.from('srv')])),
    )
    const reply = await replies.next(2000, 'the client close reply')
    assert.equal(reply[0], 0x88, 'the client answers with a close frame')
    const replyCode = ((reply[2]! ^ reply[6]!) << 8) | (reply[3]! ^ reply[7]!)
    assert.equal(replyCode, 4001, 'echoing the code')
    assert.equal(ws.readyState, WebSocket.CLOSING)
    const event = await closed
    assert.equal(event.code, 4001)
    assert.equal(event.reason, 'srv')
    assert.equal(event.wasClean, true)
    assert.deepEqual(states, [WebSocket.CLOSED])
  })
})
