/**
 * `createWebSocketStream(ws)`: a Duplex over a WebSocket, as in ws. Writes become messages,
 * messages become readable chunks; ending the writable side closes the connection.
 *
 * Backpressure runs both ways, as in ws. Reading: when the Duplex's buffer is full, the socket is
 * paused with `ws.pause()` — the user's pause, which only `read()` lifts; Rally's own pauses (a
 * write backlog, a message being inflated) come and go beside it without letting data in.
 * Writing: a write's callback waits for the socket to drain when it is backed up (see `send`), so
 * the Duplex holds further writes instead of the socket buffering them without bound.
 */
import { Buffer } from 'node:buffer'
import { Duplex, type DuplexOptions } from 'node:stream'
import type { RawData } from './types.js'
import type { WebSocket } from './websocket.js'

export function createWebSocketStream(ws: WebSocket, options: DuplexOptions = {}): Duplex {
  const duplex: Duplex = new Duplex({
    ...options,
    autoDestroy: false,
    emitClose: false,
    objectMode: false,
    writableObjectMode: false,
    read() {
      // The consumer wants more: lift the pause the message handler put on the socket.
      if (ws.isPaused) ws.resume()
    },
    write(chunk: Buffer, _encoding, callback) {
      if (ws.readyState === ws.CONNECTING) {
        ws.once('open', () => ws.send(chunk, callback))
        return
      }
      ws.send(chunk, callback)
    },
    final(callback) {
      if (ws.readyState === ws.CONNECTING) {
        ws.once('open', () => {
          ws.close()
          callback()
        })
        return
      }
      ws.close()
      callback()
    },
    destroy(error, callback) {
      if (ws.readyState === ws.CLOSED) {
        callback(error)
        return
      }
      ws.once('close', () => callback(error))
      ws.terminate()
    },
  })
  ws.on('message', (data: RawData) => {
    const chunk = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data)
    // The Duplex's buffer is full: stop reading until read() asks for more. Always the user's
    // pause, whatever else holds reading now: that other reason may lift before read() is called.
    if (!duplex.push(chunk)) ws.pause()
  })
  ws.once('error', (error: Error) => duplex.destroy(error))
  ws.once('close', () => {
    if (!duplex.destroyed) duplex.push(null)
  })
  return duplex
}
