/**
 * Sticky routing needs to tell a node from a session id alone: with `sessionPrefix`, every HTTP
 * session id a node hands out starts with its name and a dot (nothing else in an id has a dot),
 * and a prefix a proxy could not match safely is refused.
 */
import assert from 'node:assert/strict'
import { after, test } from 'node:test'
import { createRealtime, HttpTransports, listenTransports } from '../../src/realtime/index.js'

const realtime = createRealtime({ channels: { 'feed:*': {} }, onError: () => {} })
after(() => realtime.close())

test('session ids start with the node name and a dot; a bad prefix is refused', async () => {
  const { close, port } = await listenTransports(realtime, {
    port: 0,
    host: '127.0.0.1',
    path: '/realtime',
    sessionPrefix: 'node-2_b',
  })
  try {
    for (const transport of ['sse', 'long-polling']) {
      const response = await fetch(`http://127.0.0.1:${port}/realtime/open`, {
        method: 'POST',
        headers: { 'x-rally-transport': transport },
      })
      assert.equal(response.status, 200)
      const { session } = (await response.json()) as { session: string }
      assert.match(session, /^node-2_b\.[A-Za-z0-9_-]{22}$/)
    }
  } finally {
    await close()
  }
  for (const prefix of ['', 'a.b', 'a b', 'x'.repeat(65), 'nœud'])
    assert.throws(
      () => new HttpTransports(realtime, { sessionPrefix: prefix }),
      /sessionPrefix must be 1 to 64/,
    )
})
