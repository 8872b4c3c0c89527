/**
 * Fragmented messages with interleaved control frames, and the upgrade's `head` bytes (frames that
 * arrive in the same TCP segment as the handshake request), both with the server's own port and
 * attached to a node:http server through `handleUpgrade`.
 */
import assert from 'node:assert/strict'
import { Buffer } from 'node:buffer'
import { createServer as createHttpServer } from 'node:http'
import { after, before, describe, it } from 'node:test'
import { createServer, type ServerOptions, type ServerWebSocket } from '../../src/index.js'
import { Opcode } from '../../src/protocol/index.js'
import {
  closeCodeOf,
  closePayload,
  disposeAll,
  EventQueue,
  frame,
  handshakeRequest,
  listen,
  RawClient,
  type StartedServer,
  startServer,
} from './helpers.js'

interface Received {
  ws: ServerWebSocket<unknown>
  data: string | Buffer
  isBinary: boolean
}

function recordingHandlers(received: EventQueue<Received>, closes: EventQueue<[number, string]>) {
  return {
    message(ws: ServerWebSocket<unknown>, data: string | Buffer, isBinary: boolean) {
      received.push({ ws, data, isBinary })
    },
    close(_ws: ServerWebSocket<unknown>, code: number, reason: string) {
      closes.push([code, reason])
    },
  } satisfies Partial<ServerOptions<unknown>>
}

describe('fragmented messages', () => {
  let started: StartedServer<unknown>
  const received = new EventQueue<Received>()
  const closes = new EventQueue<[number, string]>()

  before(async () => {
    started = await startServer(recordingHandlers(received, closes))
  })
  after(disposeAll)

  it('3 text fragments with pings interleaved arrive whole; each ping gets its pong', async () => {
    const raw = await RawClient.open(started.port)
    raw.write(frame(Opcode.Text, 'Hel', { fin: false }))
    raw.write(frame(Opcode.Ping, 'p1'))
    const pong1 = await raw.readFrame()
    assert.equal(pong1.opcode, Opcode.Pong)
    assert.equal(pong1.fin, true)
    assert.equal(pong1.masked, false)
    assert.equal(pong1.payload.toString(), 'p1')
    assert.equal(received.size, 0, 'no message before the last fragment')
    raw.write(frame(Opcode.Continuation, 'lo, ', { fin: false }))
    raw.write(frame(Opcode.Ping, 'p2'))
    const pong2 = await raw.readFrame()
    assert.equal(pong2.opcode, Opcode.Pong)
    assert.equal(pong2.payload.toString(), 'p2')
    assert.equal(received.size, 0, 'no message before the last fragment')
    raw.write(frame(Opcode.Continuation, 'World', { fin: true }))
    const message = await received.next(2000, 'the reassembled message')
    assert.equal(message.data, 'Hello, World')
    assert.equal(message.isBinary, false)
    // Messages arrive in order: the next one being this marker shows no other came in between.
    raw.write(frame(Opcode.Text, 'marker'))
    assert.equal((await received.next(2000, 'the marker message')).data, 'marker', 'exactly one message')
    raw.write(frame(Opcode.Close, closePayload(1000)))
    const close = await raw.readFrame()
    assert.equal(close.opcode, Opcode.Close)
    assert.equal(closeCodeOf(close), 1000)
    await raw.waitForClose(2000)
    assert.deepEqual(await closes.next(), [1000, ''])
  })

  it('binary fragments and pings in one TCP write, a UTF-8 sequence split across text fragments', async () => {
    const raw = await RawClient.open(started.port)
    const euro = Buffer.from('€') // e2 82 ac: split between fragments
    raw.write(
      frame(Opcode.Binary, Buffer.from([1, 2, 3]), { fin: false }),
      frame(Opcode.Ping, ''),
      frame(Opcode.Continuation, Buffer.from([4, 5]), { fin: false }),
      frame(Opcode.Ping, Buffer.alloc(125, 0x61)),
      frame(Opcode.Continuation, Buffer.from([6]), { fin: true }),
      frame(Opcode.Text, Buffer.concat([Buffer.from('a'), euro.subarray(0, 1)]), { fin: false }),
      frame(Opcode.Continuation, euro.subarray(1, 2), { fin: false }),
      frame(Opcode.Continuation, Buffer.concat([euro.subarray(2), Buffer.from('b')]), { fin: true }),
    )
    const binary = await received.next(2000, 'the binary message')
    assert.equal(binary.isBinary, true)
    assert.deepEqual([...(binary.data as Buffer)], [1, 2, 3, 4, 5, 6])
    const text = await received.next(2000, 'the text message')
    assert.equal(text.data, 'a€b')
    const pongA = await raw.readFrame()
    assert.equal(pongA.opcode, Opcode.Pong)
    assert.equal(pongA.payload.length, 0)
    const pongB = await raw.readFrame()
    assert.equal(pongB.opcode, Opcode.Pong)
    assert.ok(pongB.payload.equals(Buffer.alloc(125, 0x61)))
    raw.destroy()
    assert.deepEqual(await closes.next(), [1006, ''])
  })
})

