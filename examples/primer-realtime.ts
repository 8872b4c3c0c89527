/**
 * The primer's example, made real: a Hono route that upgrades to a WebSocket on Node.
 *
 *   npx tsx examples/primer-realtime.ts     # then: rally connect ws://localhost:3000/realtime
 *
 * A plain GET to /realtime gets 426 Upgrade Required; an upgrade request gets 101 and an echo.
 */
import { serve } from '@hono/node-server'
import { Hono } from 'hono'
import { createNodeWebSocket } from '../src/adapters/hono/index.js'

export function createPrimerApp() {
  const app = new Hono()
  const { upgradeWebSocket, injectWebSocket, rally } = createNodeWebSocket({ app })

  app.get(
    '/realtime',
    upgradeWebSocket((c) => ({
      onOpen(_event, ws) {
        console.log('WebSocket upgrade received for', c.req.path)
        ws.send('connected')
      },
      onMessage(event, ws) {
        ws.send(`echo: ${event.data}`)
      },
      onClose(event) {
        console.log('closed', event.code)
      },
      onError(event) {
        console.error('error', event)
      },
    })),
  )
  return { app, injectWebSocket, rally }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { app, injectWebSocket } = createPrimerApp()
  const port = Number(process.env.PORT ?? 3000)
  const server = serve({ fetch: app.fetch, port }, (info) =>
    console.log(`listening on http://localhost:${info.port}`),
  )
  injectWebSocket(server)
}
