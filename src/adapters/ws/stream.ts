/**
 * `createWebSocketStream(ws)`: a Duplex over a WebSocket, as in ws. Writes become messages,
 * messages become readable chunks; ending the writable side closes the connection.
 */
import { Duplex, type DuplexOptions } from 'node:stream'
import type { WebSocket } from './websocket.js'

export function createWebSocketStream(ws: WebSocket, options: DuplexOptions = {}): Duplex {
  const duplex: Duplex = new Duplex({
    ...options,
    autoDestroy: false,
    emitClose: false,
    objectMode: false,
    writableObjectMode: false,
    read() {
      // The consumer wants more: read from the socket again.
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
  ws.on('message', (data: Buffer | ArrayBuffer | Buffer[]) => {
    const chunk = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer)
    // Backpressure: stop reading from the socket while the stream's buffer is full.
    if (!duplex.push(chunk) && !ws.isPaused) ws.pause()
  })
  ws.once('error', (error: Error) => duplex.destroy(error))
  ws.once('close', () => {
    duplex.push(null)
  })
  return duplex
}
