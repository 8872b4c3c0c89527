/**
 * Connecting over a real socket: the subprotocol, authentication at connect (request + token),
 * the connect-first rule, versions, malformed envelopes, heartbeat and connect timeouts.
 */
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { upgradeRequest } from '../adapters/helpers.js'
import { Fixture, RawClient } from './server-helpers.js'

describe('realtime server: connect', () => {
  let fixture: Fixture
  const requests: string[] = []

  before(async () => {
    fixture = await new Fixture({
      authenticate(request, token) {
        // On refresh the opening request is gone (undefined): only the token counts.
        if (request !== undefined)
          requests.push(String((request as { headers: Record<string, string> }).headers['x-test'] ?? ''))
        if (token === 'expired') return { refuse: 'token expired', code: 'token expired' }
        if (token?.startsWith('short:'))
          return { user: 'sam', expiresAt: Date.now() + Number(token.slice(6)) }
        if (token !== undefined && token !== 'good') return { refuse: 'bad token' }
        return { user: token === 'good' ? 'ann' : '', info: { name: 'Ann' } }
      },
      channels: { 'chat:*': {} },
      heartbeat: { interval: 150, timeout: 150 },
      limits: { connectTimeout: 300 },
    }).start()
  })
  after(() => fixture.stop())

  test('an upgrade without the rally.v1 subprotocol is refused with 400', async () => {
    const port = Number(new URL(fixture.url).port)
    const answer = await upgradeRequest(port, '/rt')
    assert.equal(answer.status, 400)
    assert.equal(answer.kind, 'response')
    if (answer.kind === 'response') assert.match(answer.body, /rally\.v1/)
  })

  test('connect answers with the client id, version and ping interval', async () => {
    const client = fixture.client()
    assert.equal(client.ws.protocol, '')
    const reply = await client.connect({ token: 'good' })
    assert.equal(client.ws.protocol, 'rally.v1')
    assert.equal(reply.result?.version, 1)
    assert.equal(reply.result?.ping, 150)
    assert.match(String(reply.result?.client), /^[0-9a-f]{32}$/)
  })

  test('a refused token gets 101, the disconnect advice and close code 4501', async () => {
    const client = fixture.client()
    const reply = await client.connect({ token: 'forged' })
    assert.deepEqual(reply.error, { code: 101, message: 'bad token' })
    const disconnect = await client.next((e) => e.push === 'disconnect')
    assert.deepEqual(disconnect, { push: 'disconnect', code: 4501, reason: 'bad token', reconnect: false })
    assert.equal((await client.whenClosed()).code, 4501)
  })

  test('an expired token gets 109 and 4006 (reconnect with a new token)', async () => {
    const client = fixture.client()
    const reply = await client.connect({ token: 'expired' })
    assert.equal(reply.error?.code, 109)
    const disconnect = await client.next((e) => e.push === 'disconnect')
    assert.equal(disconnect.reconnect, true)
    assert.equal((await client.whenClosed()).code, 4006)
  })

  test('a token that expires: refresh extends it, otherwise 4006', async () => {
    const refreshed = fixture.client()
    const reply = await refreshed.connect({ token: 'short:300' })
    const expires = reply.result?.expires as number
    assert.ok(expires > 0 && expires <= 1000, `expires ${expires}`)
    const refresh = await refreshed.request('refresh', { token: 'short:60000' })
    assert.ok((refresh.result?.expires as number) > 1000, JSON.stringify(refresh))
    const otherUser = await refreshed.request('refresh', { token: 'good' })
    assert.equal(otherUser.error?.code, 101)
    const lapsing = fixture.client()
    await lapsing.connect({ token: 'short:100' })
    const disconnect = await lapsing.next((e) => e.push === 'disconnect', 3000)
    assert.deepEqual(disconnect, { push: 'disconnect', code: 4006, reason: 'token expired', reconnect: true })
    // The refreshed one outlived the lapsed one's expiry and is still served.
    assert.equal((await refreshed.request('subscribe', { channel: 'chat:refreshed' })).error, undefined)
  })

  test('the authenticate hook sees the upgrade request', async () => {
    const before = requests.length
    const client = fixture.client()
    await client.connect()
    assert.equal(requests.length, before + 1)
  })

  test('a command before connect is a protocol violation: 107 and 4502', async () => {
    const client = fixture.client()
    await client.opened
    const reply = await client.request('subscribe', { channel: 'chat:a' })
    assert.equal(reply.error?.code, 107)
    assert.equal((await client.whenClosed()).code, 4502)
  })

  test('an unknown protocol version gets 110 and 4503 (do not reconnect)', async () => {
    const client = fixture.client()
    await client.opened
    const reply = await client.request('connect', { version: 2 })
    assert.equal(reply.error?.code, 110)
    const disconnect = await client.next((e) => e.push === 'disconnect')
    assert.equal(disconnect.reconnect, false)
    assert.equal((await client.whenClosed()).code, 4503)
  })

  test('malformed envelopes: an answerable one gets 107 and the connection stays', async () => {
    const client = await fixture.connected()
    const reply = await client.request('subscribe', { channel: '' })
    assert.equal(reply.error?.code, 107)
    assert.match(reply.error?.message ?? '', /channel/)
    const unknown = await client.request('teleport')
    assert.equal(unknown.error?.code, 107)
    assert.match(unknown.error?.message ?? '', /unknown command/)
    const ok = await client.request('subscribe', { channel: 'chat:a' })
    assert.equal(ok.error, undefined)
  })

  test('malformed envelopes: without a usable id the connection is closed with 4502', async () => {
    const client = await fixture.connected()
    client.sendRaw('{not json')
    const disconnect = await client.next((e) => e.push === 'disconnect')
    assert.equal(disconnect.code, 4502)
    assert.equal((await client.whenClosed()).code, 4502)
  })

  test('binary messages are not part of the protocol: 4502', async () => {
    const client = await fixture.connected()
    client.ws.send(new Uint8Array([1, 2, 3]))
    assert.equal((await client.whenClosed()).code, 4502)
  })

  test('the server pings; a client that answers stays, one that stays silent is closed with 4002', async () => {
    const live = await fixture.connected()
    const silent = await fixture.connected()
    silent.autoPong = false
    await silent.next((e) => e.push === 'ping', 2000, 'a ping push')
    const closed = await silent.whenClosed()
    assert.equal(closed.code, 4002)
    // The live client has answered pings all along and is still connected.
    await live.collect((e) => e.push === 'ping', 2, 2000)
    const reply = await live.request('subscribe', { channel: 'chat:still-here' })
    assert.equal(reply.error, undefined)
  })

  test('a socket that never sends connect is closed with 4004', async () => {
    const client = fixture.client()
    await client.opened
    assert.equal((await client.whenClosed()).code, 4004)
  })

  test('a connected, subscribed, idle session keeps no reference to its upgrade request', async () => {
    // The request (headers, the IncomingMessage and its socket) serves authenticate only; held
    // by an idle socket, it was the largest part of a session's memory.
    const server = await fixture.realtime.listen({ port: 0, host: '127.0.0.1', path: '/idle' })
    const client = new RawClient(`ws://127.0.0.1:${server.port}/idle`)
    try {
      // Subscribe sent with connect, without waiting for its reply (as clients do): no command
      // arrives once the session is connected.
      await client.opened
      client.send('connect', { version: 1, token: 'good' })
      assert.equal((await client.request('subscribe', { channel: 'chat:idle' })).error, undefined)
      const sockets = [...server.clients]
      assert.equal(sockets.length, 1)
      assert.equal(sockets[0]!.data.request, undefined)
      assert.equal(sockets[0]!.data.session?.request, undefined)
      assert.equal(sockets[0]!.data.session?.isConnected, true)
    } finally {
      client.close()
    }
  })

  test('closing the realtime server tells clients to reconnect elsewhere (4001)', async () => {
    const own = await new Fixture({ channels: {} }).start()
    const client = await own.connected()
    await own.stop()
    const disconnect = await client.next((e) => e.push === 'disconnect')
    assert.equal(disconnect.reconnect, true)
    assert.equal((await client.whenClosed()).code, 4001)
  })
})
