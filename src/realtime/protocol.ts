/**
 * The `rally.v1` wire protocol: the one definition of what travels between a RallyClient (or any
 * language's plain WebSocket client) and a Rally realtime server. docs/protocol.md describes the
 * same thing in prose; the tables of error and disconnect codes below are the source of truth.
 *
 * Isomorphic on purpose — no `node:` imports — because the browser client imports it too.
 *
 * Shape of the conversation (JSON text, one envelope per WebSocket message; the fallback
 * transports carry arrays of the same envelopes):
 * - client → server **commands** `{ id, cmd, ... }`, each answered by one **reply** with the same
 *   id: `{ id, result }` or `{ id, error }`. `pong` is the one command without an id or a reply.
 * - server → client **pushes** `{ push, ... }` (no id): publications, joins and leaves, server-side
 *   unsubscribes, heartbeat pings, and the disconnect advice sent before the server closes.
 */

/** The WebSocket subprotocol (Sec-WebSocket-Protocol) both ends must agree on. */
export const SUBPROTOCOL = 'rally.v1'

/** The protocol version a client sends in `connect`. A server refuses versions it does not know. */
export const PROTOCOL_VERSION = 1

// ---------------------------------------------------------------------------------------------
// Codes

/**
 * Error codes in replies (`{ id, error: { code } }`). Numbers never change meaning; new ones are
 * only added. A client that meets a code it does not know treats it as `Internal`.
 */
export const ErrorCode = {
  /** The server failed; nothing about the request was wrong. Temporary: retrying may succeed. */
  Internal: 100,
  /** The token (or the request's credentials) was refused at connect. */
  Unauthorized: 101,
  /** No channel rule matches the channel name. */
  UnknownChannel: 102,
  /** A channel rule refused this subscribe, publish, presence or history request. */
  PermissionDenied: 103,
  /** No RPC handler has this method name. */
  MethodNotFound: 104,
  /** The connection is already subscribed to the channel. */
  AlreadySubscribed: 105,
  /** A per-connection limit was reached (channels per connection, pending RPCs…). */
  LimitExceeded: 106,
  /** The envelope or a field of it is malformed; `message` says which. */
  BadRequest: 107,
  /** The feature is turned off for this channel (history, presence, client publishes). */
  NotAvailable: 108,
  /** The token has expired: get a new one and `refresh` (or reconnect with it). */
  TokenExpired: 109,
  /** The `connect` version is not one this server speaks. */
  UnsupportedVersion: 110,
  /** Rate limit hit (publishes per second, subscribe floods). Temporary: retry later. */
  TooManyRequests: 111,
  /** Schema validation failed; `field` names the first offending field (a dotted path). */
  InvalidData: 112,
  /** The data is larger than the server accepts for one publication, RPC or message. */
  MessageTooBig: 113,
  /** The server gave up waiting (an RPC handler, the bus). Temporary. */
  Timeout: 114,
  /** The command needs a subscription this connection does not have. */
  NotSubscribed: 115,
} as const
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode]

/** Errors worth retrying unchanged after a delay (the reply carries `temporary: true`). */
export const temporaryErrors: ReadonlySet<number> = new Set<number>([
  ErrorCode.Internal,
  ErrorCode.TooManyRequests,
  ErrorCode.Timeout,
])

/**
 * Disconnect codes: sent in the `disconnect` push and used as the WebSocket close code (the
 * 4000–4999 range is reserved for applications, RFC 6455 section 7.4.2). 4000–4499 mean
 * "reconnect (with backoff)", 4500–4999 mean "do not reconnect without a change" (a new token,
 * a fixed client). The push's `reconnect` flag says the same thing explicitly.
 */
