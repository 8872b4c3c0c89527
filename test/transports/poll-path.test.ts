/**
 * The long-polling request path: held polls expire by the transports' periodic check (no timer
 * each), a held poll whose client went away frees the session for the next one, and a poll's
 * answer goes out with its length (no chunked framing) and the CORS headers of its origin.
 */
import assert from 'node:assert/strict'
import { request } from 'node:http'
import { connect, type Socket } from 'node:net'
import { after, before, describe, test } from 'node:test'
import { once } from '../support/events.js'
import { waitUntil } from '../support/timing.js'
import {
  HTTP_KINDS,
  openSession,
  PATH,
  startTransportServer,
  type TransportServer,
  within,
} from './helpers.js'

const POLL_TIMEOUT = 400

interface Batch {
  first: number
  messages: Record<string, unknown>[]
}

async function sendConnect(url: string, session: { session: string; token: string }): Promise<void> {
  const response = await fetch(`${url}/send?session=${session.session}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-rally-token': session.token },
    body: JSON.stringify([{ id: 1, cmd: 'connect', version: 1 }]),
  })
  assert.equal(response.status, 204)
}

/** A GET written on a raw socket: no client-side timers, and the client can vanish mid-poll. */
async function rawPoll(port: number, path: string): Promise<{ socket: Socket; answer: Promise<string> }> {
  const socket = connect(port, '127.0.0.1')
  await once(socket, 'connect')
  socket.setEncoding('latin1')
  let text = ''
  const answer = new Promise<string>((resolve, reject) => {
    socket.on('data', (data: string) => {
      text += data
      const head = text.indexOf('\r\n\r\n')
      const length = /content-length: (\d+)/i.exec(text)
      if (head !== -1 && length !== null && text.length >= head + 4 + Number(length[1])) resolve(text)
    })
    socket.on('error', reject)
  })
  socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`)
  return { socket, answer }
}

/** A session with its connect reply (sequence number 1) acknowledged: the next poll is held. */
async function idleSession(server: TransportServer): Promise<{ session: string; token: string }> {
  const session = await openSession(server.url, 'long-polling')
  await sendConnect(server.url, session)
  const response = await fetch(`${server.url}/poll?session=${session.session}&ack=0`)
  const batch = (await response.json()) as Batch
  assert.equal(batch.messages[0]?.id, 1)
  return session
}

function activeTimeouts(): number {
  return process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout').length
}

for (const http of HTTP_KINDS)
  describe(`long polling: the request path (${http})`, () => {
    let server: TransportServer
    before(async () => {
      server = await startTransportServer(
        {},
        {
          sessionPrefix: 'node-1',
          pollTimeout: POLL_TIMEOUT,
          cors: { origins: ['https://app.example'], credentials: true },
        },
        http,
      )
    })
    after(() => server.close())

    test('held polls are answered empty at pollTimeout by the periodic check, with no timer each', async () => {
      const sessions = await Promise.all(Array.from({ length: 20 }, () => idleSession(server)))
      const before = activeTimeouts()
      const started = Date.now()
      const polls = await Promise.all(
        sessions.map((s) => rawPoll(server.port, `${PATH}/poll?session=${s.session}&ack=1`)),
      )
      await waitUntil(() => server.transports.readers === 20, 5000, 'the 20 polls held')
      // A timer per held poll would show here as 20 more; the transports' one interval is unref'd.
      assert.ok(activeTimeouts() - before < 20, `${activeTimeouts() - before} timers for 20 held polls`)
      const answers = await within(
        Promise.all(polls.map((p) => p.answer)),
        POLL_TIMEOUT * 10,
        'the polls answered at pollTimeout',
      )
      // The check runs every pollTimeout / 4: an answer may come up to that much early.
      const elapsed = Date.now() - started
      assert.ok(elapsed >= POLL_TIMEOUT * 0.75 - 5, `answered after ${elapsed} ms`)
      for (const text of answers) {
        assert.match(text, /^HTTP\/1\.1 200 /)
        assert.deepEqual(JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)), { first: 2, messages: [] })
      }
      assert.equal(server.transports.readers, 0)
      for (const { socket } of polls) socket.destroy()
    })

    test('a held poll whose client went away frees the session for the next poll', async () => {
      const session = await idleSession(server)
      const gone = await rawPoll(server.port, `${PATH}/poll?session=${session.session}&ack=1`)
      await waitUntil(() => server.transports.readers === 1, 5000, 'the poll held')
      gone.socket.destroy()
      await waitUntil(() => server.transports.readers === 0, 5000, 'the reader freed')
      // The next poll is the session's only reader: the envelope goes to it, nobody gets a 409.
      const next = fetch(`${server.url}/poll?session=${session.session}&ack=1`)
      await waitUntil(() => server.transports.readers === 1, 5000, 'the next poll held')
      await sendConnect(server.url, session)
      const response = await within(next, 5000, 'the next poll')
      assert.equal(response.status, 200)
      const batch = (await response.json()) as Batch
      assert.equal(batch.first, 2)
      assert.equal(batch.messages.length, 1)
    })

    test("a poll's answer carries its length, not chunks, and the CORS headers of its origin", async () => {
      const session = await openSession(server.url, 'long-polling')
      await sendConnect(server.url, session)
      const answer = await new Promise<{ headers: Record<string, unknown>; body: string }>(
        (resolve, reject) => {
          const req = request(
            `${server.url}/poll?session=${session.session}&ack=0`,
            { headers: { origin: 'https://app.example' } },
            (response) => {
              let body = ''
              response.setEncoding('utf8')
              response.on('data', (chunk: string) => {
                body += chunk
              })
              response.on('end', () => resolve({ headers: response.headers, body }))
              response.on('error', reject)
            },
          )
          req.on('error', reject)
          req.end()
        },
      )
      assert.equal(answer.headers['transfer-encoding'], undefined)
      assert.equal(answer.headers['content-length'], String(Buffer.byteLength(answer.body)))
      assert.equal(answer.headers['content-type'], 'application/json')
      assert.equal(answer.headers['cache-control'], 'no-store')
      assert.equal(answer.headers['access-control-allow-origin'], 'https://app.example')
      assert.equal(answer.headers['access-control-allow-credentials'], 'true')
      assert.equal(((JSON.parse(answer.body) as Batch).messages[0] as { id: number }).id, 1)
    })
  })
