/**
 * `rallyjs/realtime`: channels with offsets and epochs, history and recovery, presence,
 * acknowledged publishes, RPC and Standard Schema validation, over the `rally.v1` protocol
 * (docs/protocol.md). The client is `rallyjs/realtime/client`.
 */
export { MemoryBus, type MemoryBusOptions } from '../pubsub/memory-bus.js'
export {
  fieldPath,
  type InferInput,
  type InferOutput,
  isStandardSchema,
  RealtimeError,
  type StandardIssue,
  type StandardResult,
  type StandardSchema,
  validate,
} from './channels.js'
export type { Broadcaster, ChannelRule, RpcHandler } from './hub.js'
export * from './protocol.js'
export {
  createRealtime,
  Realtime,
  type RealtimeConnection,
  type RealtimeOptions,
  type RealtimeSchemaOf,
  type RealtimeServerOptions,
  SLOW_CONSUMER_POLICY,
  TOPIC_PREFIX,
  WebSocketTransport,
} from './server.js'
export * from './session.js'
export {
  attachTransports,
  type CorsOptions,
  type HttpTransportKind,
  type HttpTransportOptions,
  HttpTransports,
  type ListenTransportsOptions,
  listenTransports,
  type TransportRequest,
  type TransportResponse,
} from './transports/http.js'
