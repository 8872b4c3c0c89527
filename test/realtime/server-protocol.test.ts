import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import {
  DisconnectCode,
  decodeCommand,
  decodeServerMessage,
  disconnectPush,
  ErrorCode,
  encodePubPush,
  errorMessages,
  errorReply,
  mayReconnect,
} from '../../src/realtime/protocol.js'

describe('rally.v1 envelopes', () => {
  test('a well-formed command decodes to itself', () => {
    const text = '{"id":3,"cmd":"subscribe","channel":"chat:lobby","since":{"offset":4,"epoch":"e1"}}'
    const decoded = decodeCommand(text)
    assert.deepEqual(decoded, {
      ok: true,
      value: { id: 3, cmd: 'subscribe', channel: 'chat:lobby', since: { offset: 4, epoch: 'e1' } },
    })
  })

  test('pong needs no id', () => {
    assert.deepEqual(decodeCommand('{"cmd":"pong"}'), { ok: true, value: { cmd: 'pong' } })
  })

  test('malformed envelopes are bad requests, with the id when it was readable', () => {
    const cases: [string, number | undefined, RegExp][] = [
      ['not json', undefined, /not valid JSON/],
      ['[1,2]', undefined, /JSON object/],
      ['{"cmd":"subscribe","channel":"a"}', undefined, /id must be/],
      ['{"id":0,"cmd":"subscribe","channel":"a"}', undefined, /id must be/],
      ['{"id":1.5,"cmd":"subscribe","channel":"a"}', undefined, /id must be/],
      ['{"id":2,"cmd":"launch"}', 2, /unknown command "launch"/],
      ['{"id":2,"cmd":7}', 2, /cmd must be a string/],
      ['{"id":2,"cmd":"subscribe"}', 2, /channel must be/],
      ['{"id":2,"cmd":"subscribe","channel":""}', 2, /channel must be/],
      [`{"id":2,"cmd":"subscribe","channel":"${'x'.repeat(256)}"}`, 2, /channel must be/],
      ['{"id":2,"cmd":"subscribe","channel":"a\\u0000b"}', 2, /channel must be/],
      ['{"id":2,"cmd":"subscribe","channel":"a","since":{"offset":-1,"epoch":"e"}}', 2, /since.offset/],
      ['{"id":2,"cmd":"subscribe","channel":"a","since":{"offset":1}}', 2, /since.epoch/],
      ['{"id":2,"cmd":"subscribe","channel":"a","joinLeave":"yes"}', 2, /joinLeave/],
      ['{"id":2,"cmd":"publish","channel":"a"}', 2, /data is required/],
      ['{"id":2,"cmd":"publish","channel":"a","data":1,"key":""}', 2, /key must be/],
      ['{"id":2,"cmd":"rpc"}', 2, /method must be/],
      ['{"id":2,"cmd":"connect"}', 2, /version must be/],
      ['{"id":2,"cmd":"connect","version":1,"token":5}', 2, /token must be/],
      ['{"id":2,"cmd":"history","channel":"a","limit":-3}', 2, /limit must be/],
    ]
    for (const [text, id, message] of cases) {
      const decoded = decodeCommand(text)
      assert.equal(decoded.ok, false, text)
      if (decoded.ok) continue
      assert.equal(decoded.id, id, text)
      assert.equal(decoded.error.code, ErrorCode.BadRequest, text)
      assert.match(decoded.error.message, message, text)
    }
  })

  test('the pub push built from JSON text parses back to the publication', () => {
    const text = encodePubPush('chat:"x"', 7, 'ep', '{"text":"hi"}', '{"client":"c1","user":"u"}')
    assert.deepEqual(JSON.parse(text), {
      push: 'pub',
      channel: 'chat:"x"',
      offset: 7,
      epoch: 'ep',
      data: { text: 'hi' },
      info: { client: 'c1', user: 'u' },
    })
    const decoded = decodeServerMessage(text)
    assert.equal(decoded.ok, true)
  })

  test('server messages are checked on the client side', () => {
    assert.equal(decodeServerMessage('{"id":1,"result":{}}').ok, true)
    assert.equal(decodeServerMessage('{"id":1,"result":{},"error":{"code":1,"message":"x"}}').ok, false)
    assert.equal(decodeServerMessage('{"id":1,"error":{"code":"x"}}').ok, false)
    assert.equal(decodeServerMessage('{"push":"teleport"}').ok, false)
    assert.equal(decodeServerMessage('{"push":"ping"}').ok, true)
  })

  test('error replies and disconnect pushes carry the tables', () => {
    assert.deepEqual(errorReply(4, ErrorCode.TooManyRequests), {
      id: 4,
      error: { code: 111, message: errorMessages[111], temporary: true },
    })
    assert.deepEqual(errorReply(5, ErrorCode.InvalidData, 'text: expected string', 'text'), {
      id: 5,
      error: { code: 112, message: 'text: expected string', field: 'text' },
    })
    assert.equal(disconnectPush(DisconnectCode.HeartbeatTimeout).reconnect, true)
    assert.equal(disconnectPush(DisconnectCode.Unauthorized).reconnect, false)
    assert.equal(mayReconnect(1006), true)
    assert.equal(mayReconnect(4503), false)
  })
})
