/**
 * `Sec-WebSocket-Extensions` parsing (RFC 6455 9.1), in time linear in the header's length:
 *
 *   extension-list = 1#extension
 *   extension      = extension-token *( ";" extension-param )
 *   extension-param = token [ "=" (token | quoted-string) ]
 *
 * A quoted-string value must unescape to a token (RFC 6455 9.1), which is how
 * `client_max_window_bits="10"` is allowed.
 */
import { isToken } from '../handshake/headers.js'

export interface ExtensionOffer {
  name: string
  /** Parameters in order; `true` for a parameter without a value. Names are lower-cased. */
  params: [string, string | true][]
}

/**
 * Parses every line of the header into extensions, in order. Returns undefined when the syntax
 * is broken (the caller answers 400, or fails the connection on the client side).
 */
export function parseExtensions(values: readonly string[]): ExtensionOffer[] | undefined {
  const out: ExtensionOffer[] = []
  for (const value of values) {
    const parsed = parseLine(value)
    if (parsed === undefined) return undefined
    out.push(...parsed)
  }
  return out
}

function parseLine(input: string): ExtensionOffer[] | undefined {
  const out: ExtensionOffer[] = []
  let i = 0
  const n = input.length
  const skipSpace = (): void => {
    while (i < n && (input.charCodeAt(i) === 0x20 || input.charCodeAt(i) === 0x09)) i++
  }
  const readToken = (): string => {
    const start = i
    while (i < n) {
      const c = input.charCodeAt(i)
      if (c === 0x2c || c === 0x3b || c === 0x3d || c === 0x20 || c === 0x09 || c === 0x22) break
      i++
    }
    return input.slice(start, i)
  }
  while (true) {
    skipSpace()
    if (i >= n) break
    if (input.charCodeAt(i) === 0x2c) {
      // Empty list elements are allowed (RFC 7230 7).
      i++
      continue
    }
    const name = readToken()
    if (!isToken(name)) return undefined
    const offer: ExtensionOffer = { name: name.toLowerCase(), params: [] }
    skipSpace()
    while (i < n && input.charCodeAt(i) === 0x3b) {
      i++
      skipSpace()
      const param = readToken()
      if (!isToken(param)) return undefined
      skipSpace()
      let value: string | true = true
      if (i < n && input.charCodeAt(i) === 0x3d) {
        i++
        skipSpace()
        if (i < n && input.charCodeAt(i) === 0x22) {
          // quoted-string: backslash escapes one character.
          i++
          let text = ''
          let closed = false
          while (i < n) {
            const c = input.charCodeAt(i)
            if (c === 0x5c && i + 1 < n) {
              text += input[i + 1]
              i += 2
            } else if (c === 0x22) {
              i++
              closed = true
              break
            } else {
              text += input[i]
              i++
            }
          }
          if (!closed || !isToken(text)) return undefined
          value = text
        } else {
          value = readToken()
          if (!isToken(value)) return undefined
        }
        skipSpace()
      }
      offer.params.push([param.toLowerCase(), value])
    }
    out.push(offer)
    if (i < n) {
      if (input.charCodeAt(i) !== 0x2c) return undefined
      i++
    }
  }
  return out
}

/** Formats one extension for a header: `name; a; b=10`. */
export function formatExtension(offer: ExtensionOffer): string {
  let out = offer.name
  for (const [param, value] of offer.params) out += value === true ? `; ${param}` : `; ${param}=${value}`
  return out
}
