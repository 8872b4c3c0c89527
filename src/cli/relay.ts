/**
 * `rally relay`: a pub/sub relay. The URL path is the topic: a message from one connection goes
 * to every other connection on the same path, through the server's topic broadcast (framed and
 * compressed once per message).
 */
import { createServer } from '../server/server.js'
import { announceWhenListening, parseServerCommand } from './args.js'

export const RELAY_HELP = `Usage: rally relay [--host 127.0.0.1] [--port 9002] [--deflate]

Pub/sub relay: a message from one connection reaches every other connection on the same URL path.
Prints "listening on ws://HOST:PORT" when ready; SIGINT or SIGTERM closes every connection with
1001 and exits 0.`

export async function runRelay(argv: string[]): Promise<void> {
  const flags = parseServerCommand(argv, RELAY_HELP, 9002, { deflate: { type: 'boolean' } })
  if (flags === undefined) return
  const { values, host, port } = flags
  const server = createServer<{ topic: string }>({
    host,
    port,
    perMessageDeflate: values.deflate === true,
    decodeText: false,
    upgrade(request) {
      const url = request.url ?? '/'
      const query = url.indexOf('?')
      return { topic: query === -1 ? url : url.slice(0, query) }
    },
    open(ws) {
      ws.subscribe(ws.data.topic)
    },
    message(ws, data, isBinary) {
      ws.publish(ws.data.topic, data, { binary: isBinary })
    },
    error() {
      // Peers that break the protocol get their close code; the relay carries on.
    },
  })
  await announceWhenListening(server, 'ws')
}
