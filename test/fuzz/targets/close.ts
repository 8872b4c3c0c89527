/**
 * Fuzz target: the close frame's payload (RFC 6455 5.5.1, 7.4), as a Connection reads it.
 *
 * Input: one configuration byte, then the close frame's payload (any length up to 127 bytes).
 *   bit 0  0: we are the server (the frame comes masked); 1: we are the client
 *   bit 1  we sent our close frame first (the peer's is the reply)
 *   bit 2  split the frame at the byte given by the configuration byte's top bits
 *
 * Invariants, checked against a reading of the RFC written here, not the code under test:
 * - a payload of 1 byte, a code outside 1000-1003, 1007-1014 and 3000-4999, or a payload over
 *   125 bytes fails with 1002; a reason that is not UTF-8 fails with 1007;
 * - otherwise the close event has the code (1005 for an empty payload) and the decoded reason,
 *   and the reply (when we had not closed first) carries exactly the peer's payload back;
 * - a server closes the transport once the close handshake is done; the close is clean;
 * - a data frame after the close frame is never delivered.
 */
import assert from 'node:assert/strict'
import { Buffer } from 'node:buffer'
import { Connection, type ConnectionHandler } from '../../../src/protocol/connection.js'
import type { ProtocolError } from '../../../src/protocol/errors.js'
import type { FuzzTarget } from '../engine.js'

const MASK_KEY = Uint8Array.of(0xa1, 0x5e, 0x07, 0xc3)
const strictUtf8 = new TextDecoder('utf-8', { fatal: true })

function expectedCode(code: number): boolean {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999)
}

/** What RFC 6455 says the connection must make of this payload. */
function expected(payload: Uint8Array): { fail: number } | { code: number; reason: string } {
  if (payload.length > 125 || payload.length === 1) return { fail: 1002 }
  if (payload.length === 0) return { code: 1005, reason: '' }
  const code = (payload[0]! << 8) | payload[1]!
  if (!expectedCode(code)) return { fail: 1002 }
  try {
    return { code, reason: strictUtf8.decode(payload.subarray(2)) }
  } catch {
    return { fail: 1007 }
  }
}

/** A frame as the peer sends it: masked when it comes from a client. */
function frame(opcode: number, payload: Uint8Array, masked: boolean): Uint8Array {
  const length = payload.length
  const header = length <= 125 ? [0x80 | opcode, length] : [0x80 | opcode, 126, length >> 8, length & 0xff]
  if (!masked) return Buffer.concat([Uint8Array.from(header), payload])
  header[1]! |= 0x80
  const body = payload.map((byte, i) => byte ^ MASK_KEY[i % 4]!)
  return Buffer.concat([Uint8Array.from(header), MASK_KEY, body])
}

/** The payload of a close frame we wrote (unmasked with its own key when we are the client). */
function writtenClosePayload(bytes: Uint8Array): Uint8Array {
  assert.equal(bytes[0], 0x88, 'the last frame written is not a close frame')
  const masked = (bytes[1]! & 0x80) !== 0
  const length = bytes[1]! & 0x7f
  const start = masked ? 6 : 2
  const body = bytes.slice(start, start + length)
  if (masked) for (let i = 0; i < body.length; i++) body[i]! ^= bytes[2 + (i % 4)]!
  return body
}

function run(data: Uint8Array): void {
  if (data.length === 0) return
  const config = data[0]!
  const side = (config & 1) === 0 ? 'server' : 'client'
  const weClosedFirst = (config & 2) !== 0
  const payload = data.subarray(1, 128)
  const closeFrame = frame(0x8, payload, side === 'server')
  const after = frame(0x1, new TextEncoder().encode('after close'), side === 'server')
  const wire = Buffer.concat([closeFrame, after])

  const written: Uint8Array[] = []
  let closeEvent: { code: number; reason: string } | undefined
  let failure: ProtocolError | undefined
  let transportClosed = false
  const handler: ConnectionHandler = {
    write: (header, body) => written.push(body === undefined ? header : Buffer.concat([header, body])),
    closeTransport: () => {
      transportClosed = true
    },
    message: () => assert.fail('a message after the close frame was delivered'),
    ping: () => assert.fail('no ping was sent'),
    pong: () => assert.fail('no pong was sent'),
    closeReceived: (code, reason) => {
      closeEvent = { code, reason }
    },
    protocolError: (error) => {
      failure = error
    },
  }
  const connection = new Connection(side, handler, { maskKey: Uint8Array.of(1, 2, 3, 4) })
  if (weClosedFirst) connection.close(4000, 'ours')
  const writtenBefore = written.length
  if ((config & 4) !== 0) {
    const split = (config >> 3) % (wire.length + 1)
    connection.receive(wire.subarray(0, split))
    connection.receive(wire.subarray(split))
  } else {
    connection.receive(wire)
  }

  const want = expected(payload)
  if ('fail' in want) {
    assert.ok(failure !== undefined, `payload ${Buffer.from(payload).toString('hex')} was accepted`)
    assert.equal(failure.closeCode, want.fail)
    assert.equal(closeEvent, undefined)
    assert.ok(transportClosed, 'a failed connection did not close its transport')
    if (!weClosedFirst) {
      const reply = writtenClosePayload(written.at(-1)!)
      assert.equal((reply[0]! << 8) | reply[1]!, want.fail)
    }
    return
  }
  assert.equal(failure, undefined, `a valid close frame failed: ${failure?.message}`)
  assert.deepEqual(closeEvent, want)
  if (weClosedFirst) {
    // RFC 6455 5.5.1: one close frame each way; the reply is not answered.
    assert.equal(written.length, writtenBefore)
  } else {
    assert.equal(written.length, writtenBefore + 1)
    const reply = Buffer.from(writtenClosePayload(written.at(-1)!)).toString('hex')
    assert.equal(reply, Buffer.from(payload).toString('hex'), 'the reply does not carry the payload back')
  }
  // RFC 6455 7.1.1: the server closes the TCP connection first.
  assert.equal(transportClosed, side === 'server')
  const info = connection.transportClosed()
  assert.deepEqual(info, { code: want.code, reason: want.reason, wasClean: true, error: undefined })
}

export const target: FuzzTarget = {
  name: 'close',
  maxLength: 130,
  coverage: ['/src/protocol/'],
  dictionary: [
    Uint8Array.of(0x03, 0xe8),
    Uint8Array.of(0x03, 0xed),
    Uint8Array.of(0x03, 0xee),
    Uint8Array.of(0x03, 0xf6),
    Uint8Array.of(0x0b, 0xb8),
    Uint8Array.of(0x13, 0x87),
    Uint8Array.of(0xc3, 0xa9),
    Uint8Array.of(0xe2, 0x82, 0xac),
    Uint8Array.of(0xf0, 0x9f, 0x98, 0x80),
    Uint8Array.of(0xed, 0xa0, 0x80),
    Uint8Array.of(0xf4, 0x90, 0x80, 0x80),
    Uint8Array.of(0xc0, 0x80),
  ],
  run,
}
