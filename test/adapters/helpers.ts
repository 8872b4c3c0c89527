/**
 * Small helpers shared by the adapter tests: every wait is bounded, so a missing event fails the
 * test with a message instead of hanging the run.
 */
import type { EventEmitter } from 'node:events'
import { request as httpRequest, type IncomingHttpHeaders, type IncomingMessage } from 'node:http'
import { createServer as createNetServer, type Socket } from 'node:net'

/** Rejects with a message naming `label` if `promise` does not settle within `ms`. */
export function within<T>(promise: Promise<T>, ms: number, label: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${label}`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

/** The arguments of the next `event` from an EventEmitter, bounded. */
export function nextEvent<T extends unknown[] = unknown[]>(
  emitter: EventEmitter,
  event: string,
  ms = 3000,
): Promise<T> {
  return within(
    new Promise<T>((resolve) => emitter.once(event, (...args: unknown[]) => resolve(args as T))),
    ms,
    `"${event}"`,
  )
}

/** The next `type` event from an EventTarget (Rally's WHATWG WebSocket), bounded. */
export function nextDomEvent<E extends Event = Event>(
  target: EventTarget,
  type: string,
  ms = 3000,
): Promise<E> {
  return within(
    new Promise<E>((resolve) =>
      target.addEventListener(type, (event) => resolve(event as E), { once: true }),
    ),
    ms,
    `"${type}" event`,
  )
}

/** Polls `condition` until it holds, bounded. */
export async function until(condition: () => boolean, ms: number, label: string): Promise<void> {
  const deadline = Date.now() + ms
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${label}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

/** The answer to an upgrade request sent with node:http: a 101 (with its socket) or another status. */
export type UpgradeAnswer =
  | { kind: 'upgrade'; status: number; headers: IncomingHttpHeaders; socket: Socket }
  | { kind: 'response'; status: number; headers: IncomingHttpHeaders; body: string }

/**
 * Sends a WebSocket upgrade request with node:http (a client nobody here wrote) and reports what
 * came back: the 101 head, or a refusal's status, headers and body.
 */
export function upgradeRequest(
  port: number,
  path: string,
  headers: Record<string, string> = {},
  ms = 3000,
): Promise<UpgradeAnswer> {
  return within(
    new Promise<UpgradeAnswer>((resolve, reject) => {
      const req = httpRequest({
        host: '127.0.0.1',
        port,
        path,
        // A connection of its own: no keep-alive socket shared with another request.
        agent: false,
        headers: {
          Connection: 'Upgrade',
          Upgrade: 'websocket',
          'Sec-WebSocket-Version': '13',
          'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
          ...headers,
        },
      })
      req.on('upgrade', (res: IncomingMessage, socket: Socket) => {
        resolve({ kind: 'upgrade', status: res.statusCode ?? 0, headers: res.headers, socket })
      })
      req.on('response', (res: IncomingMessage) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (chunk: string) => {
          body += chunk
        })
        res.on('end', () =>
          resolve({ kind: 'response', status: res.statusCode ?? 0, headers: res.headers, body }),
        )
        res.on('error', reject)
      })
      req.on('error', reject)
      req.end()
    }),
    ms,
    `an answer to the upgrade request for ${path}`,
  )
}

/** A plain HTTP GET on a connection of its own: status, headers and body. */
export function httpGet(
  port: number,
  path: string,
  headers: Record<string, string> = {},
  ms = 3000,
): Promise<{ status: number; headers: IncomingHttpHeaders; body: string }> {
  return within(
    new Promise((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port, path, agent: false, headers }, (res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (chunk: string) => {
          body += chunk
        })
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }))
        res.on('error', reject)
      })
      req.on('error', reject)
      req.end()
    }),
    ms,
    `a response to GET ${path}`,
  )
}

/** A port nothing listens on (bound, then released). */
export async function closedPort(): Promise<number> {
  const server = createNetServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}