/** The handshake plus frames, as one buffer: the server must find the frames in `head`. */
function handshakeWithFrames(path = '/'): { bytes: Buffer; framesLength: number } {
  const frames = Buffer.concat([
    frame(Opcode.Text, 'first'),
    frame(Opcode.Binary, Buffer.from([1, 2, 3])),
    frame(Opcode.Ping, 'in-head'),
    frame(Opcode.Text, 'third', { fin: false }),
    frame(Opcode.Continuation, '!', { fin: true }),
  ])
  return {
    bytes: Buffer.concat([Buffer.from(handshakeRequest({ path }), 'latin1'), frames]),
    framesLength: frames.length,
  }
}

async function checkHeadFrames(raw: RawClient, received: EventQueue<Received>): Promise<void> {
  const head = await raw.readHead()
  assert.equal(head.status, 101)
  const first = await received.next(2000, 'message 1 from head')
  assert.equal(first.data, 'first')
  assert.equal(first.isBinary, false)
  const second = await received.next(2000, 'message 2 from head')
  assert.equal(second.isBinary, true)
  assert.deepEqual([...(second.data as Buffer)], [1, 2, 3])
  const third = await received.next(2000, 'message 3 from head')
  assert.equal(third.data, 'third!')
  const pong = await raw.readFrame()
  assert.equal(pong.opcode, Opcode.Pong)
  assert.equal(pong.payload.toString(), 'in-head')
  // And the connection goes on normally after the head.
  raw.write(frame(Opcode.Text, 'after head'))
  // Messages arrive in order, so a head frame delivered twice would have come before this one.
  assert.equal((await received.next(2000, 'message after head')).data, 'after head')
  assert.equal(received.size, 0)
}

describe('head bytes (frames sent with the handshake request)', () => {
  const received = new EventQueue<Received>()
  const closes = new EventQueue<[number, string]>()
  after(disposeAll)

  it('own port: messages in the same TCP write as the request are all delivered, in order', async () => {
    const started = await startServer(recordingHandlers(received, closes))
    const raw = await RawClient.connect(started.port)
    // One TCP write: the frames arrive in the same chunk as the request head, after it.
    const { bytes } = handshakeWithFrames()
    raw.write(bytes)
    await checkHeadFrames(raw, received)
  })

  it('own port, async upgrade: head frames and frames sent while upgrade() awaits are kept', async () => {
    const deciding = new EventQueue<void>()
    let decide = (): void => {}
    const decided = new Promise<void>((resolve) => {
      decide = resolve
    })
    const started = await startServer<{ user: string }>({
      ...recordingHandlers(received, closes),
      async upgrade() {
        deciding.push()
        await decided
        return { user: 'u' }
      },
    })
    const raw = await RawClient.connect(started.port)
    const { bytes } = handshakeWithFrames()
    raw.write(bytes)
    await deciding.next(2000, 'upgrade() to start')
    // Still deciding: these bytes wait in the socket until upgrade() returns.
    await new Promise<void>((resolve) =>
      raw.socket.write(frame(Opcode.Text, 'during upgrade'), () => resolve()),
    )
    decide()
    await checkHeadFramesWithExtra(raw, received, 'during upgrade')
  })

  it('attached to a node:http server with handleUpgrade: head frames are delivered', async () => {
    const rally = createServer<undefined>({ heartbeat: false, ...recordingHandlers(received, closes) })
    const http = createHttpServer()
    const heads: number[] = []
    http.on('upgrade', (req, socket, head: Buffer) => {
      heads.push(head.length)
      rally.handleUpgrade(req, socket, head)
    })
    const port = await listen(http)
    assert.equal(rally.port, undefined, 'an attached server has no port of its own')
    await rally.ready()
    try {
      const raw = await RawClient.connect(port)
      const { bytes, framesLength } = handshakeWithFrames('/attached')
      raw.write(bytes)
      await checkHeadFrames(raw, received)
      assert.deepEqual(heads, [framesLength])
      assert.equal(rally.clients.size, 1)
      assert.equal([...rally.clients][0]!.url, '/attached')
      // close() works attached too: 1001 to the client.
      const closing = rally.close()
      const goAway = await raw.readFrame()
      assert.equal(goAway.opcode, Opcode.Close)
      assert.equal(closeCodeOf(goAway), 1001)
      raw.write(frame(Opcode.Close, closePayload(1001)))
      await raw.waitForClose(2000)
      await closing
      assert.deepEqual(await closes.next(), [1001, ''])
    } finally {
      await rally.close()
    }
  })
})

async function checkHeadFramesWithExtra(
  raw: RawClient,
  received: EventQueue<Received>,
  extra: string,
): Promise<void> {
  const head = await raw.readHead()
  assert.equal(head.status, 101)
  const messages: (string | number[])[] = []
  for (let i = 0; i < 4; i++) {
    const m = await received.next(2000, `message ${i + 1}`)
    messages.push(typeof m.data === 'string' ? m.data : [...m.data])
  }
  assert.deepEqual(messages, ['first', [1, 2, 3], 'third!', extra])
  const pong = await raw.readFrame()
  assert.equal(pong.opcode, Opcode.Pong)
  assert.equal(pong.payload.toString(), 'in-head')
  assert.equal((received.all.at(-1)!.ws.data as { user: string }).user, 'u')
}
