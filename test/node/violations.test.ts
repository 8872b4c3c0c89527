/**
 * Protocol violations from a hand-made client: each gets the right close frame from the server,
 * then an orderly TCP close, while a well-behaved client on the same server carries on.
 */
import assert from 'node:assert/strict'
import { Buffer } from 'node:buffer'
import { after, before, describe, it } from 'node:test'
import type { ProtocolError, ServerWebSocket, WebSocket } from '../../src/index.js'
import { Opcode } from '../../src/protocol/index.js'
import {
  closeCodeOf,
  closePayload,
  collectMessages,
  disposeAll,
  EventQueue,
  frame,
  openClient,
  RawClient,
  type StartedServer,
  startServer,
} from './helpers.js'

const MAX_PAYLOAD = 1024

/** A masked frame header with a 64-bit length field holding `high` and `low` (no payload). */
function header64(opcode: number, high: number, low: number): Buffer {
  const header = Buffer.alloc(14)
  header[0] = 0x80 | opcode
  header[1] = 0x80 | 127
  header.writeUInt32BE(high, 2)
  header.writeUInt32BE(low, 6)
  header.set([1, 2, 3, 4], 10)
  return header
}

interface Violation {
  name: string
  bytes: () => Buffer
  code: number
  /** The ProtocolError code the server's error handler receives. */
  error: string
}

const VIOLATIONS: Violation[] = [
  {
    name: 'unmasked frame',
    bytes: () => frame(Opcode.Text, 'hello', { mask: false }),
    code: 1002,
    error: 'RALLY_ERR_MASK_REQUIRED',
  },
  {
    name: 'RSV1 set without an extension',
    bytes: () => frame(Opcode.Text, 'hello', { rsv: 0x40 }),
    code: 1002,
    error: 'RALLY_ERR_RESERVED_BITS',
  },
  {
    name: 'RSV2 and RSV3 set',
    bytes: () => frame(Opcode.Binary, 'x', { rsv: 0x30 }),
    code: 1002,
    error: 'RALLY_ERR_RESERVED_BITS',
  },
  {
    name: 'reserved data opcode 3',
    bytes: () => frame(3, 'x'),
    code: 1002,
    error: 'RALLY_ERR_UNKNOWN_OPCODE',
  },
  {
    name: 'reserved control opcode 0xB',
    bytes: () => frame(0xb, ''),
    code: 1002,
    error: 'RALLY_ERR_UNKNOWN_OPCODE',
  },
  {
    name: 'ping of 126 bytes',
    bytes: () => frame(Opcode.Ping, Buffer.alloc(126, 0x70)),
    code: 1002,
    error: 'RALLY_ERR_CONTROL_FRAME_TOO_LONG',
  },
  {
    name: 'fragmented ping (FIN clear)',
    bytes: () => frame(Opcode.Ping, 'p', { fin: false }),
    code: 1002,
    error: 'RALLY_ERR_CONTROL_FRAME_FRAGMENTED',
  },
  {
    name: '64-bit length with the most significant bit set',
    bytes: () => header64(Opcode.Binary, 0x80000000, 0),
    code: 1002,
    error: 'RALLY_ERR_LENGTH_OUT_OF_RANGE',
  },
  {
    // Only the header is sent: the server must refuse on the declared length alone.
    name: 'frame header declaring 1 MiB over maxPayload (1024), no payload sent',
    bytes: () => header64(Opcode.Binary, 0, 1024 * 1024),
    code: 1009,
    error: 'RALLY_ERR_FRAME_TOO_LARGE',
  },
  {
    name: 'fragments adding up to more than maxPayload',
    bytes: () =>
      Buffer.concat([
        frame(Opcode.Binary, Buffer.alloc(1000), { fin: false }),
        frame(Opcode.Continuation, Buffer.alloc(25), { fin: true }),
      ]),
    code: 1009,
    error: 'RALLY_ERR_MESSAGE_TOO_LARGE',
  },
  {
    name: 'continuation without a message to continue',
    bytes: () => frame(Opcode.Continuation, 'orphan'),
    code: 1002,
    error: 'RALLY_ERR_UNEXPECTED_CONTINUATION',
  },
  {
    name: 'new data frame inside a fragmented message',
    bytes: () =>
      Buffer.concat([frame(Opcode.Text, 'a', { fin: false }), frame(Opcode.Text, 'b', { fin: true })]),
    code: 1002,
    error: 'RALLY_ERR_EXPECTED_CONTINUATION',
  },
  {
    name: 'text frame with invalid UTF-8',
    bytes: () => frame(Opcode.Text, Buffer.from([0x68, 0x69, 0xc3, 0x28])),
    code: 1007,
    error: 'RALLY_ERR_INVALID_UTF8',
  },
  {
    name: 'text ending inside a UTF-8 sequence',
    bytes: () => frame(Opcode.Text, Buffer.from([0x61, 0xe2, 0x82])),
    code: 1007,
    error: 'RALLY_ERR_INVALID_UTF8',
  },
  {
    name: 'invalid UTF-8 in a later fragment of a text message',
    bytes: () =>
      Buffer.concat([
        frame(Opcode.Text, 'valid', { fin: false }),
        frame(Opcode.Continuation, Buffer.from([0xff]), { fin: true }),
      ]),
    code: 1007,
    error: 'RALLY_ERR_INVALID_UTF8',
  },
  {
    name: 'close frame with a 1-byte payload',
    bytes: () => frame(Opcode.Close, Buffer.from([0x03])),
    code: 1002,
    error: 'RALLY_ERR_INVALID_CLOSE_PAYLOAD',
  },
  {
    name: 'close code 1005 on the wire',
    bytes: () => frame(Opcode.Close, closePayload(1005)),
    code: 1002,
    error: 'RALLY_ERR_INVALID_CLOSE_CODE',
  },
  {
    name: 'close code 1006 on the wire',
    bytes: () => frame(Opcode.Close, closePayload(1006)),
    code: 1002,
    error: 'RALLY_ERR_INVALID_CLOSE_CODE',
  },
  {
    name: 'close code 999',
    bytes: () => frame(Opcode.Close, closePayload(999)),
    code: 1002,
    error: 'RALLY_ERR_INVALID_CLOSE_CODE',
  },
  {
    name: 'close code 5000',
    bytes: () => frame(Opcode.Close, closePayload(5000)),
    code: 1002,
    error: 'RALLY_ERR_INVALID_CLOSE_CODE',
  },
  {
    name: 'close reason that is not UTF-8',
    bytes: () => frame(Opcode.Close, closePayload(1000, Buffer.from([0xce, 0xba, 0xe1, 0xbd]))),
    code: 1007,
    error: 'RALLY_ERR_INVALID_CLOSE_REASON',
  },
]

