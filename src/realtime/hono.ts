/**
 * The realtime layer as a Hono route, through `rallyjs/hono`'s `createNodeWebSocket`:
 *
 * ```ts
 * const app = new Hono()
 * const nodeWebSocket = createNodeWebSocket({ app })
 * const realtime = createRealtime({ channels: { 'chat:*': { publish: true } } })
 * mountRealtime(app, realtime, nodeWebSocket, '/realtime')
 * nodeWebSocket.injectWebSocket(serve({ fetch: app.fetch, port: 3000 }))
 * ```
 *
 * Middleware registered before the route runs first (auth, CORS, logging) and may refuse the
 * upgrade; the authenticate hook receives the route's web `Request`. Sockets are Rally's, so
 * publications reach them through the Rally server's topics, framed once.
 */
import type { Context, Hono } from 'hono'
import type { NodeWebSocket } from '../adapters/hono/index.js'
import type { BackpressurePolicy } from '../server/types.js'
import { DisconnectCode, SUBPROTOCOL } from './protocol.js'
import { type Realtime, SLOW_CONSUMER_POLICY, WebSocketTransport } from './server.js'
import type { RealtimeSession } from './session.js'

/**
 * Serves rally.v1 at `path` of a Hono app (the subprotocol is required: 400 without it).
 *
 * `options.backpressurePolicy`: what happens to this route's sockets when a reader falls the
 * server's `maxBackpressure` behind. Default: disconnect 4003 (slow consumer; the client
 * reconnects and recovers), whatever the Hono server's own policy for its other routes. 'close'
 * closes with a bare 1008; 'drop' skips publications, leaving gaps that recovery does not see.
 */
export function mountRealtime(
  // biome-ignore lint/suspicious/noExplicitAny: any Hono app, whatever its env and schema types
  app: Hono<any, any, any>,
  // biome-ignore lint/suspicious/noExplicitAny: any realtime, whatever its channel and RPC types
  realtime: Realtime<any, any>,
  nodeWebSocket: NodeWebSocket,
  path = '/realtime',
  options: { backpressurePolicy?: BackpressurePolicy } = {},
): void {
  const backpressurePolicy = options.backpressurePolicy ?? SLOW_CONSUMER_POLICY
  realtime.addServer(nodeWebSocket.rally)
  app.get(
    path,
    async (c: Context, next: () => Promise<void>) => {
      const offered = (c.req.header('sec-websocket-protocol') ?? '').split(',').map((p) => p.trim())
      if (c.req.header('upgrade')?.toLowerCase() === 'websocket' && !offered.includes(SUBPROTOCOL))
        return c.text(`This endpoint speaks the ${SUBPROTOCOL} WebSocket subprotocol\n`, 400)
      await next()
    },
    nodeWebSocket.upgradeWebSocket(
      (c) => {
        let session: RealtimeSession | undefined
        return {
          onOpen(_event, ws) {
            // The policy is the socket's own: the server it shares may serve other routes.
            ws.raw!.backpressurePolicy = backpressurePolicy
            session = realtime.openSession(new WebSocketTransport(ws.raw!), c.req.raw)
          },
          onMessage(event) {
            if (session === undefined) return
            if (typeof event.data !== 'string') {
              session.disconnect(DisconnectCode.BadRequest, `binary messages are not part of ${SUBPROTOCOL}`)
              return
            }
            session.receive(event.data, Date.now())
          },
          onClose() {
            session?.transportClosed()
          },
        }
      },
      { protocols: [SUBPROTOCOL] },
    ),
  )
}
