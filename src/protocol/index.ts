/**
 * Rally's sans-I/O WebSocket protocol core (RFC 6455): bytes in, events out; calls in, bytes out.
 * No sockets, timers or event loop here — see `rally` for the Node server and client.
 */
export { CloseCode, encodeClosePayload, isValidWireCloseCode, MAX_CLOSE_REASON_BYTES } from './close.js'
export {
  type CloseInfo,
  Connection,
  type ConnectionHandler,
  type ConnectionOptions,
  ConnectionState,
  type Side,
} from './connection.js'
export { HandshakeError, ProtocolError, ProtocolErrorCode, TimeoutError } from './errors.js'
export { type FrameHeader, FrameParser, type FrameParserOptions, type FrameSink } from './frame-parser.js'
export {
  encodeFrame,
  encodeFrameHeader,
  encodeFrameInto,
  encodeSmallFrameAt,
  type Frame,
  type FrameOptions,
  SMALL_FRAME_LIMIT,
} from './frame-writer.js'
export { computeAcceptKey, generateKey, isValidKey, WEBSOCKET_GUID } from './handshake/accept-key.js'
export {
  buildClientRequest,
  type ClientRequestOptions,
  type ValidatedResponse,
  validateResponse,
} from './handshake/client.js'
export { type HeaderFields, isToken, listHasToken, parseTokenList } from './handshake/headers.js'
export { type HttpHead, HttpHeadParser, type HttpHeadResult, parseHead } from './handshake/http-head.js'
export {
  type AcceptOptions,
  buildAcceptResponse,
  buildErrorResponse,
  type HandshakeRequest,
  type ValidatedRequest,
  validateRequest,
} from './handshake/server.js'
export { DEFAULT_LIMITS, type Limits, resolveLimits } from './limits.js'
export { applyMask, writeRandomMask } from './mask.js'
export { isControlOpcode, isKnownOpcode, Opcode } from './opcode.js'
export type { OutputSink, PreparedFrame } from './output-sequencer.js'
export { isValidUtf8, Utf8Validator } from './utf8.js'