describe('protocol violations', () => {
  let started: StartedServer<undefined>
  const errors = new EventQueue<{ error: unknown; ws: ServerWebSocket<undefined> | undefined }>()
  const closes = new EventQueue<number>()
  let good: WebSocket
  let goodMessages: EventQueue<MessageEvent>
  let exchanges = 0

  before(async () => {
    started = await startServer({
      maxPayload: MAX_PAYLOAD,
      closeTimeout: 3000,
      message(ws, data, isBinary) {
        ws.send(data, { binary: isBinary })
      },
      close(_ws, code) {
        closes.push(code)
      },
      error(error, ws) {
        errors.push({ error, ws })
      },
    })
    good = await openClient(started.url)
    goodMessages = collectMessages(good)
  })
  after(disposeAll)

  /** The well-behaved client still gets its echoes. */
  async function goodClientWorks(): Promise<void> {
    const text = `still fine ${++exchanges}`
    good.send(text)
    const event = await goodMessages.next(2000, 'the good client echo')
    assert.equal(event.data, text)
  }

  for (const violation of VIOLATIONS) {
    it(`${violation.name} → close ${violation.code}, then TCP close`, async () => {
      const raw = await RawClient.open(started.port)
      const before = started.server.stats().protocolErrors
      raw.write(violation.bytes())
      const closeFrame = await raw.readFrame(2000)
      assert.equal(closeFrame.opcode, Opcode.Close, 'the server answers with a close frame')
      assert.equal(closeFrame.fin, true)
      assert.equal(closeFrame.masked, false)
      assert.equal(closeCodeOf(closeFrame), violation.code)
      // The server closes TCP itself (FIN), well before its closeTimeout (3000 ms).
      await raw.waitForClose(1000)
      assert.equal(raw.gotEnd, true, 'an orderly FIN from the server')
      assert.equal(raw.buffer.length, 0, 'nothing after the close frame')
      const reported = await errors.next(1000, 'the error handler')
      assert.equal((reported.error as ProtocolError).name, 'ProtocolError')
      assert.equal((reported.error as ProtocolError).code, violation.error)
      assert.equal((reported.error as ProtocolError).closeCode, violation.code)
      assert.ok(reported.ws !== undefined, 'the error comes with its socket')
      assert.equal(started.server.stats().protocolErrors, before + 1)
      // The server failed the connection: no close frame was received from the peer.
      assert.equal(await closes.next(1000, 'the close handler'), 1006)
      await goodClientWorks()
    })
  }

  it('a frame at exactly maxPayload is accepted; the good client still works', async () => {
    const raw = await RawClient.open(started.port)
    const payload = Buffer.alloc(MAX_PAYLOAD, 0x42)
    raw.write(frame(Opcode.Binary, payload))
    const echo = await raw.readFrame()
    assert.equal(echo.opcode, Opcode.Binary)
    assert.ok(echo.payload.equals(payload))
    raw.write(frame(Opcode.Close, closePayload(1000)))
    const reply = await raw.readFrame()
    assert.equal(closeCodeOf(reply), 1000)
    await raw.waitForClose(1000)
    assert.equal(await closes.next(), 1000)
    await goodClientWorks()
    assert.equal(errors.size, 0)
  })

  it('the valid close codes 1000-1003, 1007-1014, 3000, 4999 are accepted and echoed', async () => {
    for (const code of [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999]) {
      const raw = await RawClient.open(started.port)
      raw.write(frame(Opcode.Close, closePayload(code, 'ok')))
      const reply = await raw.readFrame()
      assert.equal(closeCodeOf(reply), code, `echo of ${code}`)
      await raw.waitForClose(1000)
      assert.equal(await closes.next(), code)
    }
    assert.equal(errors.size, 0)
    await goodClientWorks()
  })

  it('a valid frame written one byte per TCP write is reassembled (header split across chunks)', async () => {
    const raw = await RawClient.open(started.port)
    const text = 'x'.repeat(200) // 16-bit length: a 8-byte masked header
    const bytes = frame(Opcode.Text, text)
    for (const byte of bytes) {
      raw.write(Buffer.from([byte]))
      await new Promise((resolve) => setImmediate(resolve))
    }
    const echo = await raw.readFrame()
    assert.equal(echo.payload.toString(), text)
    raw.destroy()
    assert.equal(await closes.next(), 1006)
    assert.equal(errors.size, 0)
  })

  it('the first 2 header bytes of an oversized ping are enough: close 1002 before the rest', async () => {
    const raw = await RawClient.open(started.port)
    raw.write(Buffer.from([0x89, 0x80 | 126]))
    const closeFrame = await raw.readFrame(2000)
    assert.equal(closeCodeOf(closeFrame), 1002)
    await raw.waitForClose(1000)
    assert.equal(((await errors.next()).error as ProtocolError).code, 'RALLY_ERR_CONTROL_FRAME_TOO_LONG')
    assert.equal(await closes.next(), 1006)
  })

  it('a 1 MiB frame header sent one byte per write → 1009 as soon as the header is complete', async () => {
    const raw = await RawClient.open(started.port)
    const header = header64(Opcode.Binary, 0, 1024 * 1024)
    for (let i = 0; i < header.length - 1; i++) {
      // Each byte flushed to the kernel before the next: one TCP segment per byte.
      await new Promise((resolve) => raw.socket.write(header.subarray(i, i + 1), resolve))
    }
    // No event marks "the server read these bytes and stayed silent": a bounded wait for the
    // close frame that must not come before the header is complete.
    const answeredEarly = await raw.readFrame(100).then(
      () => true,
      () => false,
    )
    assert.equal(answeredEarly, false, 'nothing before the header is complete')
    assert.equal(raw.buffer.length, 0, 'nothing before the header is complete')
    raw.write(header.subarray(header.length - 1))
    const closeFrame = await raw.readFrame(2000)
    assert.equal(closeCodeOf(closeFrame), 1009)
    await raw.waitForClose(1000)
    assert.equal(((await errors.next()).error as ProtocolError).code, 'RALLY_ERR_FRAME_TOO_LARGE')
    assert.equal(await closes.next(), 1006)
    await goodClientWorks()
  })

  it('a violation in the head bytes (sent with the handshake) → 101, then close 1002', async () => {
    const raw = await RawClient.open(started.port, {}, frame(Opcode.Text, 'unmasked', { mask: false }))
    const closeFrame = await raw.readFrame(2000)
    assert.equal(closeCodeOf(closeFrame), 1002)
    await raw.waitForClose(1000)
    assert.equal(((await errors.next()).error as ProtocolError).code, 'RALLY_ERR_MASK_REQUIRED')
    assert.equal(await closes.next(), 1006)
    await goodClientWorks()
  })

  it('a close frame in the head bytes → 101, the echo, TCP close; close handler gets the code', async () => {
    const raw = await RawClient.open(started.port, {}, frame(Opcode.Close, closePayload(4321, 'early')))
    const reply = await raw.readFrame(2000)
    assert.equal(closeCodeOf(reply), 4321)
    await raw.waitForClose(1000)
    assert.equal(await closes.next(), 4321)
  })

  it('the good client saw only its own echoes', () => {
    assert.equal(goodMessages.size, 0)
    assert.equal(goodMessages.all.length, exchanges)
  })
})
