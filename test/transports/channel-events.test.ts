/**
 * A channel read by a plain EventSource client (here: fetch reading the stream as EventSource
 * would, since Node 20 has no EventSource): publications as events with `<epoch>:<offset>` ids,
 * and a reconnection with Last-Event-ID resumes through history with no gap and no duplicate.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { startTransportServer, within } from './helpers.js'

/** Reads events (id and data) from an event stream until `count` have arrived. */
async function readEvents(response: Response, count: number): Promise<{ id: string; data: unknown }[]> {
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
      const data = /^data: (.*)$/m.exec(block)?.[1]
      if (id !== undefined && data !== undefined) events.push({ id, data: JSON.parse(data) })
      end = text.indexOf('\n\n')
    }
  }
  await reader.cancel()
  return events
}

test('GET P/events?channel=…: publications as events; Last-Event-ID resumes exactly after it', async () => {
  const server = await startTransportServer()
  try {
    const first = await fetch(`${server.url}/events?channel=chat:ev`)
    assert.equal(first.headers.get('content-type'), 'text/event-stream; charset=utf-8')
    const reading = readEvents(first, 3)
    // The subscription is live once the session shows in the realtime's clients.
    await within(
      new Promise<void>((resolve) => {
        const check = () =>
          [...server.realtime.clients.values()].some((s) => s.subscriptions.get('chat:ev')?.state === 'live')
            ? resolve()
            : setTimeout(check, 5)
        check()
      }),
      5000,
      'the subscription',
    )
    for (const n of [1, 2, 3]) await server.realtime.publish('chat:ev', { n })
    const events = await within(reading, 5000, 'three events')
    assert.deepEqual(
      events.map((e) => e.data),
      [{ n: 1 }, { n: 2 }, { n: 3 }],
    )
    assert.match(events[0]!.id, /^.+:\d+$/)
    // As EventSource reconnects after a cut: with the id of the first event it had.
    const resumed = await fetch(`${server.url}/events?channel=chat:ev`, {
      headers: { 'last-event-id': events[0]!.id },
    })
    const again = readEvents(resumed, 3)
    const replayed = await within(
      readEvents(
        await fetch(`${server.url}/events?channel=chat:ev`, {
          headers: { 'last-event-id': events[0]!.id },
        }),
        2,
      ),
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
