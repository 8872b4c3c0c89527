/**
 * The least a long-polling server can do on one Node.js thread, as a yardstick for issue 13's
 * transports-lp (as raw.ts is for WebSockets): a `node:net` server that reads each request head
 * with indexOf, keeps every session's unacknowledged envelopes in an array, and answers a poll
 * with one write of one string. It speaks just enough of Rally's routes for bench/loadgen/fanout.ts
 * (`POST /rt/open`, `POST /rt/send` with connect, subscribe and pong, `GET /rt/poll?ack=N`), and
 * takes the load generator's publisher as a WebSocket on `/rt` whose text frames are rally.v1 RPC
 * calls of `publish` (connect answered, each publish made an envelope shared by every session).
 *
 * It validates nothing and has no limits, no timeouts, no heartbeat: it is a yardstick, not a
 * server. What it costs is what node:net, the kernel and one string per answer cost.
 */
import { createHash } from 'node:crypto'
import { createServer, type Socket } from 'node:net'
import { announce } from './common.js'

process.setSourceMapsEnabled(false)

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'

interface Session {
  buffer: string[]
  first: number
  subscribed: boolean
  /** The held poll's socket. */
  held: Socket | undefined
}

const sessions = new Map<string, Session>()
const subscribers: Session[] = []
const waiting = new Set<Session>()
let flushScheduled = false
let offset = 0
let nextSession = 1

function noop(): void {}

