/**
 * The HTTP head parser of the opening handshake: incremental, bounded, strict about syntax.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { HandshakeError, HttpHeadParser, type HttpHeadResult, parseHead } from '../../src/protocol/index.js'
import { bytes, chunksAt, concat, hex } from './helpers.js'

const LIMITS = { maxHeaderBytes: 16 * 1024, maxHeaderCount: 100 }
const latin1 = (text: string) => Uint8Array.from(text, (c) => c.charCodeAt(0))

const REQUEST =
  'GET /chat?room=1 HTTP/1.1\r\n' +
  'Host: server.example.com\r\n' +
  'Upgrade: websocket\r\n' +
  'Connection: Upgrade\r\n' +
  'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n' +
  'Sec-WebSocket-Protocol: chat, superchat\r\n' +
  'sec-websocket-protocol:v2\r\n' +
  'Sec-WebSocket-Version: 13\r\n' +
  'X-Spaces: \t padded value \t\r\n' +
  'X-Empty:\r\n' +
  '\r\n'

const EXPECTED_HEAD = {
  startLine: ['GET', '/chat?room=1', 'HTTP/1.1'],
  fields: {
    host: ['server.example.com'],
    upgrade: ['websocket'],
    connection: ['Upgrade'],
    'sec-websocket-key': ['dGhlIHNhbXBsZSBub25jZQ=='],
    'sec-websocket-protocol': ['chat, superchat', 'v2'],
    'sec-websocket-version': ['13'],
    'x-spaces': ['padded value'],
    'x-empty': [''],
  },
  fieldCount: 9,
}

function feed(parser: HttpHeadParser, chunks: Uint8Array[]): HttpHeadResult | undefined {
  let result: HttpHeadResult | undefined
  for (const chunk of chunks) {
    const r = parser.push(chunk)
    if (r !== undefined) {
      assert.equal(result, undefined, 'the head completes once')
      result = r
      break
    }
  }
  return result
}

function normalize(result: HttpHeadResult | undefined) {
  assert.ok(result !== undefined, 'head should be complete')
  return { head: { ...result.head, fields: { ...result.head.fields } }, rest: hex(result.rest) }
}

function expectHandshakeError(fn: () => unknown, status: number) {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof HandshakeError, `expected HandshakeError, got ${String(error)}`)
    assert.equal(error.status, status)
    return true
  })
}

describe('HttpHeadParser', () => {
  it('parses a request head: start line, lower-case names, every value in order, trimmed', () => {
    const result = new HttpHeadParser(LIMITS).push(latin1(REQUEST))
    assert.deepEqual(normalize(result), { head: EXPECTED_HEAD, rest: '' })
  })

  it('gives the same head and rest bytes when fed split at every position, and byte by byte', () => {
    const frames = bytes(0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58)
    const input = concat(latin1(REQUEST), frames)
    const expected = { head: EXPECTED_HEAD, rest: hex(frames) }
    for (let cut = 0; cut <= input.length; cut++) {
      const result = feed(new HttpHeadParser(LIMITS), chunksAt(input, [cut]))
      const got = normalize(result)
      // The rest is what followed the head in the chunk that completed it.
      const headLength = REQUEST.length
      const restExpected = cut >= headLength ? hex(input.subarray(headLength, cut)) : hex(frames)
      assert.deepEqual(got, { ...expected, rest: restExpected }, `cut at ${cut}`)
    }
    const oneByOne = feed(
      new HttpHeadParser(LIMITS),
      Array.from(input, (b) => Uint8Array.of(b)),
    )
    assert.deepEqual(normalize(oneByOne), { head: EXPECTED_HEAD, rest: '' })
  })

  it('returns the bytes after the head as a view of the last chunk', () => {
    const chunk = concat(latin1('GET / HTTP/1.1\r\nHost: a\r\n\r\n'), bytes(1, 2, 3))
    const result = new HttpHeadParser(LIMITS).push(chunk)!
    assert.equal(hex(result.rest), '010203')
    assert.equal(result.rest.buffer, chunk.buffer)
  })

  it('finds the blank line whatever CR and LF bytes come before it', () => {
    // "\r\r\n\r\n": the first CR does not start the terminator, the second does.
    const input = latin1('GET / HTTP/1.1\r\nA: b\r\r\n\r\nrest')
    for (let cut = 0; cut <= input.length; cut++) {
      // The bare CR left in the field value makes the head malformed, wherever the input was cut.
      expectHandshakeError(() => feed(new HttpHeadParser(LIMITS), chunksAt(input, [cut])), 400)
    }
    const ok = latin1('GET / HTTP/1.1\r\nA: b\r\n\r\nrest')
    for (let cut = 0; cut <= ok.length; cut++) {
      const result = feed(new HttpHeadParser(LIMITS), chunksAt(ok, [cut]))
      assert.deepEqual(result?.head.fields.a, ['b'], `cut at ${cut}`)
    }
    // A bare LF LF is not the end of the head.
    assert.equal(new HttpHeadParser(LIMITS).push(latin1('GET / HTTP/1.1\nHost: a\n\n')), undefined)
    assert.equal(new HttpHeadParser(LIMITS).push(latin1('GET / HTTP/1.1\r\n\n\r\n')), undefined)
  })

  it('throws 431 as soon as the head passes maxHeaderBytes, before the terminator arrives', () => {
    const limits = { maxHeaderBytes: 64, maxHeaderCount: 100 }
    const parser = new HttpHeadParser(limits)
    assert.equal(parser.push(latin1('GET / HTTP/1.1\r\nX: ')), undefined)
    const filler = latin1('a'.repeat(64 - 19))
    assert.equal(parser.push(filler), undefined) // exactly 64 bytes so far
    expectHandshakeError(() => parser.push(latin1('a')), 431)

    // One big chunk without a terminator.
    expectHandshakeError(() => new HttpHeadParser(limits).push(latin1('x'.repeat(65))), 431)
  })

  it('a head of exactly maxHeaderBytes is accepted, and bytes after it do not count', () => {
    const head = 'GET / HTTP/1.1\r\nX: aaaa\r\n\r\n'
    const limits = { maxHeaderBytes: head.length, maxHeaderCount: 100 }
    const result = new HttpHeadParser(limits).push(concat(latin1(head), new Uint8Array(1000)))
    assert.equal(result!.rest.length, 1000)
    expectHandshakeError(
      () => new HttpHeadParser({ ...limits, maxHeaderBytes: head.length - 1 }).push(latin1(head)),
      431,
    )
  })

  it('throws 431 for more than maxHeaderCount fields', () => {
    const fields = (n: number) => Array.from({ length: n }, (_, i) => `X-${i}: ${i}\r\n`).join('')
    const limits = { maxHeaderBytes: 1 << 20, maxHeaderCount: 10 }
    const ok = new HttpHeadParser(limits).push(latin1(`GET / HTTP/1.1\r\n${fields(10)}\r\n`))
    assert.equal(ok!.head.fieldCount, 10)
    expectHandshakeError(
      () => new HttpHeadParser(limits).push(latin1(`GET / HTTP/1.1\r\n${fields(11)}\r\n`)),
      431,
    )
    // The default is 100.
    expectHandshakeError(
      () => new HttpHeadParser(LIMITS).push(latin1(`GET / HTTP/1.1\r\n${fields(101)}\r\n`)),
      431,
    )
  })

  const malformed: [string, string][] = [
    ['empty head', '\r\n\r\n'],
    ['start line with two parts', 'GET /\r\nHost: a\r\n\r\n'],
    ['start line with a double space', 'GET  / HTTP/1.1\r\nHost: a\r\n\r\n'],
    ['start line with a leading space', ' GET / HTTP/1.1\r\nHost: a\r\n\r\n'],
    ['field without a colon', 'GET / HTTP/1.1\r\nHost a\r\n\r\n'],
    ['empty field name', 'GET / HTTP/1.1\r\n: a\r\n\r\n'],
    ['space before the colon', 'GET / HTTP/1.1\r\nHost : a\r\n\r\n'],
    ['obsolete line folding (space)', 'GET / HTTP/1.1\r\nHost: a\r\n b\r\n\r\n'],
    ['obsolete line folding (tab)', 'GET / HTTP/1.1\r\nHost: a\r\n\tb\r\n\r\n'],
    ['non-token character in a name', 'GET / HTTP/1.1\r\nHo(st: a\r\n\r\n'],
    ['non-ASCII name', 'GET / HTTP/1.1\r\nHöst: a\r\n\r\n'],
    // RFC 9110 5.5: "a recipient of CR, LF, or NUL within a field value MUST either reject the
    // message or replace each of those characters with SP"; RFC 9112 2.2 says the same of bare CR.
    ['bare LF inside a field value', 'GET / HTTP/1.1\r\nHost: a\nX-Injected: b\r\n\r\n'],
    ['bare CR inside a field value', 'GET / HTTP/1.1\r\nHost: a\rX-Injected: b\r\n\r\n'],
    ['NUL inside a field value', 'GET / HTTP/1.1\r\nHost: a\u0000b\r\n\r\n'],
    ['bare LF in the start line', 'GET /a\nb HTTP/1.1\r\nHost: a\r\n\r\n'],
  ]
  for (const [name, text] of malformed) {
    it(`throws 400 for a malformed head: ${name}`, () => {
      expectHandshakeError(() => new HttpHeadParser(LIMITS).push(latin1(text)), 400)
      expectHandshakeError(() => parseHead(text, 100), 400)
    })
  }

  it('parses a response status line with a multi-word reason phrase', () => {
    const head = parseHead('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n', 100)
    assert.deepEqual(head.startLine, ['HTTP/1.1', '101', 'Switching Protocols'])
    assert.deepEqual(parseHead('HTTP/1.1 200 \r\n\r\n', 100).startLine, ['HTTP/1.1', '200', ''])
  })

  it('stays fast on hostile input (linear time)', () => {
    const limits = { maxHeaderBytes: 1 << 20, maxHeaderCount: 100 }
    const start = performance.now()
    const parser = new HttpHeadParser(limits)
    const chunk = latin1('\r\n\r'.repeat(1000)) // never "\r\n\r\n"
    assert.ok(!'\r\n\r'.repeat(1000).includes('\r\n\r\n'))
    for (let i = 0; i < 300; i++) parser.push(chunk)
    assert.ok(performance.now() - start < 1000)
  })
})
