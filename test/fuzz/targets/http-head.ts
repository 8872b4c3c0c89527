/**
 * Fuzz target: the opening handshake's bytes, as a server reads a request on its own port and as
 * a client reads the response (HttpHeadParser, then validateRequest / validateResponse).
 *
 * Invariants:
 * - the only exceptions are HandshakeErrors with a status the server can answer (400, 405, 426,
 *   431) — nothing else, however the bytes look;
 * - the head and the bytes after it are the same whether the input comes at once, split at any
 *   point, or one byte at a time; a head over `maxHeaderBytes` fails with 431 as soon as it is;
 * - field names are lower-case tokens and no value holds CR, LF or NUL (RFC 9110 5.5);
 * - the request object an `upgrade` handler sees (requestFromHead) builds and reads without
 *   throwing; only a request line ending in exactly HTTP/1.1 is accepted (RFC 9112 2.3);
 * - a request that validates gets a 101 response that our own client accepts.
 */
import assert from 'node:assert/strict'
import { Buffer } from 'node:buffer'
import type { Socket } from 'node:net'
import { HandshakeError } from '../../../src/protocol/errors.js'
import { generateKey } from '../../../src/protocol/handshake/accept-key.js'
import { validateResponse } from '../../../src/protocol/handshake/client.js'
import { isToken } from '../../../src/protocol/handshake/headers.js'
import { type HttpHead, HttpHeadParser } from '../../../src/protocol/handshake/http-head.js'
import { buildAcceptResponse, validateRequest } from '../../../src/protocol/handshake/server.js'
import { requestFromHead } from '../../../src/server/upgrade-request.js'
import type { FuzzTarget } from '../engine.js'

const OPTIONS = { maxHeaderBytes: 512, maxHeaderCount: 12 }
const SERVER_STATUSES = new Set([400, 405, 426, 431])

type Outcome = { head: HttpHead; restHex: string; used: number } | { status: number } | 'incomplete'

/** Feeds the chunks; the outcome is the head (and what follows it) or the refusal's status. */
function parse(chunks: readonly Uint8Array[]): Outcome {
  const parser = new HttpHeadParser(OPTIONS)
  let fed = 0
  for (const [index, chunk] of chunks.entries()) {
    try {
      const result = parser.push(chunk)
      fed += chunk.length
      if (result !== undefined) {
        const used = fed - result.rest.length
        assert.ok(used <= OPTIONS.maxHeaderBytes, `a head of ${used} bytes passed maxHeaderBytes`)
        // What follows the head: the rest of this chunk, then the chunks the parser never saw
        // (a server hands them all to the WebSocket connection).
        const rest = Buffer.concat([result.rest, ...chunks.slice(index + 1)])
        return { head: result.head, restHex: rest.toString('hex'), used }
      }
    } catch (error) {
      if (!(error instanceof HandshakeError)) throw error
      assert.ok(error.status === 400 || error.status === 431, `HttpHeadParser refused with ${error.status}`)
      return { status: error.status }
    }
  }
  return 'incomplete'
}

function checkHead(head: HttpHead): void {
  let count = 0
  for (const [name, values] of Object.entries(head.fields)) {
    assert.ok(isToken(name) && name === name.toLowerCase(), `field name ${JSON.stringify(name)}`)
    for (const value of values) {
      assert.ok(!/[\r\n\0]/.test(value), `CR, LF or NUL reached the value of ${name}`)
      assert.ok(!/^[ \t]|[ \t]$/.test(value), `whitespace left around the value of ${name}`)
    }
    count += values.length
  }
  assert.equal(count, head.fieldCount)
  assert.ok(count <= OPTIONS.maxHeaderCount, `${count} fields passed maxHeaderCount`)
}

/** Stands in for the socket: building the request only keeps a reference to it. */
const socket = {} as Socket

/**
 * The server's decision on a request head, as on its own port: the request object the `upgrade`
 * handler sees, then the handshake's validation. Refusals must carry an answerable status.
 */
function serverDecision(head: HttpHead): void {
  let validated: ReturnType<typeof validateRequest>
  try {
    const request = requestFromHead(head, socket)
    // The application may read any of these; none may throw.
    void request.headers
    void request.rawHeaders
    validated = validateRequest({
      method: request.method ?? '',
      httpVersion: request.httpVersion,
      fields: request.headersDistinct,
    })
  } catch (error) {
    if (!(error instanceof HandshakeError)) throw error
    assert.ok(SERVER_STATUSES.has(error.status), `the server would answer ${error.status}`)
    return
  }
  // RFC 9112 2.3: HTTP-version = HTTP-name "/" DIGIT "." DIGIT; the handshake needs 1.1 (RFC 6455
  // 4.2.1). Node's own parser refuses anything else; so must ours.
  assert.equal(head.startLine[2], 'HTTP/1.1', `a request line with ${head.startLine[2]} was accepted`)
  // What we accept, our own client must accept in turn.
  const protocol = validated.protocols[0]
  const response = new TextEncoder().encode(buildAcceptResponse(validated.key, { protocol }))
  const parsed = parse([response])
  assert.ok(typeof parsed === 'object' && 'head' in parsed, 'our 101 response does not parse')
  validateResponse(parsed.head, validated.key, validated.protocols, false)
}

const clientKey = generateKey()

/** The client's reading of a response head: a HandshakeError or a result, never anything else. */
function clientDecision(head: HttpHead): void {
  try {
    validateResponse(head, clientKey, ['chat'], true)
  } catch (error) {
    if (!(error instanceof HandshakeError)) throw error
  }
}

function run(data: Uint8Array): void {
  const reference = parse([data])
  for (let split = 1; split < data.length; split++) {
    const outcome = parse([data.subarray(0, split), data.subarray(split)])
    assert.deepEqual(outcome, reference, `the outcome changes when the input is split at byte ${split}`)
  }
  const bytewise = parse(Array.from({ length: data.length }, (_, i) => data.subarray(i, i + 1)))
  assert.deepEqual(bytewise, reference, 'the outcome changes when the input comes one byte at a time')
  if (typeof reference === 'string') {
    assert.ok(data.length <= OPTIONS.maxHeaderBytes, 'a head past maxHeaderBytes is still being read')
    return
  }
  if ('status' in reference) return
  checkHead(reference.head)
  serverDecision(reference.head)
  clientDecision(reference.head)
}

const text = (value: string): Uint8Array => new TextEncoder().encode(value)

export const target: FuzzTarget = {
  name: 'http-head',
  maxLength: 600,
  coverage: ['/src/protocol/', '/src/server/upgrade-request'],
  dictionary: [
    text('\r\n'),
    text('\r\n\r\n'),
    text('GET / HTTP/1.1\r\n'),
    text('HTTP/1.1 101 Switching Protocols\r\n'),
    text('Host: a\r\n'),
    text('Upgrade: websocket\r\n'),
    text('Connection: Upgrade\r\n'),
    text('Sec-WebSocket-Version: 13\r\n'),
    text('Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n'),
    text('Sec-WebSocket-Protocol: chat, superchat\r\n'),
    text('Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n'),
    text('Sec-WebSocket-Accept: '),
    text(': '),
    text(', '),
    text(' \t'),
    Uint8Array.of(0),
    Uint8Array.of(0x0a),
    Uint8Array.of(0x0d),
  ],
  run,
}
