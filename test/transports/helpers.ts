/**
 * Servers for the transport tests: a realtime on a node:http server serving WebSocket upgrades,
 * SSE and long polling at one base path (src/realtime/transports/http.ts).
 */
import type { Server as HttpServer } from 'node:http'
import { createRealtime, type Realtime, type RealtimeOptions } from '../../src/realtime/index.js'
import {
  type HttpTransportOptions,
  type HttpTransports,
  listenTransports,
} from '../../src/realtime/transports/http.js'

export const PATH = '/realtime'

export interface TransportServer {
  realtime: Realtime
  server: HttpServer
  transports: HttpTransports
  port: number
  /** http://127.0.0.1:port/realtime */
  url: string
  close(): Promise<void>
}

export async function startTransportServer(
  options: Partial<RealtimeOptions> = {},
  transportOptions: HttpTransportOptions = {},
): Promise<TransportServer> {
  const realtime = createRealtime({
    channels: { 'chat:*': { publish: true, history: { size: 100, ttl: 600_000 } } },
    onError: () => {},
    ...options,
  })
  const { server, transports, port } = await listenTransports(realtime, {
    port: 0,
    host: '127.0.0.1',
    path: PATH,
    ...transportOptions,
  })
  return {
    realtime,
    server,
    transports,
    port,
    url: `http://127.0.0.1:${port}${PATH}`,
    async close() {
      await realtime.close()
      transports.close()
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
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
