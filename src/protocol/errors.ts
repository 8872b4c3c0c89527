/**
 * One tree of errors for the whole protocol core.
 *
 * - `ProtocolError` is the peer's fault. It never escapes to the caller as an exception: the
 *   connection fails, sends a close frame with `closeCode`, and reports the error as an event.
 * - `HandshakeError` is a refused opening handshake. On the server it becomes an HTTP response
 *   with `status`; on the client it fails the connection before it opens.
 * - Caller misuse (a close code the API does not allow, a control payload over 125 bytes...)
 *   throws a plain `TypeError` or `RangeError` from the call that misused the API.
 *
 * Close codes are chosen here and nowhere else: each error code maps to exactly one close code.
 */
import { CloseCode } from './close.js'

export const ProtocolErrorCode = {
  ReservedBits: 'RALLY_ERR_RESERVED_BITS',
  UnknownOpcode: 'RALLY_ERR_UNKNOWN_OPCODE',
  MaskRequired: 'RALLY_ERR_MASK_REQUIRED',
  MaskForbidden: 'RALLY_ERR_MASK_FORBIDDEN',
  ControlFrameTooLong: 'RALLY_ERR_CONTROL_FRAME_TOO_LONG',
  ControlFrameFragmented: 'RALLY_ERR_CONTROL_FRAME_FRAGMENTED',
  LengthOutOfRange: 'RALLY_ERR_LENGTH_OUT_OF_RANGE',
  UnexpectedContinuation: 'RALLY_ERR_UNEXPECTED_CONTINUATION',
  ExpectedContinuation: 'RALLY_ERR_EXPECTED_CONTINUATION',
  InvalidClosePayload: 'RALLY_ERR_INVALID_CLOSE_PAYLOAD',
  InvalidCloseCode: 'RALLY_ERR_INVALID_CLOSE_CODE',
  InvalidUtf8: 'RALLY_ERR_INVALID_UTF8',
  InvalidCloseReason: 'RALLY_ERR_INVALID_CLOSE_REASON',
  FrameTooLarge: 'RALLY_ERR_FRAME_TOO_LARGE',
  MessageTooLarge: 'RALLY_ERR_MESSAGE_TOO_LARGE',
  TooManyFragments: 'RALLY_ERR_TOO_MANY_FRAGMENTS',
  UnexpectedData: 'RALLY_ERR_UNEXPECTED_DATA',
  InvalidCompressedData: 'RALLY_ERR_INVALID_COMPRESSED_DATA',
  CompressedContinuation: 'RALLY_ERR_COMPRESSED_CONTINUATION',
} as const

export type ProtocolErrorCode = (typeof ProtocolErrorCode)[keyof typeof ProtocolErrorCode]

/** The single mapping from a peer fault to the close code sent to that peer (RFC 6455 7.4.1). */
const CLOSE_CODE_FOR: Record<ProtocolErrorCode, number> = {
  RALLY_ERR_RESERVED_BITS: CloseCode.ProtocolError,
  RALLY_ERR_UNKNOWN_OPCODE: CloseCode.ProtocolError,
  RALLY_ERR_MASK_REQUIRED: CloseCode.ProtocolError,
  RALLY_ERR_MASK_FORBIDDEN: CloseCode.ProtocolError,
  RALLY_ERR_CONTROL_FRAME_TOO_LONG: CloseCode.ProtocolError,
  RALLY_ERR_CONTROL_FRAME_FRAGMENTED: CloseCode.ProtocolError,
  RALLY_ERR_LENGTH_OUT_OF_RANGE: CloseCode.ProtocolError,
  RALLY_ERR_UNEXPECTED_CONTINUATION: CloseCode.ProtocolError,
  RALLY_ERR_EXPECTED_CONTINUATION: CloseCode.ProtocolError,
  RALLY_ERR_INVALID_CLOSE_PAYLOAD: CloseCode.ProtocolError,
  RALLY_ERR_INVALID_CLOSE_CODE: CloseCode.ProtocolError,
  RALLY_ERR_UNEXPECTED_DATA: CloseCode.ProtocolError,
  RALLY_ERR_COMPRESSED_CONTINUATION: CloseCode.ProtocolError,
  RALLY_ERR_INVALID_UTF8: CloseCode.InvalidPayload,
  RALLY_ERR_INVALID_COMPRESSED_DATA: CloseCode.InvalidPayload,
  RALLY_ERR_INVALID_CLOSE_REASON: CloseCode.InvalidPayload,
  RALLY_ERR_FRAME_TOO_LARGE: CloseCode.MessageTooBig,
  RALLY_ERR_MESSAGE_TOO_LARGE: CloseCode.MessageTooBig,
  RALLY_ERR_TOO_MANY_FRAGMENTS: CloseCode.MessageTooBig,
}

/** The peer broke the protocol or a limit. Carries the close code to send back. */
export class ProtocolError extends Error {
  override readonly name = 'ProtocolError'
  readonly code: ProtocolErrorCode
  readonly closeCode: number

  constructor(code: ProtocolErrorCode, message: string) {
    super(message)
    this.code = code
    this.closeCode = CLOSE_CODE_FOR[code]
  }
}

/**
 * The opening handshake was refused. `status` is the HTTP status a server answers with;
 * `headers` are extra response headers the RFC asks for (e.g. `Sec-WebSocket-Version` with 426).
 */
export class HandshakeError extends Error {
  override readonly name = 'HandshakeError'
  readonly status: number
  readonly headers: Readonly<Record<string, string>>

  constructor(status: number, message: string, headers: Record<string, string> = {}) {
    super(message)
    this.status = status
    this.headers = headers
  }
}

/** A peer did not answer in time (heartbeat, handshake). Routine, like a ProtocolError. */
export class TimeoutError extends Error {
  override readonly name = 'TimeoutError'
}
