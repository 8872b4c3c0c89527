/**
 * The HTTP transports' answers to bad and unusual input, over real HTTP with fetch: each case
 * gets its own status, and the session's state stays what the protocol promises (a lost poll
 * answer is sent again, a resumed stream replays what was not acknowledged, a client that stops
 * reading is disconnected and its queue freed).
 */
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { HTTP_KINDS, openSession, startTransportServer, type TransportServer, within } from './helpers.js'

interface Batch {
  first: number
  messages: Record<string, unknown>[]
}

async function send(url: string, session: { session: string; token: string }, body: unknown[], ack?: number) {
  const query = ack === undefined ? '' : `&ack=${ack}`
  return fetch(`${url}/send?session=${session.session}${query}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-rally-token': session.token },
    body: JSON.stringify(body),
  })
}

async function poll(url: string, session: string, ack: number): Promise<Response> {
  return fetch(`${url}/poll?session=${session}&ack=${ack}`)
}

/** Polls until the batch holds an envelope matching `match`; returns every envelope seen. */
async function pollUntil(
  url: string,
  session: string,
  ack: number,
  match: (e: Record<string, unknown>) => boolean,
): Promise<{ batch: Batch; ack: number }> {
  for (;;) {
    const response = await poll(url, session, ack)
    assert.equal(response.status, 200)
    const batch = (await response.json()) as Batch
    if (batch.messages.some(match)) return { batch, ack: batch.first + batch.messages.length - 1 }
    ack = Math.max(ack, batch.first + batch.messages.length - 1)
  }
}

for (const http of HTTP_KINDS)
  describe(`HTTP transports: statuses (${http})`, () => {
    let server: TransportServer
    before(async () => {
      server = await startTransportServer(
        {},
        { maxSessionsPerIp: 100, maxBodySize: 1024, pollTimeout: 300, maxQueuedBytes: 4096 },
        http,
      )
    })
    after(() => server.close())

    test('unknown session: 404 with reconnect advice on sse, poll and send', async () => {
      for (const response of [
        await fetch(`${server.url}/sse?session=nope`),
        await poll(server.url, 'nope', 0),
        await send(server.url, { session: 'nope', token: 'x' }, [{ cmd: 'pong' }]),
      ]) {
        assert.equal(response.status, 404)
        assert.deepEqual(await response.json(), { error: 'unknown or expired session', advice: 'reconnect' })
      }
    })

    test('open without X-Rally-Transport: 400; send without the session token: 403', async () => {
      const bare = await fetch(`${server.url}/open`, { method: 'POST' })
      assert.equal(bare.status, 400)
      await bare.body?.cancel()
      const session = await openSession(server.url, 'long-polling')
      const forged = await fetch(`${server.url}/send?session=${session.session}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '[{"cmd":"pong"}]',
      })
      assert.equal(forged.status, 403)
      await forged.body?.cancel()
    })

    test('oversized body: 413; malformed body: 400; the session keeps working', async () => {
      const session = await openSession(server.url, 'long-polling')
      const big = await send(server.url, session, [{ cmd: 'pong', pad: 'x'.repeat(2000) }])
      assert.equal(big.status, 413)
      await big.body?.cancel()
      for (const body of ['not json', '{"cmd":"pong"}', '[1,2]']) {
        const response = await fetch(`${server.url}/send?session=${session.session}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-rally-token': session.token },
          body,
        })
        assert.equal(response.status, 400, body)
        await response.body?.cancel()
      }
      const ok = await send(server.url, session, [{ id: 1, cmd: 'connect', version: 1 }])
      assert.equal(ok.status, 204)
      const { batch } = await pollUntil(server.url, session.session, 0, (e) => e.id === 1)
      assert.equal(typeof (batch.messages[0]!.result as { client: string }).client, 'string')
    })

    test('a lost poll answer is sent again until acknowledged', async () => {
      const session = await openSession(server.url, 'long-polling')
      await send(server.url, session, [{ id: 1, cmd: 'connect', version: 1 }])
      const first = await pollUntil(server.url, session.session, 0, (e) => e.id === 1)
      // The same acknowledgement again, as after a response lost on the way: the same envelopes.
      const again = (await (await poll(server.url, session.session, first.batch.first - 1)).json()) as Batch
      assert.deepEqual(again, first.batch)
      // Acknowledged: the next poll waits and times out empty.
      const empty = (await (await poll(server.url, session.session, first.ack)).json()) as Batch
      assert.deepEqual(empty, { first: first.ack + 1, messages: [] })
      // An acknowledgement beyond what was sent is a client bug.
      const beyond = await poll(server.url, session.session, first.ack + 5)
      assert.equal(beyond.status, 400)
      await beyond.body?.cancel()
    })

    test('a second poller ends the first with 409', async () => {
      const session = await openSession(server.url, 'long-polling')
      const held = poll(server.url, session.session, 0)
      // The second arrives once the first is held (the server counts it as the session's reader).
      await new Promise<void>((resolve) => {
        const check = () => (server.transports.readers > 0 ? resolve() : setTimeout(check, 5))
        check()
      })
      const second = poll(server.url, session.session, 0)
      const firstAnswer = await within(held, 2000, 'the first poll')
      assert.equal(firstAnswer.status, 409)
      await firstAnswer.body?.cancel()
      assert.equal((await second).status, 200)
    })

    test('an SSE stream resumed with Last-Event-ID replays what the client did not have', async () => {
      const session = await openSession(server.url, 'sse')
      await send(server.url, session, [
        { id: 1, cmd: 'connect', version: 1 },
        { id: 2, cmd: 'subscribe', channel: 'chat:a' },
      ])
      const controller = new AbortController()
      const stream = await fetch(`${server.url}/sse?session=${session.session}`, {
        signal: controller.signal,
      })
      assert.equal(stream.headers.get('content-type'), 'text/event-stream; charset=utf-8')
      assert.equal(stream.headers.get('x-accel-buffering'), 'no')
      assert.equal(stream.headers.get('cache-control'), 'no-cache, no-transform')
      let text = ''
      const decoder = new TextDecoder()
      const reader = stream.body!.getReader()
      while (!text.includes('id: 2\n')) text += decoder.decode((await reader.read()).value)
      controller.abort()
      assert.match(text, /event: ready\n/)
      assert.match(text, /id: 1\ndata: \{"id":1,"result"/)
      // Resumed after 1: event 2 (the subscribe reply) comes again, 1 does not.
      const resumed = await fetch(`${server.url}/sse?session=${session.session}`, {
        headers: { 'last-event-id': '1' },
      })
      const reader2 = resumed.body!.getReader()
      let text2 = ''
      while (!text2.includes('id: 2\n')) text2 += decoder.decode((await reader2.read()).value)
      assert.doesNotMatch(text2, /id: 1\n/)
      await reader2.cancel()
    })

    test('too many sessions from one address: 429', async () => {
      const crowded = await startTransportServer({}, { maxSessionsPerIp: 2 }, http)
      try {
        await openSession(crowded.url, 'sse')
        await openSession(crowded.url, 'sse')
        const third = await fetch(`${crowded.url}/open`, {
          method: 'POST',
          headers: { 'x-rally-transport': 'sse' },
        })
        assert.equal(third.status, 429)
        await third.body?.cancel()
      } finally {
        await crowded.close()
      }
    })

    test('behind a proxy, clientAddress gives each forwarded address its own session budget', async () => {
      const proxied = await startTransportServer(
        {},
        {
          maxSessionsPerIp: 1,
          clientAddress: (request) =>
            String(request.headers['x-forwarded-for'] ?? request.socket.remoteAddress),
        },
        http,
      )
      const open = (address: string) =>
        fetch(`${proxied.url}/open`, {
          method: 'POST',
          headers: { 'x-rally-transport': 'sse', 'x-forwarded-for': address },
        })
      try {
        const answers = [await open('203.0.113.1'), await open('203.0.113.2'), await open('203.0.113.1')]
        for (const answer of answers) await answer.body?.cancel()
        // All three came from 127.0.0.1: only the forwarded address tells the clients apart.
        assert.deepEqual(
          answers.map((answer) => answer.status),
          [200, 200, 429],
        )
      } finally {
        await proxied.close()
      }
    })

    test('a client that stops polling is disconnected with 4003 and its queue freed', async () => {
      const session = await openSession(server.url, 'long-polling')
      await send(server.url, session, [
        { id: 1, cmd: 'connect', version: 1 },
        { id: 2, cmd: 'subscribe', channel: 'chat:slow' },
      ])
      await pollUntil(server.url, session.session, 0, (e) => e.id === 2)
      // Never acknowledged: more than maxQueuedBytes (4096) of publications pile up.
      for (let i = 0; i < 40; i++) await server.realtime.publish('chat:slow', { pad: 'y'.repeat(200) })
      const { batch } = await pollUntil(server.url, session.session, 0, (e) => e.push === 'disconnect')
      const disconnect = batch.messages.find((e) => e.push === 'disconnect')!
      assert.equal(disconnect.code, 4003)
      assert.ok(batch.messages.length < 5, 'the queued publications were dropped, not delivered')
      const gone = await poll(server.url, session.session, 0)
      assert.equal(gone.status, 404)
      await gone.body?.cancel()
    })

    test('a session without requests expires; its next request gets reconnect advice', async () => {
      const quick = await startTransportServer({}, { sessionTimeout: 100 }, http)
      try {
        const session = await openSession(quick.url, 'long-polling')
        await new Promise<void>((resolve) => {
          const check = () => (quick.transports.size === 0 ? resolve() : setTimeout(check, 10))
          check()
        })
        const response = await poll(quick.url, session.session, 0)
        assert.equal(response.status, 404)
        assert.equal(((await response.json()) as { advice: string }).advice, 'reconnect')
      } finally {
        await quick.close()
      }
    })
  })

for (const http of HTTP_KINDS)
  describe(`HTTP transports: CORS (${http})`, () => {
    test('an allowed origin gets its preflight answered and credentials allowed; another gets 403', async () => {
      const server = await startTransportServer(
        {},
        { cors: { origins: ['https://app.example'], credentials: true } },
        http,
      )
      try {
        const preflight = await fetch(`${server.url}/open`, {
          method: 'OPTIONS',
          headers: {
            origin: 'https://app.example',
            'access-control-request-method': 'POST',
            'access-control-request-headers': 'x-rally-transport',
          },
        })
        assert.equal(preflight.status, 204)
        assert.equal(preflight.headers.get('access-control-allow-origin'), 'https://app.example')
        assert.equal(preflight.headers.get('access-control-allow-credentials'), 'true')
        assert.match(preflight.headers.get('access-control-allow-headers') ?? '', /x-rally-transport/)
        const open = await fetch(`${server.url}/open`, {
          method: 'POST',
          headers: { origin: 'https://app.example', 'x-rally-transport': 'sse' },
        })
        assert.equal(open.status, 200)
        assert.equal(open.headers.get('access-control-allow-origin'), 'https://app.example')
        await open.body?.cancel()
        const foreign = await fetch(`${server.url}/open`, {
          method: 'POST',
          headers: { origin: 'https://evil.example', 'x-rally-transport': 'sse' },
        })
        assert.equal(foreign.status, 403)
        await foreign.body?.cancel()
        assert.equal(server.transports.size, 1, 'the refused origin opened no session')
      } finally {
        await server.close()
      }
    })
  })
