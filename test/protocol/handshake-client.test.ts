/**
 * Client side of the opening handshake (RFC 6455 4.1, 4.2.2): the request, and the checks on the
 * server's response.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import {
  buildAcceptResponse,
  buildClientRequest,
  computeAcceptKey,
  HandshakeError,
  type HttpHead,
  HttpHeadParser,
  parseHead,
  validateRequest,
  validateResponse,
} from '../../src/protocol/index.js'

const KEY = 'dGhlIHNhbXBsZSBub25jZQ=='
const ACCEPT = 's3pPLMBiTxaQ9kYGzzhZRbK+xOo='
const LIMITS = { maxHeaderBytes: 16 * 1024, maxHeaderCount: 100 }

function response(lines: string[], status = '101 Switching Protocols'): HttpHead {
  return parseHead(`HTTP/1.1 ${status}\r\n${lines.map((l) => `${l}\r\n`).join('')}\r\n`, 100)
}

const GOOD = ['Upgrade: websocket', 'Connection: Upgrade', `Sec-WebSocket-Accept: ${ACCEPT}`]

function refusal(head: HttpHead, protocols: string[] = [], extensions = false): HandshakeError {
  try {
    validateResponse(head, KEY, protocols, extensions)
  } catch (error) {
    assert.ok(error instanceof HandshakeError, `expected HandshakeError, got ${String(error)}`)
    return error
  }
  assert.fail('the response should have been refused')
}

describe('buildClientRequest', () => {
  it('builds the RFC 6455 request head', () => {
    assert.equal(
      buildClientRequest({ host: 'server.example.com', path: '/chat', key: KEY }),
      'GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        `Sec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
    )
  })

  it('adds subprotocols, an extension offer and extra headers', () => {
    assert.equal(
      buildClientRequest({
        host: 'h:8080',
        path: '/?q=1',
        key: KEY,
        protocols: ['chat', 'superchat'],
        extensions: 'permessage-deflate; client_max_window_bits',
        headers: [['Origin', 'http://example.com']],
      }),
      'GET /?q=1 HTTP/1.1\r\nHost: h:8080\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        `Sec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat, superchat\r\n` +
        'Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\nOrigin: http://example.com\r\n\r\n',
    )
    assert.doesNotMatch(buildClientRequest({ host: 'h', path: '/', key: KEY, protocols: [] }), /Protocol/)
  })

  it('refuses header names that are not tokens and values with CR or LF', () => {
    assert.throws(
      () => buildClientRequest({ host: 'h', path: '/', key: KEY, headers: [['Bad Name', 'x']] }),
      TypeError,
    )
    assert.throws(
      () => buildClientRequest({ host: 'h', path: '/', key: KEY, headers: [['X', 'a\r\nB: c']] }),
      TypeError,
    )
    assert.throws(
      () => buildClientRequest({ host: 'h', path: '/', key: KEY, headers: [['X', 'a\nB: c']] }),
      TypeError,
    )
  })

  it('round-trips through the server: request parsed and validated, response parsed and validated', () => {
    const requestText = buildClientRequest({ host: 'h', path: '/', key: KEY, protocols: ['a', 'b'] })
    const parsed = new HttpHeadParser(LIMITS).push(Buffer.from(requestText))!
    const validated = validateRequest({
      method: parsed.head.startLine[0],
      httpVersion: parsed.head.startLine[2].slice(5),
      fields: parsed.head.fields,
    })
    assert.deepEqual(validated.protocols, ['a', 'b'])
    const responseText = buildAcceptResponse(validated.key, { protocol: 'b' })
    const { head, rest } = new HttpHeadParser(LIMITS).push(
      Buffer.concat([Buffer.from(responseText, 'latin1'), Buffer.of(0x81, 0x00)]),
    )!
    assert.deepEqual(validateResponse(head, KEY, ['a', 'b'], false), { protocol: 'b', extensions: '' })
    assert.deepEqual([...rest], [0x81, 0x00])
  })
})

describe('validateResponse', () => {
  it('accepts a correct 101 response', () => {
    assert.deepEqual(validateResponse(response(GOOD), KEY, [], false), { protocol: '', extensions: '' })
  })

  it('compares header names and token values case-insensitively', () => {
    const head = response([
      'UPGRADE: WebSocket',
      'connection: keep-alive, UPGRADE',
      `SEC-WEBSOCKET-ACCEPT: ${ACCEPT}`,
    ])
    assert.deepEqual(validateResponse(head, KEY, [], false), { protocol: '', extensions: '' })
  })

  it('compares the accept value exactly (base64 is case-sensitive)', () => {
    const lower = response([
      'Upgrade: websocket',
      'Connection: Upgrade',
      `Sec-WebSocket-Accept: ${ACCEPT.toLowerCase()}`,
    ])
    assert.equal(refusal(lower).status, 101)
  })

  it('refuses a status other than 101 with that status', () => {
    for (const status of [
      '200 OK',
      '301 Moved Permanently',
      '400 Bad Request',
      '403 Forbidden',
      '426 Upgrade Required',
    ]) {
      const error = refusal(response(GOOD, status))
      assert.equal(error.status, Number(status.slice(0, 3)))
    }
  })

  it('refuses a malformed status line with status 0', () => {
    assert.equal(refusal(parseHead('HTTP/1.1 abc Nope\r\n\r\n', 100)).status, 0)
    assert.equal(refusal(parseHead('ICY 101 Switching\r\n\r\n', 100)).status, 0)
  })

  const refused: [string, string[], string[]?, boolean?][] = [
    ['a missing Upgrade', ['Connection: Upgrade', `Sec-WebSocket-Accept: ${ACCEPT}`]],
    ['Upgrade: h2c', ['Upgrade: h2c', 'Connection: Upgrade', `Sec-WebSocket-Accept: ${ACCEPT}`]],
    ['a missing Connection', ['Upgrade: websocket', `Sec-WebSocket-Accept: ${ACCEPT}`]],
    ['Connection: close', ['Upgrade: websocket', 'Connection: close', `Sec-WebSocket-Accept: ${ACCEPT}`]],
    ['a missing accept', ['Upgrade: websocket', 'Connection: Upgrade']],
    [
      'a wrong accept',
      ['Upgrade: websocket', 'Connection: Upgrade', `Sec-WebSocket-Accept: ${computeAcceptKey('x')}`],
    ],
    [
      'the key echoed as accept',
      ['Upgrade: websocket', 'Connection: Upgrade', `Sec-WebSocket-Accept: ${KEY}`],
    ],
    ['two accept headers', [...GOOD, `Sec-WebSocket-Accept: ${ACCEPT}`]],
    ['a subprotocol not offered', [...GOOD, 'Sec-WebSocket-Protocol: superchat'], ['chat']],
    ['a subprotocol when none was offered', [...GOOD, 'Sec-WebSocket-Protocol: chat'], []],
    ['two subprotocols', [...GOOD, 'Sec-WebSocket-Protocol: chat, superchat'], ['chat', 'superchat']],
    [
      'two subprotocol headers',
      [...GOOD, 'Sec-WebSocket-Protocol: chat', 'Sec-WebSocket-Protocol: chat'],
      ['chat', 'superchat'],
    ],
    ['an empty subprotocol', [...GOOD, 'Sec-WebSocket-Protocol:'], ['chat']],
    ['a subprotocol in another case', [...GOOD, 'Sec-WebSocket-Protocol: CHAT'], ['chat']],
    ['an extension not offered', [...GOOD, 'Sec-WebSocket-Extensions: permessage-deflate'], [], false],
  ]
  for (const [name, lines, protocols, extensions] of refused) {
    it(`refuses ${name}`, () => {
      const error = refusal(response(lines), protocols ?? [], extensions ?? false)
      assert.equal(error.status, 101)
    })
  }

  it('returns the chosen subprotocol and the extensions when offered', () => {
    const head = response([
      ...GOOD,
      'sec-websocket-protocol: superchat',
      'Sec-WebSocket-Extensions: permessage-deflate',
      'Sec-WebSocket-Extensions: x-other',
    ])
    assert.deepEqual(validateResponse(head, KEY, ['chat', 'superchat'], true), {
      protocol: 'superchat',
      extensions: 'permessage-deflate, x-other',
    })
  })
})
