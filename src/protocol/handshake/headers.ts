/**
 * Header value helpers for the opening handshake. Every function here runs in time linear in its
 * input: no regular expression with backtracking ever sees a peer-controlled string.
 */

/** Header fields by lower-case name, each with every value it was sent with, in order. */
export type HeaderFields = Readonly<Record<string, readonly string[] | undefined>>

/** RFC 7230 3.2.6 tchar. */
const TOKEN_CHAR = new Uint8Array(128)
for (const c of "!#$%&'*+-.^_`|~") TOKEN_CHAR[c.charCodeAt(0)] = 1
for (let c = 0x30; c <= 0x39; c++) TOKEN_CHAR[c] = 1
for (let c = 0x41; c <= 0x5a; c++) TOKEN_CHAR[c] = 1
for (let c = 0x61; c <= 0x7a; c++) TOKEN_CHAR[c] = 1

export function isToken(value: string): boolean {
  if (value.length === 0) return false
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i)
    if (c >= 128 || TOKEN_CHAR[c] === 0) return false
  }
  return true
}

/**
 * Splits comma-separated list values (RFC 7230 7, `#token`) from all the lines a field came in,
 * trimming optional whitespace and dropping empty elements. Returns undefined if an element is
 * not a token.
 */
export function parseTokenList(values: readonly string[] | undefined): string[] | undefined {
  const tokens: string[] = []
  if (values === undefined) return tokens
  for (const value of values) {
    for (const part of value.split(',')) {
      const token = trimOws(part)
      if (token === '') continue
      if (!isToken(token)) return undefined
      tokens.push(token)
    }
  }
  return tokens
}

/** Whether a `#token` list contains `token`, compared case-insensitively. */
export function listHasToken(values: readonly string[] | undefined, token: string): boolean {
  if (values === undefined) return false
  const wanted = token.toLowerCase()
  for (const value of values) {
    for (const part of value.split(',')) {
      if (trimOws(part).toLowerCase() === wanted) return true
    }
  }
  return false
}

/** Trims spaces and horizontal tabs (RFC 7230 OWS) from both ends. */
export function trimOws(value: string): string {
  let start = 0
  let end = value.length
  while (start < end && isOws(value.charCodeAt(start))) start++
  while (end > start && isOws(value.charCodeAt(end - 1))) end--
  return start === 0 && end === value.length ? value : value.slice(start, end)
}

function isOws(c: number): boolean {
  return c === 0x20 || c === 0x09
}

/** The single value of a field that must appear once; undefined if absent or repeated. */
export function singleValue(fields: HeaderFields, name: string): string | undefined {
  const values = fields[name]
  return values !== undefined && values.length === 1 ? values[0] : undefined
}
