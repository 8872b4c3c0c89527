/**
 * Transports by name, for `new RallyClient(url, { transports: ['sse'] })`: the list restricts
 * which ones the client may use and orders them (the first that connects is kept); a name and a
 * factory may be mixed. Without a list the client uses `defaultTransports`.
 */
import {
  globalWebSocket,
  type TransportFactory,
  type WebSocketConstructor,
  webSocketTransport,
} from '../transport.js'
import { longPollingTransport, sseTransport } from './http.js'

export { type HttpTransportOptions, longPollingTransport, sseTransport, toHttpUrl } from './http.js'

export type TransportName = 'websocket' | 'sse' | 'long-polling'

/** The fallback order: WebSocket, then SSE (a proxy that refuses upgrades), then long polling (one that buffers). */
export const DEFAULT_TRANSPORT_ORDER: readonly TransportName[] = ['websocket', 'sse', 'long-polling']

export function resolveTransports(
  list: readonly (TransportName | TransportFactory)[],
  WebSocket: WebSocketConstructor | undefined,
): TransportFactory[] {
  return list.map((entry) => {
    if (typeof entry !== 'string') return entry
    switch (entry) {
      case 'websocket':
        return webSocketTransport(WebSocket)
      case 'sse':
        return sseTransport()
      case 'long-polling':
        return longPollingTransport()
      default:
        throw new TypeError(`unknown transport ${JSON.stringify(entry)}: use websocket, sse or long-polling`)
    }
  })
}

/**
 * The transports of a client given no `transports` option: every one in `DEFAULT_TRANSPORT_ORDER`
 * this runtime can run. A runtime with no WebSocket (Node 20 without one passed) starts with SSE,
 * which needs only `fetch`: the default is "whatever gets through", and a WebSocket transport that
 * can never open would only delay the first connection. Naming 'websocket' explicitly without a
 * constructor still throws, since that asks for something this runtime cannot do.
 */
export function defaultTransports(WebSocket: WebSocketConstructor | undefined): TransportFactory[] {
  const available = WebSocket !== undefined || globalWebSocket() !== undefined
  return resolveTransports(
    DEFAULT_TRANSPORT_ORDER.filter((name) => name !== 'websocket' || available),
    WebSocket,
  )
}