export const DisconnectCode = {
  /** The server is shutting down or moving the client elsewhere: reconnect with backoff. */
  GoingAway: 4001,
  /** No `pong` (nor anything else) arrived within the heartbeat timeout. */
  HeartbeatTimeout: 4002,
  /** The client did not read fast enough; its outgoing buffer overflowed. */
  SlowConsumer: 4003,
  /** No `connect` command arrived in time after the WebSocket opened. */
  ConnectTimeout: 4004,
  /** The server failed while handling the connection. */
  InternalError: 4005,
  /** The token expired and was not refreshed: reconnect with a new token. */
  TokenExpired: 4006,
  /** The connection kept sending after being told to slow down (rate limit errors). */
  TooManyRequests: 4007,
  /** The server application disconnected the client but allows it back. */
  ForceReconnect: 4008,
  /** Authentication refused: do not reconnect with the same credentials. */
  Unauthorized: 4501,
  /** Protocol violation (malformed envelope, command before connect, binary frame…). */
  BadRequest: 4502,
  /** The `connect` version is unknown to this server. */
  UnsupportedVersion: 4503,
  /** A message exceeded the server's size limit. */
  MessageTooBig: 4504,
  /** The server application disconnected the client for good. */
  ForceDisconnect: 4505,
} as const
export type DisconnectCode = (typeof DisconnectCode)[keyof typeof DisconnectCode]

/**
 * The default text of every code, in one table: error codes (100–199) and disconnect codes
 * (4000–4999) never overlap, so both lookups below read it.
 */
const codeTexts: Readonly<Record<ErrorCode | DisconnectCode, string>> = {
  100: 'internal server error',
  101: 'unauthorized',
  102: 'unknown channel',
  103: 'permission denied',
  104: 'method not found',
  105: 'already subscribed',
  106: 'limit exceeded',
  107: 'bad request',
  108: 'not available',
  109: 'token expired',
  110: 'unsupported protocol version',
  111: 'too many requests',
  112: 'invalid data',
  113: 'message too big',
  114: 'timeout',
  115: 'not subscribed',
  4001: 'going away',
  4002: 'heartbeat timeout',
  4003: 'slow consumer',
  4004: 'connect timeout',
  4005: 'internal server error',
  4006: 'token expired',
  4007: 'too many requests',
  4008: 'force reconnect',
  4501: 'unauthorized',
  4502: 'bad request',
  4503: 'unsupported protocol version',
  4504: 'message too big',
  4505: 'force disconnect',
}

/**
 * The default message for each error code (servers may say more, never less); docs/protocol.md
 * lists them.
 */
export const errorMessages: Readonly<Record<ErrorCode, string>> = codeTexts

/**
 * The default reason text for each disconnect code (also the WebSocket close reason);
 * docs/protocol.md lists them.
 */
export const disconnectReasons: Readonly<Record<DisconnectCode, string>> = codeTexts

/** Codes of the `unsubscribed` push (the server ended a subscription on its own). */
export const UnsubscribeCode = {
  /** The server application unsubscribed the client; `resubscribe` is false. */
  Server: 2000,
  /** The channel's stream was interrupted (history reset, deliveries missed on the bus):
   * subscribe again with `since` to recover; `resubscribe` is true. */
  Resubscribe: 2001,
} as const
export type UnsubscribeCode = (typeof UnsubscribeCode)[keyof typeof UnsubscribeCode]

/** Whether a client may reconnect after this close or disconnect code. */
export function mayReconnect(code: number): boolean {
  if (code >= 4500 && code <= 4999) return false
  // Other codes (1000–3999 from the WebSocket layer, 4000–4499 from us) leave reconnection open;
  // 1000/1001 from a server that speaks rally.v1 are preceded by a disconnect push anyway.
  return true
}

/**
 * How long a client waits, with no message at all from the server, before it judges the path
 * dead and reconnects. The server pings every `ping` ms (connect result); twice that, plus a
 * margin for a busy event loop, tolerates one lost ping without waiting forever.
 */
export function silenceLimit(ping: number): number {
  return 2 * ping + 1000
}

