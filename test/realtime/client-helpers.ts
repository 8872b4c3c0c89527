/**
 * Helpers for the RallyClient tests: wait for a client or subscription event (with a timeout and
 * an optional predicate), and track clients and servers for clean-up.
 */
import { WebSocket } from '../../src/index.js'
import { type Emitter, RallyClient, type RallyClientOptions } from '../../src/realtime/client/index.js'

/** The next `event` whose value satisfies `predicate`; rejects after `ms`. */
export function nextEvent<Events extends object, Name extends keyof Events>(
  source: Emitter<Events>,
  event: Name,
  predicate: (value: Events[Name]) => boolean = () => true,
  ms = 5000,
): Promise<Events[Name]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off()
      reject(new Error(`timed out after ${ms} ms waiting for '${String(event)}'`))
    }, ms)
    const off = source.on(event, (value) => {
      if (!predicate(value)) return
      clearTimeout(timer)
      off()
      resolve(value)
    })
  })
}

const clients = new Set<RallyClient<unknown>>()

/** A client on Rally's Node WebSocket, with fast retries unless told otherwise; tracked for clean-up. */
export function newRallyClient<Schema = unknown>(
  url: string,
  options: RallyClientOptions = {},
): RallyClient<Schema> {
  const client = new RallyClient<Schema>(url, {
    WebSocket,
    reconnect: { minDelay: 10, maxDelay: 50 },
    ...options,
  })
  clients.add(client as RallyClient<unknown>)
  return client
}

export function closeAllClients(): void {
  for (const client of clients) client.close()
  clients.clear()
}

/** A promise's rejection, for assertions on its error (fails if it resolves). */
export async function rejectionOf(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise
  } catch (error) {
    return error as Error
  }
  throw new Error('expected a rejection, got a result')
}
