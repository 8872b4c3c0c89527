/**
 * graphql-ws, a library nobody here wrote, on Rally at both ends: its server (`useServer` from
 * graphql-ws/use/ws) on a rallyjs/ws WebSocketServer attached to a node:http server, and its own
 * client (`createClient`) with Rally's WHATWG WebSocket as `webSocketImpl`. A query and a
 * subscription run end to end; graphql-ws's keep-alive pings are answered on the way.
 */
import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { GraphQLInt, GraphQLObjectType, GraphQLSchema, GraphQLString } from 'graphql'
import { type Client, createClient } from 'graphql-ws'
import { useServer } from 'graphql-ws/use/ws'
import type { WebSocketServer as WsPackageServer } from 'ws'
import { WebSocketServer } from '../../src/adapters/ws/index.js'
import { WebSocket } from '../../src/index.js'
import { within } from './helpers.js'

const schema = new GraphQLSchema({
  query: new GraphQLObjectType({
    name: 'Query',
    fields: {
      hello: {
        type: GraphQLString,
        args: { name: { type: GraphQLString } },
        resolve: (_root, args: { name?: string }) => `hello ${args.name ?? 'world'}`,
      },
    },
  }),
  subscription: new GraphQLObjectType({
    name: 'Subscription',
    fields: {
      count: {
        type: GraphQLInt,
        args: { to: { type: GraphQLInt } },
        subscribe: async function* (_root: unknown, args: { to?: number }) {
          for (let i = 1; i <= (args.to ?? 3); i++) {
            // Slow enough that graphql-ws's keep-alive ping (every 100 ms here) happens meanwhile.
            await new Promise((resolve) => setTimeout(resolve, 80))
            yield { count: i }
          }
        },
      },
    },
  }),
})

describe('graphql-ws on rallyjs/ws (server) and Rally WebSocket (client)', () => {
  let http: Server
  let wss: WebSocketServer
  let disposeServer: () => Promise<void> | void
  let client: Client
  let url: string
  const closes: number[] = []
  let pongs = 0
  let serverProtocol: string | undefined

  before(async () => {
    http = createServer()
    wss = new WebSocketServer({ server: http, path: '/graphql' })
    // graphql-ws types its parameter as the ws package's server; rallyjs/ws has the same public API.
    const disposable = useServer({ schema }, wss as unknown as WsPackageServer, 100)
    disposeServer = () => disposable.dispose()
    wss.on('connection', (ws: import('../../src/adapters/ws/index.js').WebSocket) => {
      serverProtocol = ws.protocol
      ws.on('pong', () => pongs++)
    })
    await within(
      new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve)),
      3000,
      'http server to listen',
    )
    url = `ws://127.0.0.1:${(http.address() as AddressInfo).port}/graphql`
    client = createClient({
      url,
      webSocketImpl: WebSocket,
      retryAttempts: 0,
      // One socket for every operation of this suite, open from the start; dispose() closes it.
      // (Not lazyCloseTimeout: graphql-ws's dispose() leaves that timer running.)
      lazy: false,
      onNonLazyError: (error) => void closes.push(-1, (error as { code?: number }).code ?? 0),
      on: { closed: (event) => void closes.push((event as { code: number }).code) },
    })
  })

  after(async () => {
    await client?.dispose()
    await within(Promise.resolve(disposeServer?.()), 3000, 'graphql-ws dispose')
    await within(wss.closeAll(), 3000, 'rallyjs/ws closeAll')
    http.closeAllConnections()
    await within(new Promise<void>((resolve) => http.close(() => resolve())), 3000, 'http close')
  })

  it('runs a query', async () => {
    const results: unknown[] = []
    const iterate = client.iterate({
      query: 'query ($n: String) { hello(name: $n) }',
      variables: { n: 'rally' },
    })
    await within(
      (async () => {
        for await (const result of iterate) results.push(result)
      })(),
      5000,
      'the query result',
    )
    assert.deepEqual(results, [{ data: { hello: 'hello rally' } }])
  })

  it('runs a subscription that yields three values, then completes', async () => {
    const values: unknown[] = []
    const iterate = client.iterate({ query: 'subscription { count(to: 3) }' })
    await within(
      (async () => {
        for await (const result of iterate) values.push(result)
      })(),
      5000,
      'the subscription to complete',
    )
    assert.deepEqual(values, [{ data: { count: 1 } }, { data: { count: 2 } }, { data: { count: 3 } }])
    // The socket carried both operations and survived graphql-ws's keep-alive pings.
    assert.deepEqual(closes, [])
    assert.equal(wss.clients?.size, 1)
    // useServer set handleProtocols after the server was built; it chose graphql-ws's protocol.
    assert.equal(serverProtocol, 'graphql-transport-ws')
    assert.ok(pongs >= 1, `the client answered graphql-ws's keep-alive pings (${pongs} pongs)`)
  })

  it('reports a GraphQL error as an error result, not a broken socket', async () => {
    const results: unknown[] = []
    await within(
      (async () => {
        try {
          for await (const result of client.iterate({ query: '{ nope }' })) results.push(result)
        } catch (error) {
          results.push({ thrown: error })
        }
      })(),
      5000,
      'the error result',
    )
    assert.equal(results.length, 1)
    const errors = (results[0] as { thrown: { message: string }[] }).thrown
    assert.ok(Array.isArray(errors), 'graphql-ws rejects with the GraphQL errors')
    assert.match(errors[0]!.message, /nope/)
    assert.equal(wss.clients?.size, 1)
  })
})
