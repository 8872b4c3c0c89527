/**
 * Fan-out load over the real-time layer's transports (issue 13), and Socket.IO's for reference:
 * `--conns` subscribers to the channel "bench", each over `--transport`
 *
 *   ws       rally.v1 on a WebSocket to /rt (Rally's WHATWG client): connect, subscribe;
 *   sse      POST /rt/open (X-Rally-Transport: sse), GET /rt/sse as a stream, the commands in a
 *            POST /rt/send; every 1,000 events a `pong` POST acknowledges what arrived, so the
 *            server can free its replay buffer (Rally's client acknowledges on each POST);
 *   lp       the same with GET /rt/poll held until there is something to send, polled again at
 *            once with the acknowledgement of what the last poll brought;
 *   sio-ws   Socket.IO 4 on its websocket transport: Engine.IO open, `40`, a `join` event with an
 *            ack (as the C load generator's --proto socketio);
 *   sio-lp   Socket.IO 4 on Engine.IO's polling transport: GET for the open packet, POST `40`,
 *            then a GET loop (packets separated by 0x1e), the `join` and pongs by POST;
 *
 * then one publisher WebSocket: for Rally, a rally.v1 WebSocket on /rt calling the server's RPC
 * `publish` (bench/servers/transports.ts publishes its data to the channel); for Socket.IO, a
 * plain WebSocket on /pub (the server publishes each of its messages to the channel). Publications are 64 B of text whose first 12 characters are a
 * sequence number: a delivery's latency is its arrival time minus the send time of its sequence
 * number, in this process. Closed loop, as the C load generator's sink mode: `--window`
 * publications in flight, counted in deliveries. Subscribers are spread over `--ports` (the
 * publisher uses the first). HTTP requests go over keep-alive connections (one `http.Agent`), except
 * the long-polling GET loops, each on a socket of its own (Poller).
 *
 * Prints one JSON report (bench/loadgen/node-support.ts) and exits.
 */
import { Agent, request } from 'node:http'
import { connect, type Socket } from 'node:net'
import { performance } from 'node:perf_hooks'
import { WebSocket } from '../../src/client/websocket.js'
import {
  type Counters,
  fail,
  Histogram,
  listArg,
  measureWindow,
  numberArg,
  parseArgv,
  report,
  run,
  within,
} from './node-support.js'

const TRANSPORTS = ['ws', 'sse', 'lp', 'sio-ws', 'sio-lp'] as const
type Transport = (typeof TRANSPORTS)[number]

const args = parseArgv(process.argv.slice(2))
const transport = args.get('transport') as Transport
if (!TRANSPORTS.includes(transport)) fail(`--transport must be one of ${TRANSPORTS.join(', ')}`)
const ports = listArg(args, 'ports')
if (ports.length === 0) fail('--ports is required')
const conns = numberArg(args, 'conns', 1)
const window = Math.max(1, numberArg(args, 'window', 1))
const channel = args.get('channel') ?? 'bench'
const HOST = '127.0.0.1'
const SETUP_TIMEOUT_MS = 120_000

const counters: Counters = { count: 0, rxBytes: 0, errors: 0, latency: new Histogram() }
const agent = new Agent({ keepAlive: true, maxSockets: Number.POSITIVE_INFINITY })
/** Send times by sequence number (the window is small: a ring is plenty). */
const RING = 1 << 16
const sentAt = new Float64Array(RING)
let sent = 0
let delivered = 0
let subscribed = 0
let closedAfterSubscribe = 0
let publishing = false
/**
 * How each HTTP subscriber leaves at the end, as a page that closes does (RallyClient's close(),
 * Engine.IO's close packet). Without it the sessions outlived the load generator on the server,
 * still subscribed, until their expiry (45 s for Rally, Engine.IO's ping timeout for Socket.IO):
 * the servers are reused from one rep to the next, so later reps fanned out to the sessions of
 * earlier ones too, and measured up to twice the cost per poll.
 */
const leaves: (() => Promise<unknown>)[] = []
let leaving = false
/** When a delivery last arrived; a window that stops moving is written off (see watchStalls). */
let lastProgress = 0
let stalls = 0
let lost = 0
/** Long-polling GETs answered, over the whole run (deliveries per poll: how well answers batch). */
let polls = 0
let publisher: WebSocket | undefined
const PADDING = 'x'.repeat(52)

/** Socket.IO's transports; the others are Rally's, whose publisher speaks rally.v1. */
const socketIo = transport === 'sio-ws' || transport === 'sio-lp'

