/**
 * `rally connect URL`: an interactive client. Lines from stdin go out as text messages; messages
 * in are printed as they come. `/ping [text]` sends a ping, `/close [CODE [REASON]]` closes.
 */
import { performance } from 'node:perf_hooks'
import { createInterface } from 'node:readline'
import type { CloseEvent, ErrorEvent } from '../client/events.js'
import { WebSocket } from '../client/websocket.js'
import { parseFlags, UsageError } from './args.js'

export const CONNECT_HELP = `Usage: rally connect URL [--protocol P]... [--header K:V]... [--insecure]

Interactive WebSocket client. Each line you type is sent as a text message; messages received
are printed with "<". Commands: /ping [TEXT] (prints the pong and its round trip),
/close [CODE [REASON]].
Exits 0 after a clean close, 1 otherwise.`

export async function runConnect(argv: string[]): Promise<void> {
  const { values, positionals } = parseFlags(
    argv,
    {
      protocol: { type: 'string', multiple: true },
      header: { type: 'string', multiple: true },
      insecure: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    true,
  )
  if (values.help) {
    console.log(CONNECT_HELP)
    return
  }
  if (positionals.length !== 1) throw new UsageError('connect takes exactly one URL')
  const headers: [string, string][] = []
  for (const header of (values.header as string[] | undefined) ?? []) {
    const colon = header.indexOf(':')
    if (colon <= 0) throw new UsageError(`--header must be NAME:VALUE, got "${header}"`)
    headers.push([header.slice(0, colon).trim(), header.slice(colon + 1).trim()])
  }
  let ws: WebSocket
  try {
    ws = new WebSocket(positionals[0]!, (values.protocol as string[] | undefined) ?? [], {
      headers,
      tls: values.insecure ? { rejectUnauthorized: false } : undefined,
    })
  } catch (error) {
    throw new UsageError((error as Error).message)
  }
  ws.binaryType = 'arraybuffer'

  const input = createInterface({ input: process.stdin, terminal: false })
  const pending: string[] = []
  let failed = ''
  /** When each ping still unanswered left, by payload: a pong echoes its ping's payload (RFC 6455 5.5.3). */
  const pingsInFlight = new Map<string, number[]>()

  ws.onopen = () => {
    console.log(`connected${ws.protocol ? ` (protocol: ${ws.protocol})` : ''}`)
    for (const line of pending.splice(0)) handleLine(line)
  }
  ws.onmessage = (event) => {
    const data = (event as MessageEvent).data as string | ArrayBuffer
    if (typeof data === 'string') console.log(`< ${data}`)
    else
      console.log(`< [binary, ${data.byteLength} bytes] ${Buffer.from(data).subarray(0, 64).toString('hex')}`)
  }
  ws.addEventListener('pong', (event) => {
    const payload = ((event as MessageEvent).data as Buffer).toString('utf8')
    const sentAt = pingsInFlight.get(payload)?.shift()
    // A pong nobody here asked for (unsolicited, RFC 6455 5.5.3) has no round trip to show.
    const roundTrip = sentAt === undefined ? '' : ` in ${(performance.now() - sentAt).toFixed(1)} ms`
    console.log(`< pong${payload ? ` ${payload}` : ''}${roundTrip}`)
  })
  ws.onerror = (event) => {
    failed = (event as ErrorEvent).message
  }
  ws.onclose = (event) => {
    const close = event as CloseEvent
    if (failed) console.error(`error: ${failed}`)
    console.log(`closed ${close.code}${close.reason ? ` ${close.reason}` : ''}`)
    input.close()
    process.exit(close.wasClean ? 0 : 1)
  }

  function handleLine(line: string): void {
    if (ws.readyState === WebSocket.CONNECTING) {
      pending.push(line)
      return
    }
    if (line.startsWith('/ping')) {
      const payload = line.slice(5).trim()
      if (Buffer.byteLength(payload) > 125) {
        console.error('error: a ping carries at most 125 bytes (RFC 6455 5.5)')
        return
      }
      const sent = pingsInFlight.get(payload) ?? []
      sent.push(performance.now())
      pingsInFlight.set(payload, sent)
      ws.ping(payload)
    } else if (line.startsWith('/close')) {
      const [code, ...reason] = line.slice(6).trim().split(' ').filter(Boolean)
      try {
        if (code === undefined) ws.close(1000)
        else ws.close(Number(code), reason.join(' '))
      } catch (error) {
        console.error(`error: ${(error as Error).message}`)
      }
    } else {
      ws.send(line)
    }
  }

  input.on('line', handleLine)
  input.on('close', () => {
    // End of input: close politely once everything typed is out.
    if (ws.readyState === WebSocket.OPEN) ws.close(1000)
    else if (ws.readyState === WebSocket.CONNECTING) pending.push('/close')
  })
}
