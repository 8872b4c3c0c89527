/**
 * permessage-deflate negotiation as pure functions (RFC 7692 section 7): header parsing, the
 * server's choice among offers, the client's offer, and the client's check of the response.
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { type ExtensionOffer, parseExtensions } from '../../src/protocol/extensions/extension-header.js'
import {
  acceptServerResponse,
  buildClientOffer,
  type DeflateParams,
  negotiateServer,
  type PerMessageDeflateOptions,
} from '../../src/protocol/extensions/permessage-deflate.js'

const PMD = 'permessage-deflate'

function offers(...lines: string[]): ExtensionOffer[] {
  const parsed = parseExtensions(lines)
  assert.ok(parsed, `header should parse: ${JSON.stringify(lines)}`)
  return parsed
}

describe('parseExtensions', () => {
  const valid: [string, string[], ExtensionOffer[]][] = [
    ['bare name', [PMD], [{ name: PMD, params: [] }]],
    [
      'quoted value unescapes to a token',
      [`${PMD}; client_max_window_bits="10"`],
      [{ name: PMD, params: [['client_max_window_bits', '10']] }],
    ],
    [
      'quoted value with a backslash escape',
      [`${PMD}; server_max_window_bits="1\\2"`],
      [{ name: PMD, params: [['server_max_window_bits', '12']] }],
    ],
    [
      'value-less and valued params, spaces and tabs around separators',
      [`${PMD} ;\tclient_max_window_bits ; server_max_window_bits = 10 ;server_no_context_takeover`],
      [
        {
          name: PMD,
          params: [
            ['client_max_window_bits', true],
            ['server_max_window_bits', '10'],
            ['server_no_context_takeover', true],
          ],
        },
      ],
    ],
    [
      'several offers in one line',
      [`${PMD}; server_max_window_bits=10, ${PMD}, x-webkit-deflate-frame`],
      [
        { name: PMD, params: [['server_max_window_bits', '10']] },
        { name: PMD, params: [] },
        { name: 'x-webkit-deflate-frame', params: [] },
      ],
    ],
    [
      'offers across header lines keep their order',
      [`${PMD}; client_no_context_takeover`, 'foo; a=1, bar', PMD],
      [
        { name: PMD, params: [['client_no_context_takeover', true]] },
        { name: 'foo', params: [['a', '1']] },
        { name: 'bar', params: [] },
        { name: PMD, params: [] },
      ],
    ],
    [
      'names and params are lower-cased',
      ['PerMessage-Deflate; Client_Max_Window_Bits'],
      [{ name: PMD, params: [['client_max_window_bits', true]] }],
    ],
    ['empty list elements are skipped', [`, ${PMD} ,, `], [{ name: PMD, params: [] }]],
    ['empty header value', [''], []],
  ]
  for (const [name, lines, expected] of valid) {
    test(`parses: ${name}`, () => {
      assert.deepEqual(parseExtensions(lines), expected)
    })
  }

  const malformed: [string, string[]][] = [
    ['a parameter without a name', [`${PMD};`]],
    ['"=" without a parameter name', [`${PMD}; =10`]],
    ['two tokens without a separator', [`${PMD} foo`]],
    ['an unterminated quoted string', [`${PMD}; client_max_window_bits="10`]],
    ['a quoted string that is not a token', [`${PMD}; client_max_window_bits="1 0"`]],
    ['an empty quoted string', [`${PMD}; client_max_window_bits=""`]],
    ['"=" without a value', [`${PMD}; client_max_window_bits=`]],
    ['a non-token character in a name', [`permessage/deflate`]],
    ['a non-token character in a value', [`${PMD}; server_max_window_bits=1@`]],
    ['a semicolon with no extension', [`${PMD}, ; foo`]],
    ['one bad line spoils the whole header', [PMD, `${PMD};;`]],
  ]
  for (const [name, lines] of malformed) {
    test(`malformed → undefined: ${name}`, () => {
      assert.equal(parseExtensions(lines), undefined)
    })
  }
})

describe('negotiateServer', () => {
  const defaults = {
    serverNoContextTakeover: true,
    clientNoContextTakeover: true,
    serverMaxWindowBits: 15,
    clientMaxWindowBits: 15,
  }

  test('defaults: server and client no context takeover, 15-bit windows', () => {
    const result = negotiateServer(offers(PMD), {})
    assert.deepEqual(result, {
      params: defaults,
      response: `${PMD}; server_no_context_takeover; client_no_context_takeover`,
    })
  })

  test('the browsers offer (client_max_window_bits without value) gets no client_max_window_bits back', () => {
    const result = negotiateServer(offers(`${PMD}; client_max_window_bits`), {})
    assert.equal(result?.response, `${PMD}; server_no_context_takeover; client_no_context_takeover`)
    assert.deepEqual(result?.params, defaults)
  })

  test('client_max_window_bits absent in the offer → never in the response', () => {
    for (const options of [{}, { serverMaxWindowBits: 10 }, { serverNoContextTakeover: false }]) {
      const result = negotiateServer(offers(PMD), options)
      assert.ok(result, 'result')
      assert.doesNotMatch(result.response, /client_max_window_bits/)
      assert.equal(result.params.clientMaxWindowBits, 15)
    }
  })

  test('context takeover when both options allow it and the offer does not forbid it', () => {
    const result = negotiateServer(offers(PMD), {
      serverNoContextTakeover: false,
      clientNoContextTakeover: false,
    })
    assert.equal(result?.response, PMD)
    assert.deepEqual(result?.params, {
      ...defaults,
      serverNoContextTakeover: false,
      clientNoContextTakeover: false,
    })
  })

  test('offered *_no_context_takeover is honoured even when the server would keep context', () => {
    const result = negotiateServer(offers(`${PMD}; server_no_context_takeover; client_no_context_takeover`), {
      serverNoContextTakeover: false,
      clientNoContextTakeover: false,
    })
    assert.equal(result?.response, `${PMD}; server_no_context_takeover; client_no_context_takeover`)
    assert.equal(result?.params.serverNoContextTakeover, true)
    assert.equal(result?.params.clientNoContextTakeover, true)
  })

  for (let bits = 8; bits <= 15; bits++) {
    test(`requested server_max_window_bits=${bits} is honoured and echoed`, () => {
      const result = negotiateServer(offers(`${PMD}; server_max_window_bits=${bits}`), {})
      assert.equal(result?.params.serverMaxWindowBits, bits)
      assert.match(result?.response ?? '', new RegExp(`; server_max_window_bits=${bits}(;|$)`))
    })
  }

  test('requested server_max_window_bits larger than the serverMaxWindowBits option → the option', () => {
    const result = negotiateServer(offers(`${PMD}; server_max_window_bits=14`), { serverMaxWindowBits: 10 })
    assert.equal(result?.params.serverMaxWindowBits, 10)
    assert.match(result?.response ?? '', /; server_max_window_bits=10(;|$)/)
  })

  test('serverMaxWindowBits option without a request → announced in the response', () => {
    const result = negotiateServer(offers(PMD), { serverMaxWindowBits: 9 })
    assert.equal(result?.params.serverMaxWindowBits, 9)
    assert.match(result?.response ?? '', /; server_max_window_bits=9(;|$)/)
  })

  test('quoted client_max_window_bits="10" → the client window is 10 and said so', () => {
    const result = negotiateServer(offers(`${PMD}; client_max_window_bits="10"`), {})
    assert.equal(result?.params.clientMaxWindowBits, 10)
    assert.match(result?.response ?? '', /; client_max_window_bits=10(;|$)/)
  })

  test('clientMaxWindowBits option limits a client that offered client_max_window_bits', () => {
    const result = negotiateServer(offers(`${PMD}; client_max_window_bits`), { clientMaxWindowBits: 11 })
    assert.equal(result?.params.clientMaxWindowBits, 11)
    assert.match(result?.response ?? '', /; client_max_window_bits=11(;|$)/)
    const smaller = negotiateServer(offers(`${PMD}; client_max_window_bits=9`), { clientMaxWindowBits: 11 })
    assert.equal(smaller?.params.clientMaxWindowBits, 9)
  })

  test('clientMaxWindowBits option < 15 and an offer without client_max_window_bits → declined', () => {
    assert.equal(negotiateServer(offers(PMD), { clientMaxWindowBits: 12 }), undefined)
    const next = negotiateServer(offers(`${PMD}, ${PMD}; client_max_window_bits`), {
      clientMaxWindowBits: 12,
    })
    assert.equal(next?.params.clientMaxWindowBits, 12)
  })

  test('first acceptable offer wins', () => {
    const result = negotiateServer(
      offers(`${PMD}; server_max_window_bits=12`, `${PMD}; server_max_window_bits=10`),
      {},
    )
    assert.equal(result?.params.serverMaxWindowBits, 12)
  })

  test('other extensions are skipped', () => {
    const result = negotiateServer(
      offers(`x-webkit-deflate-frame; no_context_takeover, ${PMD}; server_max_window_bits=11`),
      {},
    )
    assert.equal(result?.params.serverMaxWindowBits, 11)
    assert.equal(negotiateServer(offers('x-webkit-deflate-frame', 'foo'), {}), undefined)
  })

  const bad: [string, string][] = [
    ['unknown parameter', `${PMD}; foo`],
    ['unknown parameter with value', `${PMD}; foo=1`],
    ['duplicate parameter', `${PMD}; server_no_context_takeover; server_no_context_takeover`],
    ['duplicate window bits', `${PMD}; client_max_window_bits; client_max_window_bits=10`],
    ['server_max_window_bits=7', `${PMD}; server_max_window_bits=7`],
    ['server_max_window_bits=16', `${PMD}; server_max_window_bits=16`],
    ['server_max_window_bits=010 (leading zero)', `${PMD}; server_max_window_bits=010`],
    ['server_max_window_bits=08 (leading zero)', `${PMD}; server_max_window_bits=08`],
    ['server_max_window_bits=abc', `${PMD}; server_max_window_bits=abc`],
    ['server_max_window_bits without a value', `${PMD}; server_max_window_bits`],
    ['client_max_window_bits=7', `${PMD}; client_max_window_bits=7`],
    ['client_max_window_bits=16', `${PMD}; client_max_window_bits=16`],
    ['client_max_window_bits=010', `${PMD}; client_max_window_bits=010`],
    ['client_max_window_bits="016" (quoted, leading zero)', `${PMD}; client_max_window_bits="016"`],
    ['a value on server_no_context_takeover', `${PMD}; server_no_context_takeover=1`],
    ['a value on client_no_context_takeover', `${PMD}; client_no_context_takeover=true`],
  ]
  for (const [name, offer] of bad) {
    test(`declined, next offer considered: ${name}`, () => {
      assert.equal(negotiateServer(offers(offer), {}), undefined, 'the bad offer alone is declined')
      const result = negotiateServer(offers(`${offer}, ${PMD}; server_max_window_bits=9`), {})
      assert.ok(result, 'the next offer is accepted')
      assert.equal(result.params.serverMaxWindowBits, 9)
      assert.equal(
        result.response,
        `${PMD}; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9`,
      )
    })
  }

  test('bad options throw RangeError', () => {
    for (const options of [
      { serverMaxWindowBits: 7 },
      { serverMaxWindowBits: 16 },
      { clientMaxWindowBits: 8.5 },
    ] as PerMessageDeflateOptions[]) {
      assert.throws(() => negotiateServer(offers(PMD), options), RangeError)
    }
  })
})

describe('buildClientOffer', () => {
  const table: [PerMessageDeflateOptions, string][] = [
    [{}, `${PMD}; client_max_window_bits`],
    [{ serverNoContextTakeover: true }, `${PMD}; server_no_context_takeover; client_max_window_bits`],
    [{ clientNoContextTakeover: true }, `${PMD}; client_no_context_takeover; client_max_window_bits`],
    [{ serverMaxWindowBits: 10 }, `${PMD}; server_max_window_bits=10; client_max_window_bits`],
    [{ clientMaxWindowBits: 9 }, `${PMD}; client_max_window_bits=9`],
    [
      {
        serverNoContextTakeover: true,
        clientNoContextTakeover: true,
        serverMaxWindowBits: 8,
        clientMaxWindowBits: 8,
      },
      `${PMD}; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=8; client_max_window_bits=8`,
    ],
  ]
  for (const [options, expected] of table) {
    test(`offer for ${JSON.stringify(options)}`, () => {
      const offer = buildClientOffer(options)
      assert.equal(offer, expected)
      // Whatever we offer, our own server accepts it.
      assert.ok(negotiateServer(offers(offer), {}), 'negotiateServer(offers(offer), {})')
    })
  }

  test('bad window bits throw RangeError', () => {
    assert.throws(() => buildClientOffer({ serverMaxWindowBits: 16 }), RangeError)
    assert.throws(() => buildClientOffer({ clientMaxWindowBits: 7 }), RangeError)
  })
})

describe('acceptServerResponse', () => {
  const accept = (response: string, options: PerMessageDeflateOptions = {}): DeflateParams | string =>
    acceptServerResponse(offers(response), options)

  const validTable: [string, PerMessageDeflateOptions, DeflateParams][] = [
    [
      PMD,
      {},
      {
        serverNoContextTakeover: false,
        clientNoContextTakeover: false,
        serverMaxWindowBits: 15,
        clientMaxWindowBits: 15,
      },
    ],
    [
      `${PMD}; server_no_context_takeover; client_no_context_takeover`,
      {},
      {
        serverNoContextTakeover: true,
        clientNoContextTakeover: true,
        serverMaxWindowBits: 15,
        clientMaxWindowBits: 15,
      },
    ],
    [
      `${PMD}; server_max_window_bits=10; client_max_window_bits=9`,
      {},
      {
        serverNoContextTakeover: false,
        clientNoContextTakeover: false,
        serverMaxWindowBits: 10,
        clientMaxWindowBits: 9,
      },
    ],
    [
      `${PMD}; server_max_window_bits="8"`,
      { serverMaxWindowBits: 12 },
      {
        serverNoContextTakeover: false,
        clientNoContextTakeover: false,
        serverMaxWindowBits: 8,
        clientMaxWindowBits: 15,
      },
    ],
    [
      `${PMD}; server_max_window_bits=12`,
      { serverMaxWindowBits: 12 },
      {
        serverNoContextTakeover: false,
        clientNoContextTakeover: false,
        serverMaxWindowBits: 12,
        clientMaxWindowBits: 15,
      },
    ],
    [
      `${PMD}; server_no_context_takeover`,
      { serverNoContextTakeover: true },
      {
        serverNoContextTakeover: true,
        clientNoContextTakeover: false,
        serverMaxWindowBits: 15,
        clientMaxWindowBits: 15,
      },
    ],
    [
      PMD,
      { clientNoContextTakeover: true, clientMaxWindowBits: 11 },
      {
        serverNoContextTakeover: false,
        clientNoContextTakeover: true,
        serverMaxWindowBits: 15,
        clientMaxWindowBits: 11,
      },
    ],
    [
      `${PMD}; client_max_window_bits=10`,
      { clientMaxWindowBits: 11 },
      {
        serverNoContextTakeover: false,
        clientNoContextTakeover: false,
        serverMaxWindowBits: 15,
        clientMaxWindowBits: 10,
      },
    ],
  ]
  for (const [response, options, expected] of validTable) {
    test(`valid: "${response}" for ${JSON.stringify(options)}`, () => {
      assert.deepEqual(accept(response, options), expected)
    })
  }

  test('what our server answers, our client accepts, with the same params', () => {
    for (const options of [
      {},
      { serverMaxWindowBits: 9, clientMaxWindowBits: 10 },
      { serverNoContextTakeover: true, clientNoContextTakeover: true },
    ] as PerMessageDeflateOptions[]) {
      for (const serverOptions of [{}, { serverNoContextTakeover: false, clientNoContextTakeover: false }]) {
        const negotiated = negotiateServer(offers(buildClientOffer(options)), serverOptions)
        assert.ok(negotiated, 'negotiated')
        assert.deepEqual(accept(negotiated.response, options), negotiated.params)
      }
    }
  })

  const invalid: [string, string, PerMessageDeflateOptions][] = [
    ['an extension not offered', 'x-unknown', {}],
    ['permessage-deflate plus one not offered', `${PMD}, x-unknown`, {}],
    ['permessage-deflate twice', `${PMD}, ${PMD}`, {}],
    ['an unknown parameter', `${PMD}; foo=1`, {}],
    ['a duplicate parameter', `${PMD}; client_no_context_takeover; client_no_context_takeover`, {}],
    ['client_max_window_bits without a value', `${PMD}; client_max_window_bits`, {}],
    ['server_max_window_bits without a value', `${PMD}; server_max_window_bits`, {}],
    ['server_max_window_bits=16', `${PMD}; server_max_window_bits=16`, {}],
    ['server_max_window_bits=010', `${PMD}; server_max_window_bits=010`, {}],
    ['a value on server_no_context_takeover', `${PMD}; server_no_context_takeover=1`, {}],
    [
      'server_max_window_bits larger than requested',
      `${PMD}; server_max_window_bits=11`,
      { serverMaxWindowBits: 10 },
    ],
    ['server_max_window_bits missing when requested', PMD, { serverMaxWindowBits: 10 }],
    ['server_no_context_takeover missing when requested', PMD, { serverNoContextTakeover: true }],
    [
      'client_max_window_bits larger than offered',
      `${PMD}; client_max_window_bits=12`,
      { clientMaxWindowBits: 11 },
    ],
  ]
  for (const [name, response, options] of invalid) {
    test(`invalid → reason: ${name}`, () => {
      const result = accept(response, options)
      assert.equal(typeof result, 'string', `expected a reason, got ${JSON.stringify(result)}`)
      assert.ok((result as string).length > 0, '(result as string).length > 0')
    })
  }

  test('no response element at all → reason (called only when the header is present)', () => {
    assert.equal(typeof acceptServerResponse([], {}), 'string')
  })
})
