/**
 * Types flowing from the server's definitions to the client. A client is parameterised by a
 * schema: which data each channel pattern carries, and each RPC method's parameters and result.
 *
 * ```ts
 * type Chat = {
 *   channels: { 'chat:*': { text: string } }
 *   rpc: { whoami: { params: undefined; result: { user: string } } }
 * }
 * const client = new RallyClient<Chat>(url)
 * client.channel('chat:lobby').on('publication', (pub) => pub.data.text)   // string
 * const me = await client.rpc('whoami', undefined)                          // { user: string }
 * ```
 *
 * A server object can carry its schema for the client as a phantom property `'~schema'` (types
 * only, never set at run time), so that `RallyClient<typeof realtime>` works as well.
 */

export interface RpcSignature {
  params: unknown
  result: unknown
}

export interface RealtimeSchema {
  channels?: Record<string, unknown>
  rpc?: Record<string, RpcSignature>
}

/** The schema of an untyped client: any channel, any method, unknown data. */
export interface AnySchema {
  channels: Record<string, unknown>
  rpc: Record<string, RpcSignature>
}

/** A schema given directly, or the phantom `'~schema'` of a server object. */
export type SchemaOf<T> = T extends { readonly '~schema'?: infer S }
  ? S extends RealtimeSchema
    ? S
    : AnySchema
  : T extends RealtimeSchema
    ? T
    : AnySchema

/** 'chat:*' → `chat:${string}`: a channel pattern as a template literal type. */
export type PatternName<Pattern extends string> = Pattern extends `${infer Head}*${infer Tail}`
  ? `${Head}${string}${PatternName<Tail>}`
  : Pattern

type Channels<S> = S extends { channels: infer C } ? (C extends Record<string, unknown> ? C : {}) : {}
type Methods<S> = S extends { rpc: infer R } ? (R extends Record<string, RpcSignature> ? R : {}) : {}

/** Every channel name the schema allows. */
export type ChannelName<S> = string extends keyof Channels<S>
  ? string
  : { [P in keyof Channels<S> & string]: PatternName<P> }[keyof Channels<S> & string]

/** The data of a channel, found through the pattern its name matches. */
export type ChannelData<S, Name extends string> = string extends keyof Channels<S>
  ? Channels<S>[string]
  : {
      [P in keyof Channels<S> & string]: Name extends PatternName<P> ? Channels<S>[P] : never
    }[keyof Channels<S> & string]

export type RpcMethod<S> = string extends keyof Methods<S> ? string : keyof Methods<S> & string

export type RpcParams<S, M extends string> = M extends keyof Methods<S>
  ? Methods<S>[M] extends { params: infer P }
    ? P
    : unknown
  : unknown

export type RpcResultOf<S, M extends string> = M extends keyof Methods<S>
  ? Methods<S>[M] extends { result: infer R }
    ? R
    : unknown
  : unknown
