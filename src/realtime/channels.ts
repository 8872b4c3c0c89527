/**
 * Channel rules by name pattern, Standard Schema validation, and the error type that carries a
 * protocol error code out of the app's hooks.
 *
 * A pattern is a channel name in which `*` stands for any run of characters (empty included):
 * `'chat:*'` matches `chat:lobby` and `chat:room:42`. When several patterns match, an exact name
 * wins, then the pattern with the longest literal part (the most specific), then the first one
 * declared.
 */
import { ErrorCode, errorMessages } from './protocol.js'

/**
 * The Standard Schema interface (https://standardschema.dev), the part Rally uses: zod, valibot,
 * arktype and others implement it. Written out structurally so that the published types need
 * no package.
 */
export interface StandardSchema<Input = unknown, Output = Input> {
  readonly '~standard': {
    readonly version: 1
    readonly vendor: string
    readonly validate: (value: unknown) => StandardResult<Output> | Promise<StandardResult<Output>>
    readonly types?: { readonly input: Input; readonly output: Output } | undefined
  }
}

export type StandardResult<Output> =
  | { readonly value: Output; readonly issues?: undefined }
  | { readonly issues: readonly StandardIssue[] }

export interface StandardIssue {
  readonly message: string
  readonly path?: readonly (PropertyKey | { readonly key: PropertyKey })[] | undefined
}

/** The output type of a schema (what the server sees after validation). */
export type InferOutput<S> = S extends StandardSchema<unknown, infer O> ? O : unknown
/** The input type of a schema (what a client sends). */
export type InferInput<S> = S extends StandardSchema<infer I, unknown> ? I : unknown

/**
 * An error an app hook (RPC handler, rule) can throw to answer with a specific code; anything
 * else thrown becomes Internal (100) with no details on the wire.
 */
export class RealtimeError extends Error {
  readonly code: ErrorCode
  readonly field: string | undefined
  constructor(code: ErrorCode, message?: string, field?: string) {
    super(message ?? errorMessages[code])
    this.name = 'RealtimeError'
    this.code = code
    this.field = field
  }
}

/** Validates `value`; resolves with the schema's output or throws InvalidData naming the field. */
export async function validate<S extends StandardSchema>(schema: S, value: unknown): Promise<InferOutput<S>> {
  let result = schema['~standard'].validate(value)
  if (result instanceof Promise) result = await result
  if (result.issues === undefined) return result.value as InferOutput<S>
  const issue = result.issues[0]
  const field = issue === undefined ? '' : fieldPath(issue)
  const message = issue === undefined ? 'invalid data' : issue.message
  throw new RealtimeError(
    ErrorCode.InvalidData,
    field === '' ? `invalid data: ${message}` : `invalid data at ${field}: ${message}`,
    field,
  )
}

/** An issue's path as dotted text: `items.2.name` ('' for the value itself). */
export function fieldPath(issue: StandardIssue): string {
  if (issue.path === undefined) return ''
  return issue.path
    .map((segment) => {
      const key = typeof segment === 'object' && segment !== null ? segment.key : segment
      return typeof key === 'symbol' ? (key.description ?? '') : String(key)
    })
    .join('.')
}

/** Whether a value is a Standard Schema (has `~standard` with a `validate` function). */
export function isStandardSchema(value: unknown): value is StandardSchema {
  if (typeof value !== 'object' && typeof value !== 'function') return false
  if (value === null) return false
  const standard = (value as { '~standard'?: { validate?: unknown } })['~standard']
  return typeof standard === 'object' && standard !== null && typeof standard.validate === 'function'
}

/** A compiled set of rules: exact names in a map, patterns in order of specificity. */
export class ChannelRules<Rule> {
  private readonly exact = new Map<string, Rule>()
  private readonly patterns: { regexp: RegExp; literal: number; index: number; rule: Rule }[] = []

  constructor(rules: Readonly<Record<string, Rule>>) {
    let index = 0
    for (const [pattern, rule] of Object.entries(rules)) {
      if (pattern.length === 0) throw new TypeError('createRealtime: a channel pattern is empty')
      if (!pattern.includes('*')) {
        this.exact.set(pattern, rule)
        continue
      }
      const parts = pattern.split('*').map(escapeRegExp)
      this.patterns.push({
        regexp: new RegExp(`^${parts.join('[\\s\\S]*')}$`),
        literal: pattern.length - (parts.length - 1),
        index: index++,
        rule,
      })
    }
    this.patterns.sort((a, b) => b.literal - a.literal || a.index - b.index)
  }

  /** The rule for a channel name, or undefined when none matches (UnknownChannel). */
  match(channel: string): Rule | undefined {
    const exact = this.exact.get(channel)
    if (exact !== undefined) return exact
    // Patterns are few (an app's configuration); each regexp is anchored with no nested
    // quantifiers, so a match costs at worst (name length)^stars steps, and names are bounded
    // by MAX_CHANNEL_LENGTH before they get here.
    for (const pattern of this.patterns) if (pattern.regexp.test(channel)) return pattern.rule
    return undefined
  }
}

function escapeRegExp(text: string): string {
  return text.replace(/[\\^$.|?*+()[\]{}]/g, '\\$&')
}
