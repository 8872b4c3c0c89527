/**
 * The upper limit of one Node.js thread: a raw `node:net` server that completes the WebSocket
 * handshake (it computes Sec-WebSocket-Accept) and then does the least a server could:
 *
 * - echo: writes back exactly the bytes it reads. It does not unmask, so what returns is the
 *   client's masked frames; the load generator accepts them from this peer. No parsing, no copy.
 * - broadcast: `/pub` frames are parsed just enough (header, unmask a 64-byte payload), framed
 *   once unmasked, and the same Buffer is written to every `/sub` socket — the frames of all
 *   messages read in one chunk in one write per subscriber.
 *
 * It validates nothing and has no limits: it is a yardstick, not a server.
 */
import { createHash } from 'node:crypto'
import { createServer, type Socket } from 'node:net'
import { announce, parseServerArgs } from './common.js'

parseServerArgs()

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'
const HEAD_END = Buffer.from('\r\n\r\n')
const subscribers = new Set<Socket>()

function noop(): void {}

const server = createServer((socket) => {
  socket.setNoDelay(true)
  socket.on('error', noop)
  let head: Buffer = Buffer.alloc(0)
  const onHead = (chunk: Buffer): void => {
    head = head.length === 0 ? chunk : Buffer.concat([head, chunk])
    const end = head.indexOf(HEAD_END)
    if (end === -1) {
      if (head.length > 16384) socket.destroy()
      return
    }
    socket.removeListener('data', onHead)
    const text = head.toString('latin1', 0, end)
    const rest = head.subarray(end + 4)
    const path = text.slice(text.indexOf(' ') + 1, text.indexOf(' ', text.indexOf(' ') + 1))
    const keyMatch = /\r\nsec-websocket-key:[ \t]*([^\r\n]+)/i.exec(text)
    if (keyMatch === null) {
      socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n')
      return
    }
    const accept = createHash('sha1')
      .update(keyMatch[1]!.trim() + GUID)
      .digest('base64')
    socket.write(
      `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`,
    )
    if (path === '/sub') {
      subscribers.add(socket)
      socket.on('close', () => subscribers.delete(socket))
    } else if (path === '/pub') {
      publisher(socket, rest)
    } else {
      socket.on('data', (data: Buffer) => socket.write(data))
      if (rest.length > 0) socket.write(rest)
    }
  }
  socket.on('data', onHead)
})

/** Parses the publisher's masked frames (any split across reads) and fans each one out. */
function publisher(socket: Socket, first: Buffer): void {
  let pending: Buffer = first
  const frames: Buffer[] = []
  const onData = (chunk: Buffer): void => {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk])
    let offset = 0
    for (;;) {
      if (pending.length - offset < 2) break
      const b0 = pending[offset]!
      const b1 = pending[offset + 1]!
      let length = b1 & 0x7f
      let position = offset + 2
      if (length === 126) {
        if (pending.length - offset < 4) break
        length = pending.readUInt16BE(position)
        position += 2
      } else if (length === 127) {
        if (pending.length - offset < 10) break
        length = Number(pending.readBigUInt64BE(position))
        position += 8
      }
      const masked = (b1 & 0x80) !== 0
      const maskAt = position
      if (masked) position += 4
      if (pending.length < position + length) break
      const opcode = b0 & 0x0f
      if (opcode === 0x8) {
        socket.end()
        return
      }
      const extended = length < 126 ? 0 : length < 65536 ? 2 : 8
      const frame = Buffer.allocUnsafe(2 + extended + length)
      frame[0] = 0x80 | opcode
      if (extended === 0) frame[1] = length
      else if (extended === 2) {
        frame[1] = 126
        frame.writeUInt16BE(length, 2)
      } else {
        frame[1] = 127
        frame.writeBigUInt64BE(BigInt(length), 2)
      }
      const start = 2 + extended
      for (let i = 0; i < length; i++) {
        frame[start + i] = masked
          ? pending[position + i]! ^ pending[maskAt + (i & 3)]!
          : pending[position + i]!
      }
      frames.push(frame)
      offset = position + length
    }
    pending = offset === pending.length ? Buffer.alloc(0) : pending.subarray(offset)
    if (frames.length === 0) return
    // Messages that arrived together leave together: one write per subscriber.
    const out = frames.length === 1 ? frames[0]! : Buffer.concat(frames)
    frames.length = 0
    for (const subscriber of subscribers) subscriber.write(out)
  }
  socket.on('data', onData)
  if (first.length > 0) onData(Buffer.alloc(0))
}

server.listen(0, '127.0.0.1', () => {
  const address = server.address()
  if (typeof address !== 'object' || address === null) throw new Error('no address')
  announce(address.port, () => {
    for (const socket of subscribers) socket.destroy()
    server.close()
    process.exit(0)
  })
})
