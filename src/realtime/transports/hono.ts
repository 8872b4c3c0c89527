/**
 * The HTTP transports (SSE, long polling, read-only channel streams) as routes of a Hono app
 * served by @hono/node-server, at the same base path as `mountRealtime`'s WebSocket route
 * (`rallyjs/hono` exports both):
 *
 * ```ts
 * const transports = new HttpTransports(realtime, { path: '/realtime' })
 * mountTransports(app, transports)
 * mountRealtime(app, realtime, nodeWebSocket, '/realtime')
 * ```
 *
 * The node request and response that @hono/node-server passes in `c.env` are answered directly
 * (a held poll or an endless event stream does not fit a web Response well), and Hono is told
 * the response is already sent. Middleware registered before runs first (auth, logging).
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response'
import type { Context, Hono } from 'hono'
import type { HttpTransports } from './http.js'

/**
 * Serves `transports`' routes (`P/open`, `P/sse`, `P/poll`, `P/send`, `P/close`, `P/events`) on
 * `app`; needs @hono/node-server, which passes the node request and response in `c.env` (501
 * without them).
 */
export function mountTransports(
  // biome-ignore lint/suspicious/noExplicitAny: any Hono app, whatever its env and schema types
  app: Hono<any, any, any>,
  transports: HttpTransports,
): void {
  app.on(
    ['GET', 'POST', 'OPTIONS'],
    `${transports.path}/:route{open|sse|poll|send|close|events}`,
    (c: Context) => {
      const env = c.env as { incoming?: IncomingMessage; outgoing?: ServerResponse } | undefined
      if (env?.incoming === undefined || env.outgoing === undefined)
        return c.text('the SSE and long-polling transports need @hono/node-server', 501)
      // Not one of its requests (a POST to P/events): answered here, the node response untouched.
      if (!transports.handle(env.incoming, env.outgoing)) return c.json({ error: 'not found' }, 404)
      // @hono/node-server's marker: the handler wrote the response itself.
      return RESPONSE_ALREADY_SENT
    },
  )
}
