/**
 * Small helpers shared by the adapter tests: every wait is bounded, so a missing event fails the
 * test with a message instead of hanging the run.
 */
import { request as httpRequest, type IncomingHttpHeaders, type IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import { withTimeout as within } from '../support/timing.js'

export { nextDomEvent, nextEvent } from '../support/events.js'
export { closedPort } from '../support/net.js'
export { waitUntil as until } from '../support/timing.js'
export { within }

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
