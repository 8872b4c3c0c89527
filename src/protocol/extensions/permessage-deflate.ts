/**
 * permessage-deflate negotiation (RFC 7692 section 7), both sides, without any zlib: which
 * parameters to offer, which offer to accept, what the response means. The Node layer turns the
 * outcome into zlib streams (src/node/deflate.ts).
 */
import { type ExtensionOffer, formatExtension } from './extension-header.js'

export const PERMESSAGE_DEFLATE = 'permessage-deflate'

/** What one side is willing to do. Every field has a documented default. */
export interface PerMessageDeflateOptions {
  /**
   * The server forgoes context takeover: each message it sends is compressed on its own. That
   * costs some ratio on small similar messages, and buys two things: no per-connection compressor
   * memory (one shared compressor, used synchronously), and broadcast messages compressed once
   * for all subscribers. Server default: true. Client: request it from the server; default false.
   */
  serverNoContextTakeover?: boolean
  /**
   * The client forgoes context takeover. Server: ask clients for it (they must comply), which
   * removes per-connection decompressor memory on the server; default true. Client: promise it;
   * default false.
   */
  clientNoContextTakeover?: boolean
  /** Largest LZ77 window the server compresses with, 8-15 (RFC 7692 7.1.2.1). Default 15. */
  serverMaxWindowBits?: number
  /** Largest LZ77 window the client compresses with, 8-15 (RFC 7692 7.1.2.2). Default 15. */
  clientMaxWindowBits?: number
  /** Messages shorter than this many bytes are sent uncompressed. Default 1024. */
  threshold?: number
  /** zlib compression level, 0-9. Default 1 (fastest; small JSON gains little from more). */
  level?: number
  /** zlib memLevel, 1-9, for compressors kept per connection (context takeover). Default 8. */
  memLevel?: number
}

/** The agreed parameters (RFC 7692 7.1), the same on both sides of the connection. */
export interface DeflateParams {
  serverNoContextTakeover: boolean
  clientNoContextTakeover: boolean
  /** Window the server compresses with (and the client decompresses with). */
  serverMaxWindowBits: number
  /** Window the client compresses with (and the server decompresses with). */
  clientMaxWindowBits: number
}

/** One direction's zlib settings, from one side's point of view. */
export interface DeflateDirection {
  noContextTakeover: boolean
  windowBits: number
}

export function directionsFor(
  params: DeflateParams,
  side: 'client' | 'server',
): { compress: DeflateDirection; decompress: DeflateDirection } {
  const server = { noContextTakeover: params.serverNoContextTakeover, windowBits: params.serverMaxWindowBits }
  const client = { noContextTakeover: params.clientNoContextTakeover, windowBits: params.clientMaxWindowBits }
  return side === 'server'
    ? { compress: server, decompress: client }
    : { compress: client, decompress: server }
}

export const DEFAULT_DEFLATE_THRESHOLD = 1024
export const DEFAULT_DEFLATE_LEVEL = 1
export const DEFAULT_DEFLATE_MEM_LEVEL = 8

const PARAM_NAMES = new Set([
  'server_no_context_takeover',
  'client_no_context_takeover',
  'server_max_window_bits',
  'client_max_window_bits',
])

/** RFC 7692 7.1.2.1: "a decimal integer value without leading zeroes between 8 and 15". */
function parseWindowBits(value: string): number | undefined {
  if (!/^(?:8|9|1[0-5])$/.test(value)) return undefined
  return Number(value)
}

function checkWindowBitsOption(name: string, value: number | undefined): number {
  if (value === undefined) return 15
  if (!Number.isInteger(value) || value < 8 || value > 15)
    throw new RangeError(`${name} must be 8-15, got ${value}`)
  return value
}

/** Reads parameters, refusing unknown names, duplicates and bad values (RFC 7692 7). */
function readParams(offer: ExtensionOffer): Map<string, string | true> | undefined {
  const params = new Map<string, string | true>()
  for (const [name, value] of offer.params) {
    if (!PARAM_NAMES.has(name) || params.has(name)) return undefined
    if (name.endsWith('_no_context_takeover') && value !== true) return undefined
    if (name === 'server_max_window_bits' && (value === true || parseWindowBits(value) === undefined))
      return undefined
    if (name === 'client_max_window_bits' && value !== true && parseWindowBits(value) === undefined)
      return undefined
    params.set(name, value)
  }
  return params
}

export interface ServerNegotiation {
  params: DeflateParams
  /** The `Sec-WebSocket-Extensions` response element. */
  response: string
}

/**
 * Server side: accepts the first acceptable permessage-deflate offer (RFC 7692 5: "A server MUST
 * decline an extension negotiation offer" with an unknown parameter, an invalid value or a
 * duplicate; it then looks at the next offer). Returns undefined to decline them all.
 */
