/**
 * A minimal HTTP/2 client written for the tests, frame by frame (RFC 9113 3.4, 4.1, 6), with HPACK
 * literal fields only (RFC 7541 6.2.2): it can send what node:http2's client refuses or repairs
 * (a CONNECT without :authority or :path), and reports the answer to stream 1 as the raw first
 * byte of the response's header block or the RST_STREAM code.
 */
import { type TLSSocket, connect as tlsConnect } from 'node:tls'

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')

function frame(type: number, flags: number, streamId: number, payload: Buffer): Buffer {
  const header = Buffer.alloc(9)
  header.writeUIntBE(payload.length, 0, 3)
  header[3] = type
  header[4] = flags
  header.writeUInt32BE(streamId, 5)
  return Buffer.concat([header, payload])
}

/** HPACK "literal header field without indexing — new name" (RFC 7541 6.2.2), short strings. */
function literal(name: string, value: string): Buffer {
  const n = Buffer.from(name)
  const v = Buffer.from(value)
  if (n.length > 126 || v.length > 126) throw new RangeError('short fields only')
  return Buffer.concat([Buffer.from([0x00, n.length]), n, Buffer.from([v.length]), v])
}

export type RawAnswer = { headerBlockFirstByte: number } | { rstCode: number } | { goaway: number }

/** Opens a TLS connection with ALPN h2, sends `fields` as stream 1's HEADERS, reports the answer. */
export function rawRequest(port: number, ca: Buffer, fields: [string, string][]): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const socket: TLSSocket = tlsConnect({
      host: '127.0.0.1',
      port,
      ca,
      servername: 'localhost',
      ALPNProtocols: ['h2'],
    })
    let buffered = Buffer.alloc(0)
    const finish = (answer: RawAnswer) => {
      socket.destroy()
      resolve(answer)
    }
    socket.once('error', reject)
    socket.once('secureConnect', () => {
      const block = Buffer.concat(fields.map(([name, value]) => literal(name, value)))
      socket.write(
        Buffer.concat([
          PREFACE,
          frame(0x4, 0, 0, Buffer.alloc(0)),
          // HEADERS, END_HEADERS (0x4), no END_STREAM: a CONNECT stream stays open.
          frame(0x1, 0x4, 1, block),
        ]),
      )
    })
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk])
      while (buffered.length >= 9) {
        const length = buffered.readUIntBE(0, 3)
        if (buffered.length < 9 + length) return
        const type = buffered[3]!
        const flags = buffered[4]!
        const streamId = buffered.readUInt32BE(5) & 0x7fffffff
        const payload = buffered.subarray(9, 9 + length)
        buffered = buffered.subarray(9 + length)
        if (type === 0x4 && (flags & 0x1) === 0) socket.write(frame(0x4, 0x1, 0, Buffer.alloc(0)))
        else if (type === 0x1 && streamId === 1) {
          // With PADDED or PRIORITY flags the block starts later; nghttp2 sends neither here.
          finish({ headerBlockFirstByte: payload[0]! })
          return
        } else if (type === 0x3 && streamId === 1) {
          finish({ rstCode: payload.readUInt32BE(0) })
          return
        } else if (type === 0x7) {
          finish({ goaway: payload.readUInt32BE(4) })
          return
        }
      }
    })
  })
}
