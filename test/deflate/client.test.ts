/**
 * The Rally client's side of permessage-deflate against a hand-driven TCP server: the offer it
 * sends, the 1010 failure on a response it cannot accept (RFC 6455 9.1, RFC 7692 7), and which
 * messages it compresses (`threshold`).
 */
import assert from 'node:assert/strict'
import { Buffer } from 'node:buffer'
import { after, describe, test } from 'node:test'
import { type CloseEvent, WebSocket } from '../../src/index.js'
import {
  closeCodeOf,
  compressibleText,
  deflate,
  disposeAll,
  inflate,
  Op,
  once,
  type ParsedFrame,
  RawServer,
  RSV1,
  track,
  withTimeout,
} from './helpers.js'

after(disposeAll)

describe('client: unacceptable Sec-WebSocket-Extensions response → 1010', () => {
  const bad: [string, string, object | undefined][] = [
    ['an unknown parameter', 'permessage-deflate; foo=1', undefined],
    ['an extension the client did not offer', 'x-unknown', undefined],
    ['permessage-deflate plus an extension not offered', 'permessage-deflate, x-unknown', undefined],
    ['permessage-deflate twice', 'permessage-deflate, permessage-deflate', undefined],
    ['client_max_window_bits without a value', 'permessage-deflate; client_max_window_bits', undefined],
    ['server_max_window_bits=7', 'permessage-deflate; server_max_window_bits=7', undefined],
    [
      'a duplicate parameter',
      'permessage-deflate; server_no_context_takeover; server_no_context_takeover',
      undefined,
    ],
    ['malformed syntax', 'permessage-deflate;;', undefined],
    [
      'server_max_window_bits larger than requested',
      'permessage-deflate; server_max_window_bits=12',
      { serverMaxWindowBits: 10 },
    ],
    [
      'server_no_context_takeover missing when requested',
      'permessage-deflate',
      { serverNoContextTakeover: true },
    ],
  ]
  for (const [name, response, options] of bad) {
    test(name, async () => {
      const raw = await RawServer.start(response)
      const ws = track(
        new WebSocket(raw.url, [], options === undefined ? {} : { perMessageDeflate: options }),
      )
      const events: string[] = []
      ws.addEventListener('open', () => events.push('open'))
      ws.addEventListener('message', () => events.push('message'))
      ws.addEventListener('error', () => events.push('error'))
      const closed = once<CloseEvent>(ws, 'close', 8000)
      const { socket, reader } = await raw.connections.next()
      const frame: ParsedFrame = await reader.frames.next(5000, "the client's close frame")
      assert.equal(frame.opcode, Op.Close)
      assert.equal(closeCodeOf(frame), 1010, 'the server is told why: 1010 Mandatory Extension')
      assert.ok(frame.payload.length > 2, 'with a reason')
      socket.end()
      const event = await closed
      assert.equal(event.code, 1006)
      assert.equal(event.wasClean, false)
      assert.deepEqual(events, ['error'], 'error then close, never open')
      assert.equal(ws.readyState, WebSocket.CLOSED)
    })
  }

  test('with perMessageDeflate: false, any extension in the response fails the handshake', async () => {
    const raw = await RawServer.start('permessage-deflate')
    const ws = track(new WebSocket(raw.url, [], { perMessageDeflate: false }))
    const events: string[] = []
    ws.addEventListener('open', () => events.push('open'))
    ws.addEventListener('error', () => events.push('error'))
    const closed = await once<CloseEvent>(ws, 'close', 8000)
    assert.equal(closed.code, 1006)
    assert.deepEqual(events, ['error'])
  })
})

describe('client: the offer and a valid response', () => {
  test('default offer is the browsers one; no response header → no compression', async () => {
    const raw = await RawServer.start(undefined)
    const ws = track(new WebSocket(raw.url))
    await once(ws, 'open')
    const { request, reader } = await raw.connections.next()
    assert.deepEqual(request.headers.get('sec-websocket-extensions'), [
      'permessage-deflate; client_max_window_bits',
    ])
    assert.equal(ws.extensions, '')
    const text = compressibleText(5000)
    ws.send(text)
    const frame = await reader.frames.next()
    assert.equal(frame.rsv, 0)
    assert.equal(frame.payload.toString(), text)
  })

  test('custom offer is sent as configured', async () => {
    const raw = await RawServer.start(undefined)
    const ws = track(
      new WebSocket(raw.url, [], {
        perMessageDeflate: {
          serverNoContextTakeover: true,
          clientNoContextTakeover: true,
          serverMaxWindowBits: 10,
          clientMaxWindowBits: 9,
        },
      }),
    )
    await once(ws, 'open')
    const { request } = await raw.connections.next()
    assert.deepEqual(request.headers.get('sec-websocket-extensions'), [
      'permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=9',
    ])
  })

  async function clientFrames(threshold: number | undefined, sends: string[]): Promise<ParsedFrame[]> {
    const raw = await RawServer.start(
      'permessage-deflate; server_no_context_takeover; client_no_context_takeover',
    )
    const ws = track(
      new WebSocket(raw.url, [], threshold === undefined ? {} : { perMessageDeflate: { threshold } }),
    )
    await once(ws, 'open')
    assert.equal(ws.extensions, 'permessage-deflate; server_no_context_takeover; client_no_context_takeover')
    const { reader } = await raw.connections.next()
    for (const text of sends) ws.send(text)
    const frames: ParsedFrame[] = []
    for (let i = 0; i < sends.length; i++) frames.push(await reader.frames.next())
    frames.forEach((frame, i) => {
      const data = frame.rsv & RSV1 ? inflate(frame.payload) : frame.payload
      assert.equal(data.toString(), sends[i], `frame ${i} content`)
      assert.equal(frame.fin, true)
      assert.equal(frame.opcode, Op.Text)
    })
    return frames
  }

  test('client threshold default 1024: 100 B plain, 1023 B plain, 1024 B and 2000 B compressed', async () => {
    const frames = await clientFrames(undefined, [
      'a'.repeat(100),
      compressibleText(2000),
      'b'.repeat(1023),
      'c'.repeat(1024),
    ])
    assert.deepEqual(
      frames.map((f) => f.rsv),
      [0, RSV1, 0, RSV1],
    )
  })

  test('client threshold option: 50 compresses 100 B, 5000 leaves 2000 B plain', async () => {
    const low = await clientFrames(50, ['a'.repeat(100), 'b'.repeat(49)])
    assert.deepEqual(
      low.map((f) => f.rsv),
      [RSV1, 0],
    )
    const high = await clientFrames(5000, [compressibleText(2000)])
    assert.deepEqual(
      high.map((f) => f.rsv),
      [0],
    )
  })

  test('compressed messages from the server are inflated by the client', async () => {
    const raw = await RawServer.start('permessage-deflate; server_no_context_takeover')
    const ws = track(new WebSocket(raw.url))
    ws.binaryType = 'arraybuffer'
    await once(ws, 'open')
    const { socket } = await raw.connections.next()
    const text = compressibleText(3000)
    const payload = deflate(text)
    const header = Buffer.from([0x80 | RSV1 | Op.Text, 126, 0, 0])
    header.writeUInt16BE(payload.length, 2)
    const message = once<MessageEvent>(ws, 'message', 5000)
    socket.write(Buffer.concat([header, payload]))
    assert.equal((await withTimeout(message, 5000, 'message')).data, text)
  })
})