// ---------------------------------------------------------------------------------------------
// Values inside envelopes

/** Bounds every server applies to names (a client can check before sending). */
export const MAX_CHANNEL_LENGTH = 255
export const MAX_METHOD_LENGTH = 255
export const MAX_KEY_LENGTH = 128
export const MAX_TOKEN_LENGTH = 16 * 1024

/** A position in a channel: the last offset seen and the epoch it belongs to. */
export interface StreamPosition {
  /** 1 for the first publication of an epoch, +1 each; a safe integer (0 = before the first). */
  offset: number
  /** Names the channel's history; a different epoch means the offset is meaningless. */
  epoch: string
}

/** Who published (client publishes only) or who is present. */
export interface Member {
  /** The connection's client id (unique per connection). */
  client: string
  /** The user id the authenticate hook returned ('' for anonymous). */
  user: string
  /** What the authenticate hook attached to the connection. */
  info?: unknown
}

/** A publication as a client sees it. */
export interface Pub<Data = unknown> {
  channel: string
  offset: number
  epoch: string
  data: Data
  /** The publishing client, when a client published it (absent for server publishes). */
  info?: Member
}

/** The `error` of an error reply. */
export interface ErrorBody {
  code: number
  message: string
  /** For InvalidData: the dotted path of the offending field ('' for the value itself). */
  field?: string
  /** Retrying the same command later may succeed. */
  temporary?: boolean
}

// ---------------------------------------------------------------------------------------------
// Commands (client → server)

export interface ConnectCommand {
  id: number
  cmd: 'connect'
  version: number
  token?: string
  /** The client id of the previous connection, informative (logs, metrics). */
  session?: string
}
export interface RefreshCommand {
  id: number
  cmd: 'refresh'
  token: string
}
export interface SubscribeCommand {
  id: number
  cmd: 'subscribe'
  channel: string
  /** Recover from this position: the reply carries the publications missed since. */
  since?: StreamPosition
  /** Ask for `join` and `leave` pushes (needs presence on the channel). */
  joinLeave?: boolean
}
export interface UnsubscribeCommand {
  id: number
  cmd: 'unsubscribe'
  channel: string
}
export interface PublishCommand {
  id: number
  cmd: 'publish'
  channel: string
  data: unknown
  /** Idempotency key: a repeat within the server's window returns the first offset. */
  key?: string
}
export interface RpcCommand {
  id: number
  cmd: 'rpc'
  method: string
  data?: unknown
}
export interface PresenceCommand {
  id: number
  cmd: 'presence'
  channel: string
}
export interface PresenceCountCommand {
  id: number
  cmd: 'presence_count'
  channel: string
}
export interface HistoryCommand {
  id: number
  cmd: 'history'
  channel: string
  since?: StreamPosition
  limit?: number
}
/** The answer to a `ping` push: no id, no reply. */
export interface PongCommand {
  cmd: 'pong'
}

export type RequestCommand =
  | ConnectCommand
  | RefreshCommand
  | SubscribeCommand
  | UnsubscribeCommand
  | PublishCommand
  | RpcCommand
  | PresenceCommand
  | PresenceCountCommand
  | HistoryCommand
export type Command = RequestCommand | PongCommand
export type CommandName = Command['cmd']

// ---------------------------------------------------------------------------------------------
// Results (the `result` of a successful reply, per command)

export interface ConnectResult {
  client: string
  version: number
  /** The server's ping interval in ms; see `silenceLimit`. */
  ping: number
  /** Ms until the token expires (then `refresh`, or be disconnected with TokenExpired). */
  expires?: number
}
export interface RefreshResult {
  expires?: number
}
export interface SubscribeResult {
  /** The channel's position at subscribe time (after the recovered publications, if any). */
  offset: number
  epoch: string
  /** Present when `since` was given: true when `publications` are exactly what was missed. */
  recovered?: boolean
  /** The publications missed since `since`, oldest first (present when recovering). */
  publications?: Pub[]
}
export type UnsubscribeResult = Record<string, never>
export interface PublishResult {
  offset: number
  epoch: string
}
export interface RpcResult {
  data: unknown
}
export interface PresenceResult {
  members: Member[]
}
export interface PresenceCountResult {
  count: number
}
export interface HistoryResult {
  publications: Pub[]
  /** The channel's current position. */
  offset: number
  epoch: string
  /** With `since`: the publications are every one after it (no trimming, same epoch, no limit cut). */
  complete: boolean
}

