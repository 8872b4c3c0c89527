/**
 * Transports by name, for `new RallyClient(url, { transports: ['websocket', 'sse', 'long-polling'] })`:
 * the list restricts which ones the client may use and orders them (the first that connects is
 * kept); a name and a factory may be mixed.
 */
import { type TransportFactory, type WebSocketConstructor, webSocketTransport } from '../transport.js'
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
