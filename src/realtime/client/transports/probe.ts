/**
 * Probing a better transport in the background: while a client runs on a fallback (SSE, long
 * polling), it opens the preferred transport now and then, sends `connect` and waits for the
 * reply. Only a reply proves that frames flow both ways (a buffering proxy lets a WebSocket open
 * and then holds its frames back); the probe's own session is closed at once.
 */
import { PROTOCOL_VERSION } from '../../protocol.js'
import type { Transport, TransportFactory } from '../transport.js'

/** Default ms between probes while on a fallback. */
export const DEFAULT_PROBE_INTERVAL = 60_000

/** Resolves true when `factory` carries a connect and its reply within `timeout` ms. */
export function probeTransport(
  factory: TransportFactory,
  url: string,
  timeout: number,
  token: string | undefined,
): { result: Promise<boolean>; cancel(): void } {
  let transport: Transport | undefined
  let settle: (ok: boolean) => void = () => {}
  const result = new Promise<boolean>((resolve) => {
    settle = (ok) => {
      clearTimeout(timer)
      settle = () => {}
      transport?.close(1000)
      resolve(ok)
    }
  })
  const timer = setTimeout(() => settle(false), timeout)
  transport = factory.open(url, {
    onOpen: () => {
      const command: Record<string, unknown> = { id: 1, cmd: 'connect', version: PROTOCOL_VERSION }
      if (token !== undefined) command.token = token
      transport?.send(JSON.stringify(command))
    },
    onMessage: (text) => {
      try {
        const reply = JSON.parse(text) as { id?: unknown; result?: unknown }
        if (reply.id === 1) settle(reply.result !== undefined)
      } catch {
        settle(false)
      }
    },
    onClose: () => settle(false),
  })
  return { result, cancel: () => settle(false) }
}