/** The result type of each command. */
export interface CommandResults {
  connect: ConnectResult
  refresh: RefreshResult
  subscribe: SubscribeResult
  unsubscribe: UnsubscribeResult
  publish: PublishResult
  rpc: RpcResult
  presence: PresenceResult
  presence_count: PresenceCountResult
  history: HistoryResult
}

// ---------------------------------------------------------------------------------------------
// Server → client

export interface SuccessReply<Result = unknown> {
  id: number
  result: Result
}
export interface ErrorReply {
  id: number
  error: ErrorBody
}
export type Reply<Result = unknown> = SuccessReply<Result> | ErrorReply

export interface PubPush<Data = unknown> extends Pub<Data> {
  push: 'pub'
}
export interface JoinPush {
  push: 'join'
  channel: string
  member: Member
}
export interface LeavePush {
  push: 'leave'
  channel: string
  member: Member
}
/** The server ended a subscription on its own (the app unsubscribed the client, a gap…). */
export interface UnsubscribedPush {
  push: 'unsubscribed'
  channel: string
  code: number
  reason: string
  /** The client may subscribe again (with recovery). */
  resubscribe?: boolean
}
/** Application heartbeat: answer with `{ "cmd": "pong" }`. */
export interface PingPush {
  push: 'ping'
}
/** Sent just before the server closes the connection, with the same code as the close frame. */
export interface DisconnectPush {
  push: 'disconnect'
  code: number
  reason: string
  reconnect: boolean
}
export type Push = PubPush | JoinPush | LeavePush | UnsubscribedPush | PingPush | DisconnectPush
export type PushName = Push['push']
export type ServerMessage = Reply | Push

// ---------------------------------------------------------------------------------------------
// Encoding

/** Serialises a command (client side). */
export function encodeCommand(command: Command): string {
  return JSON.stringify(command)
}

/** Serialises a reply or push (server side, for envelopes not built by the helpers below). */
export function encodeServerMessage(message: ServerMessage): string {
  return JSON.stringify(message)
}

/**
 * Builds a `pub` push around data that is already JSON text — the server serialises the data
 * once when it is published, and the envelope once per publication, never per subscriber.
 * `infoJson` is the JSON text of the publishing Member, if any.
 */
export function encodePubPush(
  channel: string,
  offset: number,
  epoch: string,
  dataJson: string,
  infoJson?: string,
): string {
  const info = infoJson === undefined ? '' : `,"info":${infoJson}`
  return `{"push":"pub","channel":${JSON.stringify(channel)},"offset":${offset},"epoch":${JSON.stringify(epoch)},"data":${dataJson}${info}}`
}

/** An error reply with the code's default message unless one is given. */
export function errorReply(id: number, code: ErrorCode, message?: string, field?: string): ErrorReply {
  const error: ErrorBody = { code, message: message ?? errorMessages[code] }
  if (field !== undefined) error.field = field
  if (temporaryErrors.has(code)) error.temporary = true
  return { id, error }
}

/** The disconnect push for a code, with the code's default reason unless one is given. */
export function disconnectPush(code: DisconnectCode, reason?: string): DisconnectPush {
  return {
    push: 'disconnect',
    code,
    reason: reason ?? disconnectReasons[code],
    reconnect: mayReconnect(code),
  }
}

// ---------------------------------------------------------------------------------------------
// Decoding with validation