function respond(socket: Socket, status: string, type: string, body: string): void {
  socket.write(
    `HTTP/1.1 ${status}\r\ncontent-type: ${type}\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  )
}

function answerPoll(session: Session, socket: Socket): void {
  respond(
    socket,
    '200 OK',
    'application/json',
    `{"first":${session.first},"messages":[${session.buffer.join(',')}]}`,
  )
}

function enqueue(session: Session, envelope: string): void {
  session.buffer.push(envelope)
  if (session.held === undefined) return
  waiting.add(session)
  if (flushScheduled) return
  flushScheduled = true
  setImmediate(flush)
}

function flush(): void {
  flushScheduled = false
  for (const session of waiting) {
    const socket = session.held
    session.held = undefined
    if (socket !== undefined) answerPoll(session, socket)
  }
  waiting.clear()
}

function query(target: string, name: string): string {
  const at = target.indexOf(`${name}=`)
  if (at === -1) return ''
  const end = target.indexOf('&', at)
  return target.slice(at + name.length + 1, end === -1 ? target.length : end)
}

function acknowledge(session: Session, ackText: string): void {
  const ack = Number(ackText)
  const drop = Math.min(session.buffer.length, ack - session.first + 1)
  if (drop > 0) {
    session.buffer = session.buffer.slice(drop)
    session.first += drop
  }
}

function request(socket: Socket, method: string, target: string, body: string): void {
  const path = target.slice(0, target.indexOf('?') === -1 ? target.length : target.indexOf('?'))
  if (method === 'POST' && path === '/rt/open') {
    const id = `s${nextSession++}`
    sessions.set(id, { buffer: [], first: 1, subscribed: false, held: undefined })
    respond(socket, '200 OK', 'application/json', `{"session":"${id}","token":"t"}`)
    return
  }
  const session = sessions.get(query(target, 'session'))
  if (session === undefined) {
    respond(socket, '404 Not Found', 'application/json', '{"error":"unknown session"}')
    return
  }
  if (method === 'GET' && path === '/rt/poll') {
    acknowledge(session, query(target, 'ack'))
    if (session.buffer.length > 0) answerPoll(session, socket)
    else session.held = socket
    return
  }
  if (method === 'POST' && path === '/rt/send') {
    const ack = query(target, 'ack')
    if (ack !== '') acknowledge(session, ack)
    for (const command of JSON.parse(body) as { id?: number; cmd: string }[]) {
      if (command.cmd === 'connect') enqueue(session, `{"id":${command.id},"result":{"client":"c"}}`)
      else if (command.cmd === 'subscribe') {
        if (!session.subscribed) subscribers.push(session)
        session.subscribed = true
        enqueue(session, `{"id":${command.id},"result":{"channel":"bench","offset":${offset},"epoch":"e"}}`)
      }
    }
    socket.write('HTTP/1.1 204 No Content\r\n\r\n')
    return
  }
  respond(socket, '404 Not Found', 'text/plain', 'not found')
}

/** The publisher's WebSocket: unmasks its text frames, answers connect, publishes each RPC's data. */
function publisher(socket: Socket, key: string, first: Buffer): void {
  const accept = createHash('sha1')
    .update(key + GUID)
    .digest('base64')
  socket.write(
    `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\nSec-WebSocket-Protocol: rally.v1\r\n\r\n`,
  )
  let pending = first
  const frame = (text: string): Buffer => {
    const payload = Buffer.from(text)
    const head =
      payload.length < 126
        ? Buffer.from([0x81, payload.length])
        : Buffer.from([0x81, 126, payload.length >> 8, payload.length & 255])
    return Buffer.concat([head, payload])
  }
  const onData = (chunk: Buffer): void => {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk])
    for (;;) {
      if (pending.length < 2) return
      let length = pending[1]! & 0x7f
      let at = 2
      if (length === 126) {
        if (pending.length < 4) return
        length = pending.readUInt16BE(2)
        at = 4
      }
      if (pending.length < at + 4 + length) return
      const mask = pending.subarray(at, at + 4)
      const payload = Buffer.from(pending.subarray(at + 4, at + 4 + length))
      for (let i = 0; i < payload.length; i++) payload[i]! ^= mask[i & 3]!
      pending = pending.subarray(at + 4 + length)
      const text = payload.toString('utf8')
      const command = JSON.parse(text) as { id: number; cmd: string; data?: string }
      if (command.cmd === 'connect') socket.write(frame(`{"id":${command.id},"result":{"client":"p"}}`))
      else if (command.cmd === 'rpc') {
        offset++
        const envelope = `{"push":"pub","channel":"bench","offset":${offset},"epoch":"e","data":${JSON.stringify(command.data)}}`
        for (const session of subscribers) enqueue(session, envelope)
        socket.write(frame(`{"id":${command.id},"result":{"data":null}}`))
      }
    }
  }
  socket.on('data', onData)
  if (first.length > 0) onData(Buffer.alloc(0))
}

const server = createServer({ noDelay: true }, (socket) => {
  socket.on('error', noop)
  let pending = ''
  const onData = (chunk: Buffer): void => {
    pending += chunk.toString('latin1')
    for (;;) {
      const end = pending.indexOf('\r\n\r\n')
      if (end === -1) return
      const head = pending.slice(0, end)
      const firstSpace = head.indexOf(' ')
      const method = head.slice(0, firstSpace)
      const target = head.slice(firstSpace + 1, head.indexOf(' ', firstSpace + 1))
      const key = /\r\nsec-websocket-key:[ \t]*([^\r\n]+)/i.exec(head)
      if (key !== null) {
        socket.removeListener('data', onData)
        publisher(socket, key[1]!.trim(), Buffer.from(pending.slice(end + 4), 'latin1'))
        return
      }
      const length = /\r\ncontent-length:[ \t]*(\d+)/i.exec(head)
      const bodyLength = length === null ? 0 : Number(length[1])
      if (pending.length < end + 4 + bodyLength) return
      const body = Buffer.from(pending.slice(end + 4, end + 4 + bodyLength), 'latin1').toString('utf8')
      pending = pending.slice(end + 4 + bodyLength)
      request(socket, method, target, body)
    }
  }
  socket.on('data', onData)
})

server.listen(0, '127.0.0.1', () => {
  const address = server.address()
  announce(typeof address === 'object' && address !== null ? address.port : 0)
})
