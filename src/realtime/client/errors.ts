/**
 * The two kinds of failure a RallyClient call can end with: the server answered with an error
 * (`RallyError`, its numeric code from the protocol's table), or the client gave up before any
 * answer (`RallyClientError`: queue full, timeout, connection lost, client closed).
 */
import { type ErrorBody, errorMessages } from '../protocol.js'

/** An error reply from the server. `code` is one of protocol.ts's ErrorCode values. */
export class RallyError extends Error {
  override readonly name = 'RallyError'
  readonly code: number
  /** For invalid data: the dotted path of the offending field. */
  readonly field: string | undefined
  /** The server says retrying later may succeed. */
  readonly temporary: boolean

  constructor(body: ErrorBody) {
    super(body.message || errorMessages[body.code as keyof typeof errorMessages] || `error ${body.code}`)
    this.code = body.code
    this.field = body.field
    this.temporary = body.temporary === true
  }
}

export type ClientErrorReason =
  /** The bounded queue of calls waiting for a connection is full (count or bytes). */
  | 'queue_full'
  /** The call's timeout passed before the server answered (it may still have been applied). */
  | 'timeout'
  /** The connection dropped after an RPC was sent and before its reply: it may or may not have run. */
  | 'connection_lost'
  /** close() was called, or the client stopped for good (a terminal refusal). */
  | 'closed'
  /** The call itself is wrong (too large for the queue, not JSON-serialisable…). */
  | 'invalid'

/** A call the client ended without an answer from the server. */
export class RallyClientError extends Error {
  override readonly name = 'RallyClientError'

  constructor(
    readonly reason: ClientErrorReason,
    message: string,
  ) {
    super(message)
  }
}