/** Why an incoming envelope was refused: answer `id` (when known) with `error`, else disconnect. */
export interface DecodeFailure {
  ok: false
  /** The envelope's id when it had a valid one: the receiver can reply instead of disconnecting. */
  id: number | undefined
  error: ErrorBody
}
export type DecodeResult<T> = { ok: true; value: T } | DecodeFailure

function fail(id: number | undefined, message: string): DecodeFailure {
  return { ok: false, id, error: { code: ErrorCode.BadRequest, message } }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function isCommandId(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value > 0
}

function isName(value: unknown, maxLength: number): value is string {
  return typeof value === 'string' && value.length > 0 && value.length <= maxLength && !hasControl(value)
}

function hasControl(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i)
    if (code < 0x20 || code === 0x7f) return true
  }
  return false
}

function isOffset(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0
}

function checkPosition(value: unknown): string | undefined {
  if (!isRecord(value)) return 'since must be an object { offset, epoch }'
  if (!isOffset(value.offset)) return 'since.offset must be a non-negative safe integer'
  if (typeof value.epoch !== 'string' || value.epoch.length > MAX_CHANNEL_LENGTH)
    return 'since.epoch must be a string'
  return undefined
}

function checkChannel(value: Record<string, unknown>): string | undefined {
  if (!isName(value.channel, MAX_CHANNEL_LENGTH))
    return `${String(value.cmd)}: channel must be a non-empty string of at most ${MAX_CHANNEL_LENGTH} characters without control characters`
  return undefined
}

/**
 * Parses and validates one command envelope (JSON text) from a client. Unknown fields are
 * ignored (so that a later minor addition does not break older servers); unknown commands,
 * missing or mistyped fields are refused with BadRequest and a message naming the field.
 */
export function decodeCommand(text: string): DecodeResult<Command> {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return fail(undefined, 'envelope is not valid JSON')
  }
  return validateCommand(value)
}

/** Validates an already-parsed envelope (the fallback transports parse arrays of them). */
export function validateCommand(value: unknown): DecodeResult<Command> {
  if (!isRecord(value)) return fail(undefined, 'envelope must be a JSON object')
  const cmd = value.cmd
  if (cmd === 'pong') return { ok: true, value: { cmd: 'pong' } }
  if (!isCommandId(value.id)) return fail(undefined, 'id must be a positive safe integer')
  const id = value.id
  if (typeof cmd !== 'string') return fail(id, 'cmd must be a string')
  const problem = checkCommandFields(cmd, value)
  if (problem !== undefined) return fail(id, problem)
  return { ok: true, value: value as unknown as Command }
}

function checkCommandFields(cmd: string, value: Record<string, unknown>): string | undefined {
  switch (cmd) {
    case 'connect':
      if (!isCommandVersion(value.version)) return 'connect: version must be a positive integer'
      if (
        value.token !== undefined &&
        (typeof value.token !== 'string' || value.token.length > MAX_TOKEN_LENGTH)
      )
        return `connect: token must be a string of at most ${MAX_TOKEN_LENGTH} characters`
      if (value.session !== undefined && !isName(value.session, MAX_KEY_LENGTH))
        return 'connect: session must be a client id string'
      return undefined
    case 'refresh':
      if (typeof value.token !== 'string' || value.token.length > MAX_TOKEN_LENGTH)
        return `refresh: token must be a string of at most ${MAX_TOKEN_LENGTH} characters`
      return undefined
    case 'subscribe':
      if (value.since !== undefined) {
        const problem = checkPosition(value.since)
        if (problem !== undefined) return `subscribe: ${problem}`
      }
      if (value.joinLeave !== undefined && typeof value.joinLeave !== 'boolean')
        return 'subscribe: joinLeave must be a boolean'
      return checkChannel(value)
    case 'unsubscribe':
    case 'presence':
    case 'presence_count':
      return checkChannel(value)
    case 'publish':
      if (!('data' in value) || value.data === undefined) return 'publish: data is required'
      if (value.key !== undefined && !isName(value.key, MAX_KEY_LENGTH))
        return `publish: key must be a non-empty string of at most ${MAX_KEY_LENGTH} characters`
      return checkChannel(value)
    case 'rpc':
      if (!isName(value.method, MAX_METHOD_LENGTH))
        return `rpc: method must be a non-empty string of at most ${MAX_METHOD_LENGTH} characters`
      return undefined
    case 'history':
      if (value.since !== undefined) {
        const problem = checkPosition(value.since)
        if (problem !== undefined) return `history: ${problem}`
      }
      if (value.limit !== undefined && !(Number.isSafeInteger(value.limit) && (value.limit as number) >= 0))
        return 'history: limit must be a non-negative integer'
      return checkChannel(value)
    default:
      return `unknown command ${JSON.stringify(cmd.slice(0, 32))}`
  }
}