function publish(): void {
  const seq = sent++
  sentAt[seq & (RING - 1)] = performance.now()
  const data = String(seq).padStart(12, '0') + PADDING
  publisher!.send(socketIo ? data : `{"id":${seq + 10},"cmd":"rpc","method":"publish","data":"${data}"}`)
}

/** Keeps `window` publications in flight, counted in deliveries as the C load generator does. */
function pump(): void {
  if (!publishing) return
  while (sent * subscribed - delivered <= (window - 1) * subscribed) publish()
}

function publication(seqText: string): void {
  const seq = Number(seqText)
  counters.count++
  delivered++
  lastProgress = performance.now()
  if (Number.isInteger(seq)) counters.latency.record((performance.now() - sentAt[seq & (RING - 1)]!) * 1000)
  pump()
}

/** The publication's payload starts right after `"data":"` in a rally.v1 `pub` push. */
function rallyPayload(envelope: string): string {
  const at = envelope.indexOf('"data":"')
  return at === -1 ? '' : envelope.slice(at + 8, at + 20)
}

/** A rally.v1 envelope on any transport: returns 'subscribed' when the subscribe is answered. */
function rallyEnvelope(envelope: string, pong: () => void): 'subscribed' | undefined {
  if (envelope.startsWith('{"push":"pub"')) publication(rallyPayload(envelope))
  else if (envelope.startsWith('{"push":"ping"')) pong()
  else if (envelope.startsWith('{"id":2,"result"')) return 'subscribed'
  else if (envelope.startsWith('{"id":') && envelope.includes('"error"'))
    throw new Error(`rally.v1 command refused: ${envelope}`)
  else if (envelope.startsWith('{"push":"disconnect"')) throw new Error(`disconnected: ${envelope}`)
  return undefined
}

const COMMANDS = [
  { id: 1, cmd: 'connect', version: 1 },
  { id: 2, cmd: 'subscribe', channel },
]

function http(
  port: number,
  method: 'GET' | 'POST',
  path: string,
  headers: Record<string, string> = {},
  body = '',
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: HOST, port, method, path, agent, headers }, (response) => {
      response.setEncoding('utf8')
      let text = ''
      response.on('data', (chunk: string) => {
        text += chunk
      })
      response.on('end', () => {
        counters.rxBytes += text.length
        resolve({ status: response.statusCode ?? 0, text })
      })
      response.on('error', reject)
    })
    req.on('error', reject)
    req.end(body)
  })
}

/**
 * One subscriber's GET loop on a keep-alive connection of its own, spoken directly on a socket:
 * the request is one write, the answer's head is read for its status and Content-Length (or
 * chunked framing) and nothing else. node:http's client cost this process more per poll than
 * the servers under test spent answering it (the load generator at 100 % CPU, Rally's server at
 * 58 %), so the figures were the client's; both long-polling transports use this poller.
 */
class Poller {
  private readonly socket: Socket
  private chunks: Buffer[] = []
  private buffered = 0
  private waiting:
    | { resolve: (answer: { status: number; text: string }) => void; reject: (error: Error) => void }
    | undefined
  private failure: Error | undefined

  constructor(private readonly port: number) {
    this.socket = connect({ host: HOST, port, noDelay: true })
    this.socket.on('data', (chunk: Buffer) => {
      this.chunks.push(chunk)
      this.buffered += chunk.length
      this.parse()
    })
    const fail = (error: Error) => {
      this.failure ??= error
      const waiting = this.waiting
      this.waiting = undefined
      waiting?.reject(this.failure)
    }
    this.socket.on('error', fail)
    this.socket.on('close', () => fail(new Error('the polling connection closed')))
  }

