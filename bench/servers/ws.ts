/**
 * `ws` 8 under test. The runner starts it twice: plain (WS_NO_BUFFER_UTIL=1,
 * WS_NO_UTF_8_VALIDATE=1) and with the native helpers (bufferutil for masking; on Node >= 18.14
 * ws validates UTF-8 with `buffer.isUtf8` whatever the env says).
 *
 * Broadcast (`/pub`):
 * - `--broadcast loop`: what ws's README shows, `for (const client of wss.clients) client.send()`;
 * - `--broadcast prepared`: the frame built once with `WebSocket.Sender.frame` and the same bytes
 *   written to each client's socket (`ws._socket`, not in the typings but what people do).
 *
 * permessage-deflate:
 * - `--deflate fair`: the parameters Rally uses: no context takeover either way, level 1,
 *   memLevel 8, threshold 1024;
 * - `--deflate default`: `perMessageDeflate: true`, ws's own defaults (level 6 via zlib's default,
 *   context takeover unless the client asks otherwise, threshold 1024);
 * - `--deflate takeover`: Rally's parameters with context takeover both ways.
 */
import { createRequire } from 'node:module'
import type { Duplex } from 'node:stream'
import { type PerMessageDeflateOptions, WebSocket, WebSocketServer } from 'ws'
import { announce, parseServerArgs } from './common.js'

const args = parseServerArgs()

const fair: PerMessageDeflateOptions = {
  serverNoContextTakeover: true,
  clientNoContextTakeover: true,
  zlibDeflateOptions: { level: 1, memLevel: 8 },
  threshold: 1024,
}

const wss = new WebSocketServer({
  host: '127.0.0.1',
  port: 0,
  perMessageDeflate:
    args.deflate === 'off'
      ? false
      : args.deflate === 'fair'
        ? fair
        : args.deflate === 'takeover'
          ? { ...fair, serverNoContextTakeover: false, clientNoContextTakeover: false }
          : true,
})

interface FrameOptions {
  fin: boolean
  opcode: number
  mask: boolean
  readOnly: boolean
  rsv1: boolean
}
// ws's ESM entry and its typings leave Sender out; its CommonJS entry has it.
const { Sender } = createRequire(import.meta.url)('ws') as {
  Sender: { frame(data: Buffer, options: FrameOptions): Buffer[] }
}

function noop(): void {}

wss.on('connection', (ws, req) => {
  ws.on('error', noop)
  if (req.url === '/sub') return
  if (req.url === '/pub') {
    if (args.broadcast === 'prepared') {
      ws.on('message', (data: Buffer, isBinary: boolean) => {
        const frame = Buffer.concat(
          Sender.frame(data, {
            fin: true,
            opcode: isBinary ? 2 : 1,
            mask: false,
            readOnly: false,
            rsv1: false,
          }),
        )
        for (const client of wss.clients) {
          if (client !== ws) (client as unknown as { _socket: Duplex })._socket.write(frame)
        }
      })
    } else {
      ws.on('message', (data: Buffer, isBinary: boolean) => {
        for (const client of wss.clients) {
          if (client !== ws && client.readyState === WebSocket.OPEN) client.send(data, { binary: isBinary })
        }
      })
    }
    return
  }
  ws.on('message', (data: Buffer, isBinary: boolean) => {
    ws.send(data, { binary: isBinary })
  })
})
wss.on('error', (error) => {
  console.error(error)
  process.exit(1)
})

wss.on('listening', () => {
  const address = wss.address()
  if (typeof address !== 'object' || address === null) throw new Error('no address')
  announce(address.port, () => {
    for (const client of wss.clients) client.terminate()
    wss.close(() => process.exit(0))
    setTimeout(() => process.exit(0), 2000).unref()
  })
})
