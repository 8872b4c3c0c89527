/**
 * Presence through RallyClient against the real server: join and leave events for a subscriber
 * that asked for them, the presence list and count read through the subscription, and a
 * subscriber that closes leaving at once.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { WebSocket } from '../../src/index.js'
import { RallyClient } from '../../src/realtime/client/index.js'
import { createRealtime } from '../../src/realtime/index.js'
import { nextEvent } from './client-helpers.js'

test('join, leave, presence() and presenceCount() through subscriptions', async () => {
  const realtime = createRealtime({
    authenticate: (_request, token) => ({ user: token ?? '', info: { name: token } }),
    channels: { 'room:*': { presence: true } },
    onError: () => {},
  })
  const server = await realtime.listen({ port: 0, host: '127.0.0.1' })
  const url = `ws://127.0.0.1:${server.port}/`
  const ann = new RallyClient(url, { WebSocket, token: 'ann' })
  const bob = new RallyClient(url, { WebSocket, token: 'bob' })
  try {
    const annRoom = ann.channel('room:1', { joinLeave: true })
    ann.connect()
    await nextEvent(annRoom, 'subscribed')
    const joined = nextEvent(annRoom, 'join', (member) => member.user === 'bob')
    const bobRoom = bob.channel('room:1')
    bob.connect()
    await nextEvent(bobRoom, 'subscribed')
    const member = await joined
    assert.equal(member.client, bob.clientId)
    assert.deepEqual(member.info, { name: 'bob' })
    const members = await annRoom.presence()
    assert.deepEqual(members.map((m) => m.user).sort(), ['ann', 'bob'])
    assert.equal(await bobRoom.presenceCount(), 2)
    const left = nextEvent(annRoom, 'leave', (m) => m.user === 'bob')
    bob.close()
    assert.equal((await left).client, member.client)
    assert.equal(await annRoom.presenceCount(), 1)
  } finally {
    ann.close()
    bob.close()
    await realtime.close()
  }
})