  get(path: string): Promise<{ status: number; text: string }> {
    if (this.failure !== undefined) return Promise.reject(this.failure)
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject }
      this.socket.write(`GET ${path} HTTP/1.1\r\nHost: ${HOST}:${this.port}\r\n\r\n`, 'latin1')
    })
  }

  private parse(): void {
    if (this.waiting === undefined) return
    const data = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.buffered)
    this.chunks = [data]
    const headEnd = data.indexOf('\r\n\r\n')
    if (headEnd === -1) return
    const head = data.toString('latin1', 0, headEnd).toLowerCase()
    const status = Number(head.slice(9, 12))
    const lengthAt = head.indexOf('\r\ncontent-length:')
    let body: Buffer
    let used: number
    if (lengthAt !== -1) {
      const length = Number.parseInt(head.slice(lengthAt + 17), 10)
      if (data.length < headEnd + 4 + length) return
      body = data.subarray(headEnd + 4, headEnd + 4 + length)
      used = headEnd + 4 + length
    } else if (head.includes('\r\ntransfer-encoding: chunked')) {
      // RFC 9112 7.1: size in hex, CRLF, data, CRLF; a zero size ends the body (no trailers here).
      const parts: Buffer[] = []
      let at = headEnd + 4
      for (;;) {
        const lineEnd = data.indexOf('\r\n', at)
        if (lineEnd === -1) return
        const size = Number.parseInt(data.toString('latin1', at, lineEnd), 16)
        if (data.length < lineEnd + 2 + size + 2) return
        if (size === 0) {
          used = lineEnd + 4
          break
        }
        parts.push(data.subarray(lineEnd + 2, lineEnd + 2 + size))
        at = lineEnd + 2 + size + 2
      }
      body = Buffer.concat(parts)
    } else {
      this.socket.destroy(new Error(`a poll answer without a length: ${head.slice(0, 80)}`))
      return
    }
    const rest = data.subarray(used)
    this.chunks = rest.length === 0 ? [] : [rest]
    this.buffered = rest.length
    const text = body.toString('utf8')
    counters.rxBytes += text.length
    const waiting = this.waiting
    this.waiting = undefined
    polls++
    waiting.resolve({ status, text })
  }
}

async function openSession(
  port: number,
  kind: 'sse' | 'long-polling',
): Promise<{ session: string; token: string }> {
  const opened = await http(port, 'POST', '/rt/open', { 'x-rally-transport': kind })
  if (opened.status !== 200) throw new Error(`POST /rt/open: ${opened.status} ${opened.text}`)
  return JSON.parse(opened.text) as { session: string; token: string }
}

/** POST /rt/close: the session ends at once (presence, subscriptions, its queue). */
function closeSession(port: number, session: { session: string; token: string }): Promise<unknown> {
  return http(port, 'POST', `/rt/close?session=${session.session}`, { 'x-rally-token': session.token })
}

async function sendCommands(
  port: number,
  session: { session: string; token: string },
  ack: number,
  commands: unknown[],
): Promise<void> {
  const sent = await http(
    port,
    'POST',
    `/rt/send?session=${session.session}&ack=${ack}`,
    { 'x-rally-token': session.token, 'content-type': 'application/json' },
    JSON.stringify(commands),
  )
  if (sent.status !== 204) throw new Error(`POST /rt/send: ${sent.status} ${sent.text}`)
}

function onLost(): void {
  // Sessions that were told to leave end their streams and polls: not a loss.
  if (leaving) return
  closedAfterSubscribe++
  counters.errors++
}

/**
 * As the C load generator: after 1 s without a delivery, what is outstanding is counted as lost
 * and publishing goes on, so that one lost subscriber or dropped publication does not stop the
 * run (the report's `stalls` and `lost` say it happened).
 */
function watchStalls(): ReturnType<typeof setInterval> {
  return setInterval(() => {
    if (!publishing || performance.now() - lastProgress < 1000) return
    const outstanding = sent * subscribed - delivered
    if (outstanding > 0) {
      stalls++
      lost += outstanding
      delivered += outstanding
    }
    lastProgress = performance.now()
    pump()
  }, 250)
}

function wsSubscriber(port: number, socketIo: boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    const url = socketIo
      ? `ws://${HOST}:${port}/socket.io/?EIO=4&transport=websocket`
      : `ws://${HOST}:${port}/rt`
    const ws = socketIo ? new WebSocket(url) : new WebSocket(url, 'rally.v1')
    let ready = false
    ws.addEventListener('open', () => {
      if (!socketIo) for (const command of COMMANDS) ws.send(JSON.stringify(command))
    })
    ws.addEventListener('message', (event) => {
      const text = String((event as MessageEvent).data)
      counters.rxBytes += text.length
      try {
        if (!socketIo) {
          if (rallyEnvelope(text, () => ws.send('{"cmd":"pong"}')) === 'subscribed') {
            ready = true
            resolve()
          }
          return
        }
        // Engine.IO: 0 open, 2 ping, 3 pong, 4 message; Socket.IO inside: 0 connect, 2 event, 3 ack.
        if (text.startsWith('42["m","')) publication(text.slice(8, 20))
        else if (text === '2') ws.send('3')
        else if (text.startsWith('0{')) ws.send('40')
        else if (text.startsWith('40')) ws.send(`421["join","${channel}"]`)
        else if (text.startsWith('431')) {
          ready = true
          resolve()
        }
      } catch (error) {
        reject(error)
      }
    })
    ws.addEventListener('close', () => {
      if (ready) onLost()
      else reject(new Error(`${url} closed before subscribing`))
    })
    ws.addEventListener('error', () => {
      if (!ready) reject(new Error(`cannot open ${url}`))
    })
  })
}

