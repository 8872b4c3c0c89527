/**
 * Rally under test: `createServer` with one handler object. Echo with `ws.send`, broadcast with
 * `server.publish(topic, data)` (framed once, the same bytes written to every subscriber).
 *
 * Rally's defaults throughout (the heartbeat on: a ping every 30 s, judged by two timers shared by
 * every socket), except one setting, to match `ws`: text delivered as bytes (`decodeText: false`;
 * ws hands text over as a Buffer too), so an echo decodes and re-encodes nothing on either side.
 */
import { createServer } from '../../src/index.js'
import { announce, parseServerArgs, TOPIC } from './common.js'

const args = parseServerArgs()

const server = createServer({
  host: '127.0.0.1',
  port: 0,
  decodeText: false,
  // 'fair' and 'default' are the same here: Rally's defaults are no context takeover either way,
  // level 1, threshold 1024. The runner varies what the client offers. 'takeover': context
  // takeover both ways (deflate-1k-takeover, deflate-memory).
  perMessageDeflate:
    args.deflate === 'takeover'
      ? { serverNoContextTakeover: false, clientNoContextTakeover: false }
      : args.deflate !== 'off',
  open(ws) {
    if (ws.url === '/sub') ws.subscribe(TOPIC)
  },
  message(ws, data, isBinary) {
    if (ws.url === '/pub') server.publish(TOPIC, data, { binary: isBinary })
    else ws.send(data, { binary: isBinary })
  },
  error() {
    // Resets from the load generator are expected.
  },
})

await server.ready()
announce(server.port!, () => {
  server.close().finally(() => process.exit(0))
  setTimeout(() => process.exit(0), 2000).unref()
})
