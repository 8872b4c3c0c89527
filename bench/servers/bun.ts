/**
 * Bun's built-in WebSocket server (uWebSockets, native code) as a reference: run by `bun`, not
 * Node. Same routes and control as every server (common.ts): `/pub` publishes to every `/sub`
 * through Bun's own topics (`server.publish`, framed once), anything else echoes.
 * permessage-deflate: `perMessageDeflate: true` for both 'fair' and 'default' (Bun's defaults), and
 * every echo sent with `ws.send(data, true)`: Bun negotiates the extension with `true` alone but
 * sends uncompressed unless each send asks to compress, which would not be the scenario measured.
 * `true` means Bun's shared compressor and decompressor: no context takeover either way. With
 * `--deflate takeover`, dedicated ones per connection: context takeover both ways.
 */
import { announce, parseServerArgs, TOPIC } from './common.js'

/** The part of Bun's API used here (bun-types is not installed; this runs only under bun). */
interface BunSocket {
  data: { path: string }
  subscribe(topic: string): void
  send(data: string | Uint8Array, compress?: boolean): number
}
declare const Bun: {
  serve(options: {
    hostname: string
    port: number
    fetch(
      request: Request,
      server: { upgrade(request: Request, options: { data: unknown }): boolean },
    ): Response | undefined
    websocket: {
      perMessageDeflate: boolean | { compress: 'dedicated'; decompress: 'dedicated' }
      open(ws: BunSocket): void
      message(ws: BunSocket, data: string | Uint8Array): void
    }
  }): { port: number; publish(topic: string, data: string | Uint8Array): number; stop(force: boolean): void }
  gc(force: boolean): void
}

const args = parseServerArgs()
const compress = args.deflate !== 'off'
const server = Bun.serve({
  hostname: '127.0.0.1',
  port: 0,
  fetch(request, server) {
    if (server.upgrade(request, { data: { path: new URL(request.url).pathname } })) return undefined
    return new Response('WebSocket only', { status: 426 })
  },
  websocket: {
    perMessageDeflate:
      args.deflate === 'takeover'
        ? { compress: 'dedicated', decompress: 'dedicated' }
        : args.deflate !== 'off',
    open(ws) {
      if (ws.data.path === '/sub') ws.subscribe(TOPIC)
    },
    message(ws, data) {
      if (ws.data.path === '/pub') server.publish(TOPIC, data)
      else ws.send(data, compress)
    },
  },
})

announce(
  server.port,
  () => {
    server.stop(true)
    process.exit(0)
  },
  () => Bun.gc(true),
)