function sseSubscriber(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let ready = false
    let lastId = 0
    let sinceAck = 0
    const fault = (error: unknown) => {
      if (ready) onLost()
      else reject(error)
    }
    openSession(port, 'sse').then((session) => {
      leaves.push(() => closeSession(port, session))
      const pong = () => {
        sinceAck = 0
        sendCommands(port, session, lastId, [{ cmd: 'pong' }]).catch(fault)
      }
      const req = request(
        {
          host: HOST,
          port,
          path: `/rt/sse?session=${session.session}`,
          agent,
          headers: { accept: 'text/event-stream' },
        },
        (response) => {
          if (response.statusCode !== 200) return fault(new Error(`GET /rt/sse: ${response.statusCode}`))
          response.setEncoding('utf8')
          let buffer = ''
          response.on('data', (chunk: string) => {
            counters.rxBytes += chunk.length
            buffer += chunk
            let start = 0
            let end = buffer.indexOf('\n\n', start)
            try {
              while (end !== -1) {
                // `id: N\ndata: ENVELOPE`; comments (heartbeats), `retry` and named events skipped.
                if (buffer.startsWith('id: ', start)) {
                  const newline = buffer.indexOf('\n', start)
                  lastId = Number(buffer.slice(start + 4, newline))
                  const envelope = buffer.slice(newline + 7, end)
                  if (rallyEnvelope(envelope, pong) === 'subscribed') {
                    ready = true
                    resolve()
                  }
                  if (++sinceAck >= 1000) pong()
                }
                start = end + 2
                end = buffer.indexOf('\n\n', start)
              }
            } catch (error) {
              fault(error)
            }
            buffer = start === buffer.length ? '' : buffer.slice(start)
          })
          response.on('end', () => fault(new Error('the SSE stream ended')))
          response.on('error', fault)
          sendCommands(port, session, 0, COMMANDS).catch(fault)
        },
      )
      req.on('error', fault)
      req.end()
    }, fault)
  })
}

function lpSubscriber(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let ready = false
    let received = 0
    const fault = (error: unknown) => {
      if (ready) onLost()
      else reject(error)
    }
    const run = async () => {
      const session = await openSession(port, 'long-polling')
      leaves.push(() => closeSession(port, session))
      await sendCommands(port, session, 0, COMMANDS)
      const poller = new Poller(port)
      for (;;) {
        const poll = await poller.get(`/rt/poll?session=${session.session}&ack=${received}`)
        if (poll.status !== 200) throw new Error(`GET /rt/poll: ${poll.status} ${poll.text}`)
        const { first, messages } = JSON.parse(poll.text) as { first: number; messages: unknown[] }
        for (let i = 0; i < messages.length; i++) {
          if (first + i <= received) continue
          const message = messages[i] as { push?: string; id?: number; result?: unknown; data?: unknown }
          if (message.push === 'pub') publication(String(message.data).slice(0, 12))
          else if (message.push === 'ping')
            sendCommands(port, session, first + i, [{ cmd: 'pong' }]).catch(fault)
          else if (message.id === 2 && message.result !== undefined) {
            ready = true
            resolve()
          } else if (message.id !== undefined && message.result === undefined)
            throw new Error(`rally.v1 command refused: ${JSON.stringify(message)}`)
          else if (message.push === 'disconnect') throw new Error(`disconnected: ${JSON.stringify(message)}`)
        }
        if (messages.length > 0) received = Math.max(received, first + messages.length - 1)
      }
    }
    run().catch(fault)
  })
}

