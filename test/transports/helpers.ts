/**
 * Servers for the transport tests: a realtime serving WebSocket upgrades, SSE and long polling at
 * one base path (src/realtime/transports/http.ts), on Rally's own port (listenTransports, its own
 * HTTP/1.1 handling) or on a node:http server (attachTransports).
 */
import { createServer as createHttpServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createRealtime, type Realtime, type RealtimeOptions } from '../../src/realtime/index.js'
import {
  attachTransports,
  type HttpTransportOptions,
  type HttpTransports,
  listenTransports,
} from '../../src/realtime/transports/http.js'

/** Which HTTP server carries the transports. */
export type HttpKind = 'rally' | 'node:http'
export const HTTP_KINDS: readonly HttpKind[] = ['rally', 'node:http']

export const PATH = '/realtime'

export interface TransportServer {
  realtime: Realtime
  transports: HttpTransports
  port: number
  /** http://127.0.0.1:port/realtime */
  url: string
  close(): Promise<void>
}

export async function startTransportServer(
  options: Partial<RealtimeOptions> = {},
  transportOptions: HttpTransportOptions = {},
  http: HttpKind = 'rally',
): Promise<TransportServer> {
  const realtime = createRealtime({
    channels: { 'chat:*': { publish: true, history: { size: 100, ttl: 600_000 } } },
    onError: () => {},
    ...options,
  })
  const served = await serveTransports(realtime, { path: PATH, ...transportOptions }, http)
  return {
    realtime,
    transports: served.transports,
    port: served.port,
    url: `http://127.0.0.1:${served.port}${PATH}`,
    async close() {
      await realtime.close()
      await served.close()
    },
  }
}

/** The transports of `realtime` on 127.0.0.1 and a free port, on the HTTP server of `http`'s kind. */
export async function serveTransports(
  realtime: Realtime,
  options: HttpTransportOptions,
  http: HttpKind = 'rally',
): Promise<{ transports: HttpTransports; port: number; close(): Promise<void> }> {
  if (http === 'rally') return listenTransports(realtime, { port: 0, host: '127.0.0.1', ...options })
  const server = createHttpServer()
  const transports = attachTransports(realtime, server, options)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    transports,
    port: (server.address() as AddressInfo).port,
    async close() {
      transports.close()
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

/**
 * Resolves once the transports have handled `count` more requests (their `handle` has returned:
 * a poll is held, a stream's head is out), whichever server carries them.
 */
export function handled(transports: HttpTransports, count = 1): Promise<void> {
  return new Promise((resolve) => {
    const original = transports.handle
    let seen = 0
    transports.handle = function (this: HttpTransports, ...args: Parameters<HttpTransports['handle']>) {
      const result = original.apply(this, args)
      if (++seen === count) {
        transports.handle = original
        resolve()
      }
      return result
    }
  })
}

/** Opens a raw session: POST open. */
export async function openSession(
  url: string,
  kind: 'sse' | 'long-polling',
): Promise<{ session: string; token: string }> {
  const response = await fetch(`${url}/open`, { method: 'POST', headers: { 'x-rally-transport': kind } })
  if (response.status !== 200) throw new Error(`open answered ${response.status}`)
  return (await response.json()) as { session: string; token: string }
}

/** Resolves as `promise`, or rejects after `ms` naming `what`. */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)
  })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}
