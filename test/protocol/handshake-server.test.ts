/**
 * Server side of the opening handshake (RFC 6455 4.2): request validation, the accept key, and
 * the responses.
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { describe, it } from 'node:test'
import {
  buildAcceptResponse,
  buildErrorResponse,
  computeAcceptKey,
  generateKey,
  HandshakeError,
  type HandshakeRequest,
  HttpHeadParser,
  isValidKey,
  validateRequest,
  WEBSOCKET_GUID,
} from '../../src/protocol/index.js'

const KEY = 'dGhlIHNhbXBsZSBub25jZQ=='

type Fields = Record<string, string[] | undefined>

function request(overrides: Fields = {}, method = 'GET', httpVersion = '1.1'): HandshakeRequest {
  const fields: Fields = {
    host: ['server.example.com'],
    upgrade: ['websocket'],
    connection: ['Upgrade'],
    'sec-websocket-key': [KEY],
    'sec-websocket-version': ['13'],
    ...overrides,
  }
  for (const name of Object.keys(fields)) if (fields[name] === undefined) delete fields[name]
  return { method, httpVersion, fields }
}

function refused(req: HandshakeRequest): HandshakeError {
  try {
    validateRequest(req)
  } catch (error) {
    assert.ok(error instanceof HandshakeError, `expected HandshakeError, got ${String(error)}`)
    assert.equal(error.name, 'HandshakeError')
    return error
  }
  assert.fail('the request should have been refused')
}

describe('computeAcceptKey and keys', () => {
  it('matches the RFC 6455 1.3 example', () => {
    // RFC 6455 1.3: "dGhlIHNhbXBsZSBub25jZQ==" gives "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" (checked
    // independently with Python's hashlib: base64(sha1(key + GUID))).
    assert.equal(
      createHash('sha1').update(`${KEY}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64'),
      's3pPLMBiTxaQ9kYGzzhZRbK+xOo=',
    )
    assert.equal(WEBSOCKET_GUID, '258EAFA5-E914-47DA-95CA-C5AB0DC85B11')
    assert.equal(computeAcceptKey('dGhlIHNhbXBsZSBub25jZQ=='), 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=')
    assert.equal(computeAcceptKey('x3JJHMbDL1EzLkh9GBhXDw=='), 'HSmrc0sMlYUkAGmm5OPpG2HaGWk=')
  })

  it('generateKey makes valid, distinct 16-byte keys', () => {
    const keys = new Set<string>()
    for (let i = 0; i < 200; i++) {
      const key = generateKey()
      assert.equal(isValidKey(key), true, key)
      assert.equal(Buffer.from(key, 'base64').length, 16)
      keys.add(key)
    }
    assert.equal(keys.size, 200)
  })

  it('isValidKey accepts only base64 of exactly 16 bytes', () => {
    assert.equal(isValidKey(KEY), true)
    assert.equal(isValidKey('AAAAAAAAAAAAAAAAAAAAAA=='), true)
    assert.equal(isValidKey('+/+/+/+/+/+/+/+/+/+/+w=='), true)
    const bad = [
      '',
      'dGhlIHNhbXBsZSBub25jZQ=', // 23 characters
      'dGhlIHNhbXBsZSBub25jZQ===', // 25 characters
      'dGhlIHNhbXBsZSBub25jZQ', // no padding
      Buffer.alloc(15, 1).toString('base64'), // 15 bytes: 20 characters
      Buffer.alloc(17, 1).toString('base64'), // 17 bytes: 24 characters, one "="
      Buffer.alloc(18, 1).toString('base64'), // 18 bytes: 24 characters, no "="
      'dGhlIHNhbXBsZSBub25jZ!==', // "!" is not base64
      'dGhlIHNhbXBsZSBub25jZ-==', // base64url, not base64
      'dGhlIHNhbXBsZSBub25jZ_==',
      'dGhlIHNhbXBsZSBub25j ZQ=', // space
      'dGhlIHNhbXBsZSBub25jZQ=a',
      ' dGhlIHNhbXBsZSBub25jZQ==',
      'dGhlIHNhbXBsZSBub25jZ\u00e9==',
    ]
    for (const key of bad) assert.equal(isValidKey(key), false, JSON.stringify(key))
  })
})

describe('validateRequest', () => {
  it('accepts a minimal RFC 6455 request', () => {
    assert.deepEqual(validateRequest(request()), { key: KEY, protocols: [], extensions: [] })
  })

  it('returns the offered subprotocols in order, from every header line, and the raw extensions', () => {
    const result = validateRequest(
      request({
        'sec-websocket-protocol': ['chat, superchat', ' v2 ,,\t'],
        'sec-websocket-extensions': ['permessage-deflate; client_max_window_bits', 'x-foo'],
      }),
    )
    assert.deepEqual(result.protocols, ['chat', 'superchat', 'v2'])
    assert.deepEqual(result.extensions, ['permessage-deflate; client_max_window_bits', 'x-foo'])
  })

  it('accepts HTTP/1.1 and later 1.x, refuses 2 and 3 (they upgrade differently, RFC 8441)', () => {
    for (const version of ['1.1', '1.2']) validateRequest(request({}, 'GET', version))
    for (const version of ['2', '2.0', '3.0']) {
      assert.throws(
        () => validateRequest(request({}, 'GET', version)),
        (error: HandshakeError) => error.status === 400,
      )
    }
  })

  const accepted: [string, Fields][] = [
    ['Upgrade with other tokens', { upgrade: ['foo, WebSocket'] }],
    ['Upgrade in upper case', { upgrade: ['WEBSOCKET'] }],
    ['Upgrade over two lines', { upgrade: ['h2c', 'websocket'] }],
    ['Connection: keep-alive, Upgrade', { connection: ['keep-alive, Upgrade'] }],
    ['Connection in lower case with spaces', { connection: [' keep-alive ,  upgrade '] }],
    ['Connection over two lines', { connection: ['keep-alive', 'Upgrade'] }],
  ]
  for (const [name, fields] of accepted) {
    it(`accepts: ${name}`, () => {
      assert.equal(validateRequest(request(fields)).key, KEY)
    })
  }

  const refusals: [string, HandshakeRequest, number, Record<string, string>?][] = [
    ['POST', request({}, 'POST'), 405, { Allow: 'GET' }],
    ['lower-case get', request({}, 'get'), 405, { Allow: 'GET' }],
    ['HTTP/1.0', request({}, 'GET', '1.0'), 400],
    ['HTTP/0.9', request({}, 'GET', '0.9'), 400],
    ['a version that is not a number', request({}, 'GET', 'x.y'), 400],
    ['missing Host', request({ host: undefined }), 400],
    ['duplicate Host', request({ host: ['a.example', 'b.example'] }), 400],
    ['no Upgrade', request({ upgrade: undefined }), 426, { Upgrade: 'websocket', Connection: 'Upgrade' }],
    [
      'Upgrade without websocket',
      request({ upgrade: ['h2c'] }),
      426,
      { Upgrade: 'websocket', Connection: 'Upgrade' },
    ],
    [
      'Upgrade: websocket2',
      request({ upgrade: ['websocket2'] }),
      426,
      { Upgrade: 'websocket', Connection: 'Upgrade' },
    ],
    // Without "Upgrade" in Connection, the Upgrade header does not apply (RFC 9110 7.8): a plain
    // request to a WebSocket endpoint.
    [
      'no Connection',
      request({ connection: undefined }),
      426,
      { Upgrade: 'websocket', Connection: 'Upgrade' },
    ],
    [
      'Connection without Upgrade',
      request({ connection: ['keep-alive'] }),
      426,
      { Upgrade: 'websocket', Connection: 'Upgrade' },
    ],
    [
      'Connection: upgraded',
      request({ connection: ['upgraded'] }),
      426,
      { Upgrade: 'websocket', Connection: 'Upgrade' },
    ],
    [
      'missing version',
      request({ 'sec-websocket-version': undefined }),
      426,
      { 'Sec-WebSocket-Version': '13', Upgrade: 'websocket', Connection: 'Upgrade' },
    ],
    [
      'version 8',
      request({ 'sec-websocket-version': ['8'] }),
      426,
      { 'Sec-WebSocket-Version': '13', Upgrade: 'websocket', Connection: 'Upgrade' },
    ],
    [
      'version 13 twice',
      request({ 'sec-websocket-version': ['13', '13'] }),
      426,
      { 'Sec-WebSocket-Version': '13', Upgrade: 'websocket', Connection: 'Upgrade' },
    ],
    [
      'version list',
      request({ 'sec-websocket-version': ['13, 8'] }),
      426,
      { 'Sec-WebSocket-Version': '13', Upgrade: 'websocket', Connection: 'Upgrade' },
    ],
    ['missing key', request({ 'sec-websocket-key': undefined }), 400],
    ['duplicate key', request({ 'sec-websocket-key': [KEY, KEY] }), 400],
    ['key of the wrong length', request({ 'sec-websocket-key': ['dGhlIHNhbXBsZSBub25jZQ='] }), 400],
    ['key with bad characters', request({ 'sec-websocket-key': ['dGhlIHNhbXBsZSBub25jZ!=='] }), 400],
    ['15-byte key', request({ 'sec-websocket-key': [Buffer.alloc(15, 7).toString('base64')] }), 400],
    ['17-byte key', request({ 'sec-websocket-key': [Buffer.alloc(17, 7).toString('base64')] }), 400],
    ['empty key', request({ 'sec-websocket-key': [''] }), 400],
    ['protocol with a space', request({ 'sec-websocket-protocol': ['chat, sup er'] }), 400],
    ['protocol with a separator', request({ 'sec-websocket-protocol': ['chat;v=1'] }), 400],
    ['protocol with a slash', request({ 'sec-websocket-protocol': ['a/b'] }), 400],
    ['protocol with non-ASCII', request({ 'sec-websocket-protocol': ['chät'] }), 400],
    ['protocol quoted', request({ 'sec-websocket-protocol': ['"chat"'] }), 400],
  ]
  for (const [name, req, status, headers] of refusals) {
    it(`refuses ${name} with ${status}`, () => {
      const error = refused(req)
      assert.equal(error.status, status)
      assert.deepEqual(error.headers, headers ?? {})
    })
  }

  it('checks the method before anything else', () => {
    assert.equal(refused(request({ host: undefined, upgrade: undefined }, 'POST')).status, 405)
  })

  it('validates a request parsed from raw bytes, header names in any case', () => {
    const raw =
      'GET /chat HTTP/1.1\r\nHOST: server.example.com\r\nupgrade: WebSocket\r\nCONNECTION: keep-alive, Upgrade\r\n' +
      `SEC-WEBSOCKET-KEY: ${KEY}\r\nsec-websocket-version: 13\r\nSec-WebSocket-Protocol: chat\r\n\r\n`
    const { head } = new HttpHeadParser({ maxHeaderBytes: 4096, maxHeaderCount: 50 }).push(Buffer.from(raw))!
    const [method, , version] = head.startLine
    const result = validateRequest({
      method,
      httpVersion: version.slice('HTTP/'.length),
      fields: head.fields,
    })
    assert.deepEqual(result, { key: KEY, protocols: ['chat'], extensions: [] })
  })
})

describe('buildAcceptResponse', () => {
  it('builds the RFC 6455 101 response', () => {
    assert.equal(
      buildAcceptResponse(KEY),
      'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        'Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n',
    )
  })

  it('adds the chosen subprotocol, the extensions and extra headers', () => {
    assert.equal(
      buildAcceptResponse(KEY, {
        protocol: 'chat',
        extensions: 'permessage-deflate',
        headers: [['Set-Cookie', 'a=b']],
      }),
      'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        'Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat\r\n' +
        'Sec-WebSocket-Extensions: permessage-deflate\r\nSet-Cookie: a=b\r\n\r\n',
    )
    assert.equal(buildAcceptResponse(KEY, { protocol: '' }), buildAcceptResponse(KEY))
  })

  it('refuses extra headers that would inject lines', () => {
    assert.throws(() => buildAcceptResponse(KEY, { headers: [['X', 'a\r\nEvil: 1']] }), TypeError)
    assert.throws(() => buildAcceptResponse(KEY, { headers: [['X\n', 'a']] }), TypeError)
  })
})

describe('buildErrorResponse', () => {
  it('builds a complete response with a byte-counted body', () => {
    assert.equal(
      buildErrorResponse(426, 'Upgrade required', [['Sec-WebSocket-Version', '13']]),
      'HTTP/1.1 426 Upgrade Required\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\n' +
        'Content-Length: 16\r\nSec-WebSocket-Version: 13\r\n\r\nUpgrade required',
    )
    assert.match(buildErrorResponse(400, 'é'), /Content-Length: 2\r\n\r\né$/)
    assert.match(buildErrorResponse(418, ''), /^HTTP\/1\.1 418 Error\r\n/)
    assert.throws(() => buildErrorResponse(400, 'x', [['A', 'b\rc']]), TypeError)
  })

  it('turns a HandshakeError into a response with its status and headers', () => {
    const error = refused(request({ 'sec-websocket-version': ['8'] }))
    const response = buildErrorResponse(error.status, error.message, Object.entries(error.headers))
    assert.match(response, /^HTTP\/1\.1 426 Upgrade Required\r\n/)
    assert.match(response, /\r\nSec-WebSocket-Version: 13\r\n/)
  })
})