function sioLpSubscriber(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let ready = false
    const fault = (error: unknown) => {
      if (ready) onLost()
      else reject(error)
    }
    const base = '/socket.io/?EIO=4&transport=polling'
    const text = { 'content-type': 'text/plain;charset=UTF-8' }
    const run = async () => {
      const open = await http(port, 'GET', base)
      if (open.status !== 200 || !open.text.startsWith('0{'))
        throw new Error(`Engine.IO open: ${open.status} ${open.text}`)
      const sid = (JSON.parse(open.text.slice(1)) as { sid: string }).sid
      const path = `${base}&sid=${encodeURIComponent(sid)}`
      const post = (body: string) =>
        http(port, 'POST', path, text, body).then((answer) => {
          if (answer.status !== 200) throw new Error(`Engine.IO POST: ${answer.status} ${answer.text}`)
        })
      await post('40')
      // Engine.IO's close packet (type 1), as its client sends on close().
      leaves.push(() => post('1'))
      const poller = new Poller(port)
      for (;;) {
        const poll = await poller.get(path)
        if (poll.status !== 200) throw new Error(`Engine.IO poll: ${poll.status} ${poll.text}`)
        // A payload is packets separated by the record separator (Engine.IO v4).
        for (const packet of poll.text.split('\x1e')) {
          if (packet.startsWith('42["m","')) publication(packet.slice(8, 20))
          else if (packet === '2') void post('3').catch(fault)
          else if (packet.startsWith('40')) void post(`421["join","${channel}"]`).catch(fault)
          else if (packet.startsWith('431')) {
            ready = true
            resolve()
          } else if (packet === '1') throw new Error('Engine.IO closed the session')
        }
      }
    }
    run().catch(fault)
  })
}

function subscribe(index: number): Promise<void> {
  const port = ports[index % ports.length]!
  switch (transport) {
    case 'ws':
      return wsSubscriber(port, false)
    case 'sio-ws':
      return wsSubscriber(port, true)
    case 'sse':
      return sseSubscriber(port)
    case 'lp':
      return lpSubscriber(port)
    case 'sio-lp':
      return sioLpSubscriber(port)
  }
}

async function main(): Promise<void> {
  const started = performance.now()
  // At most 100 subscribers in their handshake at once: a server's accept queue is not the subject.
  let next = 0
  const worker = async () => {
    while (next < conns) {
      const index = next++
      await subscribe(index)
      subscribed++
    }
  }
  await within(
    Promise.all(Array.from({ length: Math.min(100, conns) }, worker)),
    SETUP_TIMEOUT_MS,
    `${conns} ${transport} subscribers`,
  )
  const connectSeconds = (performance.now() - started) / 1000
  publisher = socketIo
    ? new WebSocket(`ws://${HOST}:${ports[0]}/pub`)
    : new WebSocket(`ws://${HOST}:${ports[0]}/rt`, 'rally.v1')
  await within(
    new Promise<void>((resolve, reject) => {
      const ws = publisher!
      ws.addEventListener('error', () => reject(new Error('cannot open the publisher')))
      if (socketIo) {
        ws.addEventListener('open', () => resolve())
        return
      }
      ws.addEventListener('open', () => ws.send('{"id":1,"cmd":"connect","version":1}'))
      // Ready once connected; afterwards the RPC replies are dropped unread, an error ends the run.
      ws.addEventListener('message', (event) => {
        const text = String((event as MessageEvent).data)
        if (text.startsWith('{"id":1,"result"')) resolve()
        else if (text.startsWith('{"push":"ping"')) ws.send('{"cmd":"pong"}')
        else if (text.includes('"error"')) {
          counters.errors++
          reject(new Error(`the publisher was refused: ${text}`))
        }
      })
    }),
    30_000,
    'the publisher',
  )
  publisher.addEventListener('close', () => counters.errors++)
  publishing = true
  lastProgress = performance.now()
  const watcher = watchStalls()
  pump()
  const fields = await measureWindow(counters, {
    warmup: numberArg(args, 'warmup', 0.5),
    duration: numberArg(args, 'duration', 2),
    serverPids: listArg(args, 'server-pids'),
  })
  publishing = false
  leaving = true
  await within(Promise.allSettled(leaves.map((leave) => leave())), 30_000, 'the subscribers leaving')
  clearInterval(watcher)
  report(
    {
      mode: 'sink',
      transport,
      conns,
      window,
      opened: subscribed,
      open_at_end: subscribed - closedAfterSubscribe,
      connect_s: connectSeconds,
      payload_bytes: 64,
      stalls,
      lost,
      ...(polls > 0 ? { polls, deliveries_per_poll: counters.count / polls } : {}),
      ...fields,
    },
    counters,
  )
}

run(main)
