/**
 * A channel read by a plain EventSource client (here: fetch reading the stream as EventSource
 * would, since Node 20 has no EventSource): publications as events with `<epoch>:<offset>` ids,
 * and a reconnection with Last-Event-ID resumes through history with no gap and no duplicate.
 */
import assert from 'node:assert/strict'
import net from 'node:net'
import { test } from 'node:test'
import { startTransportServer, within } from './helpers.js'

/**
 * Reads publications (id and data) from an event stream until `count` have arrived; `subscribed`
 * resolves at the stream's `subscribed` event, with its id (the channel's position).
 */
function readEvents(
  response: Response,
  count: number,
): { events: Promise<{ id: string; data: unknown }[]>; subscribed: Promise<string | undefined> } {
  let subscribedId: string | undefined
  let markSubscribed = (): void => {}
  const subscribed = new Promise<string | undefined>((resolve) => {
    markSubscribed = () => resolve(subscribedId)
  })
  const events = (async () => {
    const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader()
    const events: { id: string; data: unknown }[] = []
    let text = ''
    while (events.length < count) {
      const { value, done } = await reader.read()
      if (done) break
      text += value
      let end = text.indexOf('\n\n')
      while (end !== -1) {
        const block = text.slice(0, end)
        text = text.slice(end + 2)
        const id = /^id: (.*)$/m.exec(block)?.[1]
        if (/^event: subscribed$/m.test(block)) {
          subscribedId = id
          markSubscribed()
          end = text.indexOf('\n\n')
          continue
        }
        const data = /^data: (.*)$/m.exec(block)?.[1]
        if (id !== undefined && data !== undefined) events.push({ id, data: JSON.parse(data) })
        end = text.indexOf('\n\n')
      }
    }
    await reader.cancel()
    return events
  })()
  return { events, subscribed }
}

test('GET P/events?channel=…: publications as events; Last-Event-ID resumes exactly after it', async () => {
  const server = await startTransportServer()
  try {
    const first = await fetch(`${server.url}/events?channel=chat:ev`)
    assert.equal(first.headers.get('content-type'), 'text/event-stream; charset=utf-8')
    // The stream says when it is live: what is published from then on reaches it.
    const reading = readEvents(first, 3)
    await within(reading.subscribed, 5000, 'the subscribed event')
    for (const n of [1, 2, 3]) await server.realtime.publish('chat:ev', { n })
    const events = await within(reading.events, 5000, 'three events')
    assert.deepEqual(
      events.map((e) => e.data),
      [{ n: 1 }, { n: 2 }, { n: 3 }],
    )
    assert.match(events[0]!.id, /^.+:\d+$/)
    // As EventSource reconnects after a cut: with the id of the first event it had.
    const resumed = await fetch(`${server.url}/events?channel=chat:ev`, {
      headers: { 'last-event-id': events[0]!.id },
    })
    const again = readEvents(resumed, 3).events
    const replayed = await within(
      readEvents(
        await fetch(`${server.url}/events?channel=chat:ev`, {
          headers: { 'last-event-id': events[0]!.id },
        }),
        2,
      ).events,
      5000,
      'the replay',
    )
    assert.deepEqual(
      replayed.map((e) => e.data),
      [{ n: 2 }, { n: 3 }],
    )
    await server.realtime.publish('chat:ev', { n: 4 })
    assert.deepEqual(
      (await within(again, 5000, 'the resumed stream')).map((e) => e.data),
      [{ n: 2 }, { n: 3 }, { n: 4 }],
    )
  } finally {
    await server.close()
  }
})

test("P/events has the transports' limits: streams per address (429), and a reader that stops reading is cut", async () => {
  const server = await startTransportServer({}, { maxSessionsPerIp: 2, maxQueuedBytes: 64 * 1024 })
  try {
    // A raw reader that never reads: what the server writes piles up in its socket.
    const stalled = net.connect({ host: '127.0.0.1', port: server.port })
    stalled.on('error', () => {})
    stalled.pause()
    stalled.write('GET /realtime/events?channel=chat:slow HTTP/1.1\r\nHost: x\r\n\r\n')
    const other = await fetch(`${server.url}/events?channel=chat:slow`)
    const live = readEvents(other, 1)
    await within(live.subscribed, 5000, 'the second stream')
    const third = await fetch(`${server.url}/events?channel=chat:slow`)
    assert.equal(third.status, 429)
    assert.match(await third.text(), /too many sessions/)

    // 16 MiB published: far beyond what the kernel's socket buffers absorb, so the server's
    // own queue for the stalled reader passes 64 KiB and its stream is cut; the session goes.
    const ended = new Promise<void>((resolve) => stalled.once('close', () => resolve()))
    const chunk = 'x'.repeat(64 * 1024)
    const sessionsBefore = server.realtime.clients.size
    for (let n = 0; n < 256 && !stalled.destroyed; n++) await server.realtime.publish('chat:slow', { chunk })
    assert.ok(server.realtime.clients.size < sessionsBefore, "the stalled stream's session ended")
    stalled.destroy()
    await ended
    // The reader that kept up got them all, and its slot is free again after it leaves.
    await live.events.catch(() => {})
    const again = await fetch(`${server.url}/events?channel=chat:slow`)
    assert.equal(again.status, 200)
    await again.body?.cancel()
  } finally {
    await server.close()
  }
})

test('P/events: a stream cut before any publication reached it resumes from the position its subscribed event gave', async () => {
  const server = await startTransportServer()
  try {
    await server.realtime.publish('chat:pos', { n: 0 })
    const first = readEvents(await fetch(`${server.url}/events?channel=chat:pos`), 1)
    const position = await within(first.subscribed, 5000, 'the subscribed event')
    assert.match(position ?? '', /^.+:1$/, 'the position after the one publication before it')
    // The stream is cut (the page's EventSource would reconnect with this id), and meanwhile:
    void first.events.catch(() => {})
    for (const n of [1, 2]) await server.realtime.publish('chat:pos', { n })
    const resumed = readEvents(
      await fetch(`${server.url}/events?channel=chat:pos`, { headers: { 'last-event-id': position! } }),
      2,
    )
    assert.deepEqual(
      (await within(resumed.events, 5000, 'the publications made while away')).map((e) => e.data),
      [{ n: 1 }, { n: 2 }],
    )
  } finally {
    await server.close()
  }
})
