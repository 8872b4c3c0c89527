/**
 * Fuzz target: `Sec-WebSocket-Extensions` values from a peer (RFC 6455 9.1) and permessage-deflate
 * negotiation on both sides (RFC 7692 7).
 *
 * Input: two option bytes, then header text (latin1; each LF starts another header line).
 *   byte 0  the server's options: bit 0 keeps its own context, bit 1 lets the client keep its
 *           context, bits 2-4 serverMaxWindowBits (0: default, n: 7 + n), bits 5-7 clientMaxWindowBits
 *   byte 1  the client's options, the same layout
 *
 * Invariants:
 * - nothing throws: a broken header is `undefined` (400 on the server, 1010 on the client), an
 *   unacceptable response is a reason string;
 * - what parses is lower-case tokens, and formats back to a header that parses the same;
 * - an accepted offer's response is what RFC 7692 allows (no client_max_window_bits the offer did
 *   not carry, a server window no larger than asked) and a client reads the same parameters from it;
 * - our own client's offer, for any options, is accepted by our server, and its answer by the client.
 */
import assert from 'node:assert/strict'
import { Buffer } from 'node:buffer'
import {
  type ExtensionOffer,
  formatExtension,
  parseExtensions,
} from '../../../src/protocol/extensions/extension-header.js'
import {
  acceptServerResponse,
  buildClientOffer,
  type DeflateParams,
  negotiateServer,
  PERMESSAGE_DEFLATE,
  type PerMessageDeflateOptions,
} from '../../../src/protocol/extensions/permessage-deflate.js'
import { isToken } from '../../../src/protocol/handshake/headers.js'
import type { FuzzTarget } from '../engine.js'

function readOptions(byte: number): PerMessageDeflateOptions {
  const bits = (value: number): number | undefined => (value === 0 ? undefined : 7 + value)
  return {
    serverNoContextTakeover: (byte & 1) === 0,
    clientNoContextTakeover: (byte & 2) === 0,
    serverMaxWindowBits: bits((byte >> 2) & 7),
    clientMaxWindowBits: bits((byte >> 5) & 7),
  }
}

function checkParsed(offers: readonly ExtensionOffer[]): void {
  for (const offer of offers) {
    assert.ok(isToken(offer.name) && offer.name === offer.name.toLowerCase(), `name ${offer.name}`)
    for (const [name, value] of offer.params) {
      assert.ok(isToken(name) && name === name.toLowerCase(), `parameter ${name}`)
      assert.ok(value === true || isToken(value), `value ${String(value)}`)
    }
  }
  const formatted = offers.map(formatExtension)
  assert.deepEqual(parseExtensions(formatted), offers, 'formatted extensions parse differently')
  if (formatted.length > 0) {
    assert.deepEqual(parseExtensions([formatted.join(', ')]), offers, 'a joined list parses differently')
  }
}

function checkParams(params: DeflateParams): void {
  for (const bits of [params.serverMaxWindowBits, params.clientMaxWindowBits]) {
    assert.ok(Number.isInteger(bits) && bits >= 8 && bits <= 15, `window bits ${bits}`)
  }
  assert.equal(typeof params.serverNoContextTakeover, 'boolean')
  assert.equal(typeof params.clientNoContextTakeover, 'boolean')
}

/** The server's answer to the peer's offers must be one the RFC allows and a client reads alike. */
function checkServer(offers: readonly ExtensionOffer[], options: PerMessageDeflateOptions): void {
  const negotiation = negotiateServer(offers, options)
  if (negotiation === undefined) return
  checkParams(negotiation.params)
  const response = parseExtensions([negotiation.response])
  assert.ok(response !== undefined && response.length === 1, 'the response does not parse')
  assert.equal(response[0]!.name, PERMESSAGE_DEFLATE)
  // Which offer was taken: the first permessage-deflate offer the server could accept.
  const answered = new Map(response[0]!.params)
  const taken = offers.find((offer) => offer.name === PERMESSAGE_DEFLATE && negotiateServer([offer], options))
  assert.ok(taken !== undefined)
  const offered = new Map(taken.params)
  // RFC 7692 7.1.2.2: "the server MUST NOT include [client_max_window_bits] ... if the offer
  // does not have" it.
  if (answered.has('client_max_window_bits')) assert.ok(offered.has('client_max_window_bits'))
  // 7.1.2.1: the server's window is at most the one the client asked for.
  const asked = offered.get('server_max_window_bits')
  if (typeof asked === 'string') assert.ok(Number(answered.get('server_max_window_bits')) <= Number(asked))
  assert.deepEqual(acceptServerResponse(response, {}), negotiation.params, 'a client reads other parameters')
}

/** Our client with `client` options against our server with `server` options always agrees. */
function checkRoundTrip(client: PerMessageDeflateOptions, server: PerMessageDeflateOptions): void {
  const offers = parseExtensions([buildClientOffer(client)])
  assert.ok(offers !== undefined, 'our own offer does not parse')
  const negotiation = negotiateServer(offers, server)
  // Our offer always carries client_max_window_bits, so no server option makes it unacceptable.
  assert.ok(negotiation !== undefined, 'our server declined our own offer')
  const accepted = acceptServerResponse(parseExtensions([negotiation.response])!, client)
  assert.ok(typeof accepted !== 'string', `our client refused our server's answer: ${accepted}`)
  assert.deepEqual(accepted, negotiation.params, 'client and server disagree on the parameters')
}

function run(data: Uint8Array): void {
  if (data.length < 2) return
  const server = readOptions(data[0]!)
  const client = readOptions(data[1]!)
  const lines = Buffer.from(data.subarray(2)).toString('latin1').split('\n')
  const offers = parseExtensions(lines)
  if (offers !== undefined) {
    checkParsed(offers)
    checkServer(offers, server)
    // The same text as a server's response, read by a client.
    const answer = acceptServerResponse(offers, client)
    if (typeof answer !== 'string') checkParams(answer)
  }
  checkRoundTrip(client, server)
}

const text = (value: string): Uint8Array => new TextEncoder().encode(value)

export const target: FuzzTarget = {
  name: 'extensions',
  maxLength: 300,
  coverage: ['/src/protocol/'],
  dictionary: [
    text('permessage-deflate'),
    text('server_no_context_takeover'),
    text('client_no_context_takeover'),
    text('server_max_window_bits'),
    text('client_max_window_bits'),
    text('=15'),
    text('="10"'),
    text('=8'),
    text('; '),
    text(', '),
    text('"'),
    text('\\'),
    text('\n'),
    text('x-webkit-deflate-frame'),
  ],
  run,
}