function isCommandVersion(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value > 0
}

const pushNames: ReadonlySet<string> = new Set(['pub', 'join', 'leave', 'unsubscribed', 'ping', 'disconnect'])

/**
 * Parses one server envelope (client side) and checks its outer shape: a reply has a positive id
 * and exactly one of `result`/`error` (with a numeric code), a push has a known `push` name and
 * the fields the client relies on. Unknown push names are refused, so that a client can ignore
 * them (the server only sends those a client's version knows).
 */
export function decodeServerMessage(text: string): DecodeResult<ServerMessage> {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return fail(undefined, 'server message is not valid JSON')
  }
  if (!isRecord(value)) return fail(undefined, 'server message must be a JSON object')
  if (value.push !== undefined) {
    if (typeof value.push !== 'string' || !pushNames.has(value.push))
      return fail(undefined, `unknown push ${JSON.stringify(String(value.push).slice(0, 32))}`)
    const problem = checkPushFields(value)
    if (problem !== undefined) return fail(undefined, problem)
    return { ok: true, value: value as unknown as Push }
  }
  if (!isCommandId(value.id)) return fail(undefined, 'reply id must be a positive safe integer')
  const hasResult = 'result' in value
  const hasError = 'error' in value
  if (hasResult === hasError) return fail(value.id, 'reply must have exactly one of result and error')
  if (hasError) {
    const error = value.error
    if (!isRecord(error) || typeof error.code !== 'number' || typeof error.message !== 'string')
      return fail(value.id, 'reply error must be { code: number, message: string }')
  }
  return { ok: true, value: value as unknown as Reply }
}

function checkPushFields(value: Record<string, unknown>): string | undefined {
  switch (value.push) {
    case 'pub':
      if (typeof value.channel !== 'string') return 'pub: channel must be a string'
      if (!isOffset(value.offset)) return 'pub: offset must be a non-negative safe integer'
      if (typeof value.epoch !== 'string') return 'pub: epoch must be a string'
      return undefined
    case 'join':
    case 'leave':
      if (typeof value.channel !== 'string') return `${value.push}: channel must be a string`
      if (!isRecord(value.member) || typeof value.member.client !== 'string')
        return `${value.push}: member must be { client, user, info? }`
      return undefined
    case 'unsubscribed':
      if (typeof value.channel !== 'string') return 'unsubscribed: channel must be a string'
      if (typeof value.code !== 'number') return 'unsubscribed: code must be a number'
      return undefined
    case 'disconnect':
      if (typeof value.code !== 'number') return 'disconnect: code must be a number'
      if (typeof value.reconnect !== 'boolean') return 'disconnect: reconnect must be a boolean'
      return undefined
    default:
      return undefined
  }
}

/** Type guards for a decoded server message. */
export function isReply(message: ServerMessage): message is Reply {
  return (message as { push?: unknown }).push === undefined
}
export function isErrorReply(message: ServerMessage): message is ErrorReply {
  return isReply(message) && 'error' in message
}
