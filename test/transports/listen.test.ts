/**
 * `realtime.listen` serves every transport on Rally's own port: RallyClient forced onto each
 * fallback connects, subscribes and gets a server publication at the server's path, or at the
 * root when it has none; `transports: false` keeps the WebSocket-only server (plain requests
 * refused), and `realtime.close()` ends an open stream with the server.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { RallyClient } from '../../src/realtime/client/index.js'
import { createRealtime, type Realtime } from '../../src/realtime/index.js'
import { within } from './helpers.js'

function newRealtime(): Realtime {
  return createRealtime({ channels: { 'chat:*': { publish: true } }, onError: () => {} })
}

/** A client forced onto `transport` gets one server publication on chat:lobby. */
async function receivesOver(
  realtime: Realtime,
  url: string,
  transport: 'sse' | 'long-polling',
): Promise<void> {
  const client = new RallyClient(url, { transports: [transport] })
  try {
    const connected = new Promise<{ transport: string }>((resolve) => client.on('connected', resolve))
    const room = client.channel('chat:lobby')
    const subscribed = new Promise<void>((resolve) => room.on('subscribed', () => resolve()))
    const received = new Promise<unknown>((resolve) => room.on('publication', (pub) => resolve(pub.data)))
    client.connect()
    assert.equal((await within(connected, 5000, `connected over ${transport}`)).transport, transport)
    await within(subscribed, 5000, 'subscribed')
    await realtime.publish('chat:lobby', { over: transport })
    assert.deepEqual(await within(received, 5000, 'the publication'), { over: transport })
  } finally {
    client.close()
  }
}

test('realtime.listen serves SSE and long polling under its path; other requests get 404', async () => {
  const realtime = newRealtime()
  try {
    const server = await realtime.listen({ port: 0, host: '127.0.0.1', path: '/chat' })
    const url = `http://127.0.0.1:${server.port}/chat`
    await receivesOver(realtime, url, 'sse')
    await receivesOver(realtime, url, 'long-polling')
    const elsewhere = await fetch(`http://127.0.0.1:${server.port}/other/open`, {
      method: 'POST',
      headers: { 'x-rally-transport': 'sse' },
    })
    assert.equal(elsewhere.status, 404)
    await elsewhere.body?.cancel()
  } finally {
    await realtime.close()
  }
})

test('without a path the fallbacks are at the root, and take the options given in transports', async () => {
  const realtime = newRealtime()
  try {
    const server = await realtime.listen({
      port: 0,
      host: '127.0.0.1',
      transports: { transports: ['long-polling'] },
    })
    const url = `http://127.0.0.1:${server.port}/`
    await receivesOver(realtime, url, 'long-polling')
    // SSE was left out: its open is refused with the transports' own answer.
    const sse = await fetch(`http://127.0.0.1:${server.port}/open`, {
      method: 'POST',
      headers: { 'x-rally-transport': 'sse' },
    })
    assert.equal(sse.status, 404)
    assert.match(await sse.text(), /sse is not served here/)
  } finally {
    await realtime.close()
  }
})

test('transports: false serves WebSockets only: plain requests are refused as before', async () => {
  const realtime = newRealtime()
  try {
    const server = await realtime.listen({ port: 0, host: '127.0.0.1', path: '/chat', transports: false })
    // At the path: a WebSocket is what is served there (426); under it, nothing (404).
    const plain = await fetch(`http://127.0.0.1:${server.port}/chat`)
    assert.equal(plain.status, 426)
    await plain.body?.cancel()
    const open = await fetch(`http://127.0.0.1:${server.port}/chat/open`, {
      method: 'POST',
      headers: { 'x-rally-transport': 'sse' },
    })
    assert.equal(open.status, 404)
    await open.body?.cancel()
  } finally {
    await realtime.close()
  }
})

test('realtime.close() ends an open SSE stream and closes the port', async () => {
  const realtime = newRealtime()
  const server = await realtime.listen({ port: 0, host: '127.0.0.1', path: '/chat' })
  const base = `http://127.0.0.1:${server.port}/chat`
  const opened = (await (
    await fetch(`${base}/open`, { method: 'POST', headers: { 'x-rally-transport': 'sse' } })
  ).json()) as { session: string }
  const stream = await fetch(`${base}/sse?session=${opened.session}`)
  assert.equal(stream.status, 200)
  const reader = stream.body!.getReader()
  const decoder = new TextDecoder()
  let text = ''
  // The ready event: the stream is held open by the server.
  while (!text.includes('event: ready')) {
    const { value, done } = await within(reader.read(), 5000, 'the ready event')
    assert.equal(done, false)
    text += decoder.decode(value, { stream: true })
  }
  await realtime.close()
  // The stream ends: read to its end (the server's last chunk), bounded.
  for (;;) {
    const { done } = await within(reader.read(), 5000, 'the end of the stream')
    if (done) break
  }
  await assert.rejects(fetch(`${base}/open`, { method: 'POST' }))
})
