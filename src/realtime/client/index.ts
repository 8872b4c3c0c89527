/**
 * `rallyjs/realtime/client`: the RallyClient for browsers and Node. Build-free in browsers: every
 * import in this directory is relative with a `.js` extension, so the compiled files load as
 * plain ES modules (no bundler, no import map).
 *
 * ```ts
 * import { RallyClient } from 'rallyjs/realtime/client'
 * const client = new RallyClient('wss://example.com/rt', { getToken: () => fetchToken() })
 * const room = client.channel('chat:lobby', { joinLeave: true })
 * room.on('subscribed', ({ recovered }) => { if (!recovered) refetchMessages() })
 * room.on('publication', (pub) => show(pub.data))
 * client.connect()
 * await room.publish({ text: 'hello' })
 * ```
 */

export type { Member, Pub, PublishResult, StreamPosition } from '../protocol.js'
export { type BackoffOptions, backoffCeiling, backoffDelay, resolveBackoff } from './backoff.js'
export {
  type ClientEvents,
  type ConnectionState,
  type DisconnectReason,
  type QueueOptions,
  RallyClient,
  type RallyClientOptions,
} from './client.js'
export { Emitter, type Listener } from './emitter.js'
export { type ClientErrorReason, RallyClientError, RallyError } from './errors.js'
export type {
  AnySchema,
  ChannelData,
  ChannelName,
  PatternName,
  RealtimeSchema,
  RpcMethod,
  RpcParams,
  RpcResultOf,
  RpcSignature,
  SchemaOf,
} from './schema.js'
export {
  type CallOptions,
  type SubscribedEvent,
  Subscription,
  type SubscriptionEvents,
  type SubscriptionOptions,
  type SubscriptionState,
} from './subscription.js'
export {
  globalWebSocket,
  type SocketEvent,
  type Transport,
  type TransportClose,
  type TransportEvents,
  type TransportFactory,
  toWebSocketUrl,
  type WebSocketConstructor,
  type WebSocketLike,
  webSocketTransport,
} from './transport.js'
export {
  DEFAULT_TRANSPORT_ORDER,
  type HttpTransportOptions,
  longPollingTransport,
  resolveTransports,
  sseTransport,
  type TransportName,
} from './transports/index.js'
