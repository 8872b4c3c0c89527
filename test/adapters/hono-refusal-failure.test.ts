/**
 * rallyjs/hono when the refusal path itself fails (issue 10, bug 6): a middleware refuses the
 * upgrade with a Response whose body stream errors. Before the fix the failure was an unhandled
 * rejection (with Node's defaults, the end of the process) and the socket was never answered
 * nor released. Now: the peer gets 500, the socket is released, the error reaches the `error`
 * option with kind 'handshake', and nothing is left unhandled.
 */
import assert from 'node:assert/strict'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { serve } from '@hono/node-server'
import { Hono } from 'hono'
import { createNodeWebSocket } from '../../src/adapters/hono/index.js'
import type { ServerErrorKind } from '../../src/index.js'
import { upgradeRequest, within } from './helpers.js'

describe('rallyjs/hono: a refusal Response whose body fails', () => {
  let server: Server
  let port: number
  const errors: { error: unknown; kind: ServerErrorKind }[] = []
  const unhandled: unknown[] = []
  const onUnhandled = (reason: unknown): void => void unhandled.push(reason)

  before(async () => {
    process.on('unhandledRejection', onUnhandled)
    const app = new Hono()
    const { upgradeWebSocket, injectWebSocket } = createNodeWebSocket({
      app,
      heartbeat: false,
      error: (error, _ws, kind) => void errors.push({ error, kind }),
    })
    app.use('/ws', async () => {
      const body = new ReadableStream<Uint8Array>({
        pull(controller) {
          controller.error(new Error('the refusal body failed'))
        },
      })
      return new Response(body, { status: 401 })
    })
    app.get(
      '/ws',
      upgradeWebSocket(() => ({})),
    )
    server = await within(
      new Promise<Server>((resolve) => {
        const s = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, () =>
          resolve(s as Server),
        ) as Server
      }),
      3000,
      'serve() to listen',
    )
    injectWebSocket(server)
    port = (server.address() as AddressInfo).port
  })

  after(async () => {
    process.removeListener('unhandledRejection', onUnhandled)
    server.closeAllConnections()
    await within(new Promise<void>((resolve) => server.close(() => resolve())), 5000, 'server close')
  })

  it('answers 500, reports the error as a handshake error, and leaves no rejection unhandled', async () => {
    const answer = await upgradeRequest(port, '/ws')
    assert.equal(answer.kind, 'response')
    assert.equal(answer.status, 500)
    assert.equal(errors.length, 1)
    assert.equal((errors[0]!.error as Error).message, 'the refusal body failed')
    assert.equal(errors[0]!.kind, 'handshake')
    // Unhandled rejections are reported after the microtask queue drains: one macrotask later
    // the 'unhandledRejection' event of this failure would have been emitted.
    await new Promise((resolve) => setImmediate(resolve))
    assert.deepEqual(unhandled, [])
  })

  it('releases the socket: the HTTP server closes without waiting for it', async () => {
    const answer = await upgradeRequest(port, '/ws')
    assert.equal(answer.status, 500)
    // close() waits for every connection; a refused socket never released would hold it.
    await within(
      new Promise<void>((resolve) => server.close(() => resolve())),
      3000,
      'the HTTP server to close with the refused socket released',
    )
  })
})