export function negotiateServer(
  offers: readonly ExtensionOffer[],
  options: PerMessageDeflateOptions,
): ServerNegotiation | undefined {
  const ownMaxBits = checkWindowBitsOption('serverMaxWindowBits', options.serverMaxWindowBits)
  const peerMaxBits = checkWindowBitsOption('clientMaxWindowBits', options.clientMaxWindowBits)
  for (const offer of offers) {
    if (offer.name !== PERMESSAGE_DEFLATE) continue
    const params = readParams(offer)
    if (params === undefined) continue

    // 7.1.1.1: accepting an offer with server_no_context_takeover means honouring it; the server
    // may also forgo context takeover of its own accord.
    const serverNoContextTakeover =
      params.has('server_no_context_takeover') || (options.serverNoContextTakeover ?? true)
    // 7.1.1.2: the server may ask the client to forgo context takeover.
    const clientNoContextTakeover =
      params.has('client_no_context_takeover') || (options.clientNoContextTakeover ?? true)

    // 7.1.2.1: the server uses at most the window the client asked for.
    const requested = params.get('server_max_window_bits')
    const serverBits = Math.min(ownMaxBits, requested === undefined ? 15 : Number(requested))

    // 7.1.2.2: without client_max_window_bits in the offer the server must not send it, and the
    // client may use a 32 KiB window. With it, the server may limit the client's window.
    const clientOffer = params.get('client_max_window_bits')
    let clientBits = 15
    let sendClientBits = false
    if (clientOffer !== undefined) {
      clientBits = Math.min(peerMaxBits, clientOffer === true ? 15 : Number(clientOffer))
      sendClientBits = clientBits < 15 || clientOffer !== true
    } else if (peerMaxBits < 15) {
      // We wanted a smaller client window and this offer cannot give it: try the next one.
      continue
    }

    const responseParams: [string, string | true][] = []
    if (serverNoContextTakeover) responseParams.push(['server_no_context_takeover', true])
    if (clientNoContextTakeover) responseParams.push(['client_no_context_takeover', true])
    if (requested !== undefined || serverBits < 15)
      responseParams.push(['server_max_window_bits', String(serverBits)])
    if (sendClientBits) responseParams.push(['client_max_window_bits', String(clientBits)])
    return {
      params: {
        serverNoContextTakeover,
        clientNoContextTakeover,
        serverMaxWindowBits: serverBits,
        clientMaxWindowBits: clientBits,
      },
      response: formatExtension({ name: PERMESSAGE_DEFLATE, params: responseParams }),
    }
  }
  return undefined
}

/**
 * Client side: the offer. By default `permessage-deflate; client_max_window_bits`, as browsers
 * send, which lets the server choose a smaller window for us.
 */
export function buildClientOffer(options: PerMessageDeflateOptions): string {
  const params: [string, string | true][] = []
  if (options.serverNoContextTakeover) params.push(['server_no_context_takeover', true])
  if (options.clientNoContextTakeover) params.push(['client_no_context_takeover', true])
  if (options.serverMaxWindowBits !== undefined) {
    params.push([
      'server_max_window_bits',
      String(checkWindowBitsOption('serverMaxWindowBits', options.serverMaxWindowBits)),
    ])
  }
  const clientBits = options.clientMaxWindowBits
  params.push([
    'client_max_window_bits',
    clientBits === undefined ? true : String(checkWindowBitsOption('clientMaxWindowBits', clientBits)),
  ])
  return formatExtension({ name: PERMESSAGE_DEFLATE, params })
}

/**
 * Client side: checks the server's response against the offer (RFC 7692 7.1). Returns the agreed
 * parameters, or a reason string when the response is unacceptable (the client then fails the
 * connection with 1010).
 */
export function acceptServerResponse(
  responses: readonly ExtensionOffer[],
  options: PerMessageDeflateOptions,
): DeflateParams | string {
  if (responses.length !== 1 || responses[0]!.name !== PERMESSAGE_DEFLATE) {
    return 'Server accepted extensions the client did not offer'
  }
  const params = readParams(responses[0]!)
  if (params === undefined) return 'Invalid permessage-deflate parameters in the response'
  // 7.1.1.1: an offer with server_no_context_takeover is accepted only by a response with it.
  if (options.serverNoContextTakeover && !params.has('server_no_context_takeover')) {
    return 'Server ignored server_no_context_takeover'
  }
  const serverBits = params.get('server_max_window_bits')
  // 7.1.2.1: with server_max_window_bits in the offer, the response must carry a value no larger.
  if (options.serverMaxWindowBits !== undefined) {
    if (serverBits === undefined || Number(serverBits) > options.serverMaxWindowBits) {
      return 'Server did not honour server_max_window_bits'
    }
  }
  const clientBits = params.get('client_max_window_bits')
  // 7.1.2.2: the response's client_max_window_bits must have a value, no larger than offered.
  if (clientBits === true) return 'client_max_window_bits in a response needs a value'
  if (
    clientBits !== undefined &&
    options.clientMaxWindowBits !== undefined &&
    Number(clientBits) > options.clientMaxWindowBits
  ) {
    return 'Server asked for a larger client window than offered'
  }
  return {
    serverNoContextTakeover: params.has('server_no_context_takeover'),
    clientNoContextTakeover:
      params.has('client_no_context_takeover') || (options.clientNoContextTakeover ?? false),
    serverMaxWindowBits: serverBits === undefined ? 15 : Number(serverBits),
    clientMaxWindowBits: clientBits === undefined ? (options.clientMaxWindowBits ?? 15) : Number(clientBits),
  }
}

/**
 * Checks options once, where they are given (createServer, new WebSocket), rather than failing
 * every handshake or every send later. Throws RangeError naming the bad option.
 */
export function checkDeflateOptions(options: PerMessageDeflateOptions): void {
  checkWindowBitsOption('serverMaxWindowBits', options.serverMaxWindowBits)
  checkWindowBitsOption('clientMaxWindowBits', options.clientMaxWindowBits)
  const ranges: [keyof PerMessageDeflateOptions, number, number][] = [
    ['level', -1, 9],
    ['memLevel', 1, 9],
    ['threshold', 0, Number.MAX_SAFE_INTEGER],
  ]
  for (const [name, min, max] of ranges) {
    const value = options[name]
    if (value === undefined) continue
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      throw new RangeError(
        `perMessageDeflate.${name} must be an integer from ${min} to ${max}, got ${String(value)}`,
      )
    }
  }
}
