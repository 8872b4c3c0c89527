/**
 * The servers under test and the scenarios, in the order they run: scenarios with the same server
 * arguments follow one another, so that they share servers.
 */
import type { Options } from './cli-options.js'

export type ServerId =
  | 'rally'
  | 'ws'
  | 'ws-native'
  | 'ws-prepared'
  | 'raw'
  | 'bun'
  | 'rally-takeover-9'
  | 'rally-takeover-12'
  | 'rally-takeover-15'
  | 'realtime'
  | 'socketio'
  | 'rt-ws'
  | 'rt-sse'
  | 'rt-lp'
  | 'rt-lp-node'
  | 'raw-lp'
  | 'socketio-lp'
  | 'cluster-1'
  | 'cluster-2'
  | 'cluster-3'
  | 'socketio-cluster'
  | 'h2'
  | 'h1-tls'
export type Kind = 'throughput' | 'latency' | 'memory' | 'recovery'

/**
 * Every scenario id, in the order they run: scenarios with the same server arguments follow one
 * another, so that they share servers.
 */
export const SCENARIO_IDS = [
  'echo-32',
  'echo-16k',
  'rtt-32',
  'broadcast-1k',
  'broadcast-10k',
  'handshake',
  'deflate-1k',
  'deflate-1k-defaults',
  'deflate-1k-takeover',
  'idle-10k',
  'idle-max',
  'deflate-memory',
  'realtime-fanout',
  'realtime-idle',
  'realtime-recovery',
  'transports-sse',
  'transports-lp',
  'transports-latency',
  'cluster-fanout',
  'cluster-scaling',
  'http2-handshake',
  'http2-first-message',
  'http2-echo',
]

/** Names for several scenarios at once in `--only`: those of one issue. */
export const SCENARIO_GROUPS: Record<string, string[]> = {
  transports: ['transports-sse', 'transports-lp', 'transports-latency'],
  cluster: ['cluster-fanout', 'cluster-scaling'],
  http2: ['http2-handshake', 'http2-first-message', 'http2-echo'],
}

export interface ServerSpec {
  label: string
  script: string
  args: string[]
  /** Environment changes: undefined deletes the variable. */
  env: Record<string, string | undefined>
  /** What runs the script: Node with tsx (default), or Bun (a reference, where it can run). */
  runtime?: 'bun'
  /**
   * A cluster: this many processes of the script, each started with `--redis URL` of a
   * redis-server the runner starts for them on a free port (test/support/brokers.ts).
   */
  nodes?: number
  /** Started with `--cert F --key F`: a self-signed certificate the runner makes (test/support/tls.ts). */
  tls?: boolean
}

export const NO_NATIVE = { WS_NO_BUFFER_UTIL: '1', WS_NO_UTF_8_VALIDATE: '1' }
export const NATIVE = { WS_NO_BUFFER_UTIL: undefined, WS_NO_UTF_8_VALIDATE: undefined }

export const SERVERS: Record<ServerId, ServerSpec> = {
  rally: { label: 'Rally', script: 'rally.ts', args: [], env: NO_NATIVE },
  ws: { label: 'ws', script: 'ws.ts', args: [], env: NO_NATIVE },
  'ws-native': { label: 'ws + bufferutil', script: 'ws.ts', args: [], env: NATIVE },
  'ws-prepared': {
    label: 'ws pre-framed',
    script: 'ws.ts',
    args: ['--broadcast', 'prepared'],
    env: NATIVE,
  },
  raw: { label: 'raw node:net', script: 'raw.ts', args: [], env: NO_NATIVE },
  bun: { label: 'Bun', script: 'bun.ts', args: [], env: {}, runtime: 'bun' },
  // Issue 17's memory with context takeover: Rally with `--deflate takeover`; the window size is
  // what the load generator's offer asks for (deflate-memory).
  'rally-takeover-9': {
    label: 'Rally, context takeover, 9-bit windows',
    script: 'rally.ts',
    args: ['--deflate', 'takeover'],
    env: NO_NATIVE,
  },
  'rally-takeover-12': {
    label: 'Rally, context takeover, 12-bit windows',
    script: 'rally.ts',
    args: ['--deflate', 'takeover'],
    env: NO_NATIVE,
  },
  'rally-takeover-15': {
    label: 'Rally, context takeover, 15-bit windows',
    script: 'rally.ts',
    args: ['--deflate', 'takeover'],
    env: NO_NATIVE,
  },
  realtime: { label: 'Rally realtime', script: 'realtime.ts', args: [], env: NO_NATIVE },
  // Socket.IO runs on ws; with bufferutil, its best case.
  socketio: { label: 'Socket.IO 4', script: 'socketio.ts', args: [], env: NATIVE },
  // Issue 13: one realtime server with every transport (bench/servers/transports.ts) on Rally's
  // own port; the id says which transport the load generator's subscribers use.
  'rt-ws': { label: 'Rally realtime, WebSocket', script: 'transports.ts', args: [], env: NO_NATIVE },
  'rt-sse': { label: 'Rally realtime, SSE', script: 'transports.ts', args: [], env: NO_NATIVE },
  'rt-lp': { label: 'Rally realtime, long polling', script: 'transports.ts', args: [], env: NO_NATIVE },
  // The same on a node:http server (an app's Express or Hono server): node:http's request cost.
  'rt-lp-node': {
    label: 'Rally realtime, long polling on node:http',
    script: 'transports.ts',
    args: ['--http', 'node'],
    env: NO_NATIVE,
  },
  // The least a long-polling server on node:net can do (bench/servers/raw-lp.ts): a yardstick.
  'raw-lp': { label: 'raw node:net, long polling', script: 'raw-lp.ts', args: [], env: NO_NATIVE },
  'socketio-lp': {
    label: 'Socket.IO 4, long polling',
    script: 'socketio.ts',
    args: ['--polling'],
    env: NATIVE,
  },
  // Issue 14: nodes on RedisBus (recovery on: the channel keeps history), and Socket.IO on its
  // Redis adapter.
  'cluster-1': {
    label: 'Rally, 1 node',
    script: 'transports.ts',
    args: ['--history', '1000', '--http', 'node'],
    env: NO_NATIVE,
    nodes: 1,
  },
  'cluster-2': {
    label: 'Rally, 2 nodes',
    script: 'transports.ts',
    args: ['--history', '1000', '--http', 'node'],
    env: NO_NATIVE,
    nodes: 2,
  },
  'cluster-3': {
    label: 'Rally, 3 nodes',
    script: 'transports.ts',
    args: ['--history', '1000', '--http', 'node'],
    env: NO_NATIVE,
    nodes: 3,
  },
  'socketio-cluster': {
    label: 'Socket.IO 4 + redis-adapter, 3 nodes',
    script: 'socketio.ts',
    args: [],
    env: NATIVE,
    nodes: 3,
  },
  // Issue 16: one server (bench/servers/http2.ts, node:http2 with allowHTTP1); the id says how the
  // load generator reaches it.
  h2: { label: 'HTTP/2 stream', script: 'http2.ts', args: [], env: NO_NATIVE, tls: true },
  'h1-tls': { label: 'HTTP/1.1 over TLS', script: 'http2.ts', args: [], env: NO_NATIVE, tls: true },
}

export const PEER_IDS = Object.keys(SERVERS).filter((id) => id !== 'rally')

/** Targets from issue 7: Rally/peer on the headline figure (min for higher-is-better, max else). */
export interface Targets {
  vsWs?: number
  vsRaw?: number
  /** Rally/ws on the server's peak RSS in the measured window (a maximum: lower is better). */
  rssVsWs?: number
  /** Issue 17: Rally/Bun's built-in server on the headline figure. */
  vsBun?: number
  /** Issue 12: the real-time layer / Rally's raw WebSocket (topics, or a bare connection). */
  vsRally?: number
  /** Issue 12: the real-time layer / Socket.IO 4. */
  vsSocketIo?: number
  /** Issues 13, 14 and 16: the scenario's subject / this server, on the headline figure. */
  peers?: Partial<Record<ServerId, number>>
}

/** The payloads the runner writes (bench/run.ts): 1 KiB of JSON text and its raw-deflate forms. */
export interface PayloadFiles {
  text: string
  /** Compressed with a 32 KiB window (zlib's default), no context: what every deflate echo sends. */
  deflated: string
  /** The same text compressed with a 2^bits window, for offers that limit the client's window. */
  deflatedWithWindow: Record<number, string>
}

/** deflate-memory's window sizes (server_max_window_bits = client_max_window_bits). */
export const TAKEOVER_WINDOWS = [9, 12, 15] as const

export interface Scenario {
  id: string
  title: string
  kind: Kind
  /** What is counted, singular and plural: message(s), deliveries, handshakes. */
  unit: string
  units: string
  servers: ServerId[]
  serverArgs: string[]
  /** Load generator arguments (port, pid and timing are added). */
  loadgen: string[]
  /** Idle scenarios: connections to hold. */
  connections?: number
  /** Repetitions, when not the default for its kind. */
  reps?: number
  targets?: Targets
  note: string
  /** The server the ratios are of (subject/peer): Rally, unless a real-time scenario says otherwise. */
  subject?: ServerId
  /** Load generator arguments for one server only (the protocol its subscribers speak). */
  loadgenFor?: Partial<Record<ServerId, string[]>>
  /**
   * Servers whose load comes from a Node.js load generator instead of the C one: the script in
   * bench/loadgen/ and its arguments (ports, server pids and timing are added).
   */
  nodeLoadgen?: Partial<Record<ServerId, string[]>>
  /** The issue whose targets it checks, for scenarios after issue 12 (reported in their own table). */
  issue?: number
  /**
   * Memory scenarios without a subject to compare: each server's bytes per connection is reported
   * above this server's, pair by pair (deflate-memory: what context takeover adds to a connection
   * that exchanged the same message uncompressed).
   */
  baseline?: ServerId
  /** What the baseline is, for column headers ("above no permessage-deflate"). */
  baselineName?: string
  /**
   * Seconds measured at the least, whatever --duration says: CPU time is read in clock ticks
   * (10 ms), and a slow load (HTTP polling, a cluster) does too little in --quick's 0.3 s.
   */
  minDuration?: number
}

export function repsOf(scenario: Scenario, options: Options): number {
  return scenario.reps ?? (scenario.kind === 'memory' ? options.memoryReps : options.reps)
}

/**
 * What a run costs besides its measured windows, in seconds, as timed on the 2-core machine the
 * project benchmarks on (every scenario with one repetition and short windows, 5 December):
 * starting a Node server (tsx; started side by side, all on the server's CPU) or Bun; a
 * measurement's fixed part (the load generator's start and exit; a Node load generator's start
 * is most of a second); opening a connection — a plain WebSocket from the C load generator, one
 * that then speaks rally.v1 or Socket.IO and subscribes, an HTTP session from the Node load
 * generator; an idle-memory measurement's waits (two full GCs and the 1 s settle); the recovery
 * round trip.
 */
const COSTS = {
  startNode: 1,
  startBun: 0.3,
  startFirst: 1.5,
  measurement: 0.15,
  nodeLoadgen: 1,
  connectPlain: 0.0002,
  connectProtocol: 0.0008,
  connectHttp: 0.003,
  memory: 1.6,
  recovery: 2,
}

/** Seconds to open this server's connections in this scenario (and close them after). */
function connectSeconds(scenario: Scenario, id: ServerId): number {
  const node = scenario.nodeLoadgen?.[id]
  const args = node ?? [...scenario.loadgen, ...(scenario.loadgenFor?.[id] ?? [])]
  const at = args.indexOf('--conns')
  const conns = at === -1 ? (scenario.connections ?? 1) : Number(args[at + 1])
  if (node !== undefined) return COSTS.nodeLoadgen + conns * COSTS.connectHttp
  return conns * (args.includes('--proto') ? COSTS.connectProtocol : COSTS.connectPlain)
}

/**
 * An estimate of a run's length in seconds, from its scenarios, servers, repetitions and windows:
 * the runner prints it at the start, and the help text states it for a full run.
 */
export function estimateSeconds(list: Scenario[], options: Options): number {
  const startCost = (id: ServerId): number =>
    SERVERS[id].runtime === 'bun' ? COSTS.startBun : COSTS.startNode * (SERVERS[id].nodes ?? 1)
  const started = new Set<string>()
  let total = 0
  for (const scenario of list) {
    const reps = repsOf(scenario, options)
    const window = options.warmup + Math.max(options.duration, scenario.minDuration ?? 0)
    // Servers are started side by side before the scenario, once for every scenario with the same
    // server arguments; the memory scenarios start a fresh one for every measurement.
    let starting = 0
    for (const id of scenario.servers) {
      const key = [id, ...scenario.serverArgs].join(' ')
      if (scenario.kind !== 'memory' && !started.has(key)) starting += startCost(id)
      started.add(key)
      const connect = connectSeconds(scenario, id)
      total +=
        reps *
        (scenario.kind === 'memory'
          ? startCost(id) + COSTS.memory + connect
          : scenario.kind === 'recovery'
            ? COSTS.recovery
            : window + COSTS.measurement + connect)
    }
    if (starting > 0) total += Math.max(COSTS.startFirst, starting)
  }
  return total
}

/** The server a scenario's ratios are taken of. */
export function subjectOf(scenario: Scenario): ServerId {
  return scenario.subject ?? 'rally'
}

export const OFFER_FAIR = 'permessage-deflate; client_no_context_takeover; server_no_context_takeover'
export const OFFER_BROWSER = 'permessage-deflate; client_max_window_bits'
/** An offer that asks for context takeover with windows of 2^bits bytes both ways. */
export function offerWithWindow(bits: number): string {
  return `permessage-deflate; server_max_window_bits=${bits}; client_max_window_bits=${bits}`
}

export function scenarios(options: Options, files: PayloadFiles, maxConns: number): Scenario[] {
  const echoServers: ServerId[] = ['rally', 'ws', 'ws-native', 'raw', 'bun']
  const broadcastServers: ServerId[] = ['rally', 'ws', 'ws-native', 'ws-prepared', 'raw', 'bun']
  const deflateServers: ServerId[] = ['rally', 'ws', 'ws-native', 'bun']
  // The deflate echoes: 1 KiB of JSON compressed on its own, 100 connections × 8 in flight.
  const deflateEcho = (offer: string): string[] => [
    '--mode',
    'echo',
    '--conns',
    '100',
    '--window',
    '8',
    '--text',
    '--deflate-file',
    files.deflated,
    '--offer',
    offer,
  ]
  const idleBig = Math.min(19_900, maxConns)
  const deflateConns = options.quick ? 200 : 500
  // Issue 13's fan-out and issue 14's cluster: smaller in a quick run, where connecting takes the time.
  const fanoutConns = options.quick ? 400 : 1000
  const clusterConns = options.quick ? 2000 : 10_000
  const fanout = (transport: string): string[] => [
    'fanout.ts',
    '--transport',
    transport,
    '--conns',
    String(fanoutConns),
    '--window',
    '8',
  ]
  const oneSubscriber = (transport: string): string[] => [
    'fanout.ts',
    '--transport',
    transport,
    '--conns',
    '1',
    '--window',
    '1',
  ]
  const clusterLoad = ['--mode', 'sink', '--conns', String(clusterConns), '--window', '8', '--text']
  const rallyOnCluster = ['--proto', 'rally', '--sub-path', '/rt']
  // What the HTTP/2 scenarios share: one server reached two ways, and the Node load generator.
  const overHttp2 = {
    servers: ['h2', 'h1-tls'] as ServerId[],
    subject: 'h2' as const,
    issue: 16,
    minDuration: 1.5,
    serverArgs: [],
    loadgen: [],
  }
  const h2 = (mode: string, via: string, extra: string[] = []): string[] => [
    'h2.ts',
    '--mode',
    mode,
    '--via',
    via,
    ...extra,
  ]
  const list: Scenario[] = [
    {
      id: 'echo-32',
      title: 'echo 32 B binary, 100 conns × 16 in flight',
      kind: 'throughput',
      unit: 'msg',
      units: 'msgs',
      servers: echoServers,
      serverArgs: [],
      loadgen: ['--mode', 'echo', '--conns', '100', '--window', '16', '--size', '32'],
      targets: { vsWs: 2, vsRaw: 0.7, vsBun: 0.7 },
      note: 'small messages: per-message overhead',
    },
    {
      id: 'echo-16k',
      title: 'echo 16 KiB binary, 100 conns × 4 in flight',
      kind: 'throughput',
      unit: 'msg',
      units: 'msgs',
      servers: echoServers,
      serverArgs: [],
      loadgen: ['--mode', 'echo', '--conns', '100', '--window', '4', '--size', '16384'],
      targets: { vsWs: 1, vsRaw: 0.8 },
      note: 'large messages: unmasking and copying',
    },
    {
      id: 'rtt-32',
      title: 'round trip 32 B, 1 conn × 1 in flight',
      kind: 'latency',
      unit: 'msg',
      units: 'msgs',
      servers: echoServers,
      serverArgs: [],
      loadgen: ['--mode', 'echo', '--conns', '1', '--window', '1', '--size', '32'],
      targets: { vsWs: 1, vsRaw: 1.05 },
      note: 'latency of an idle server: p50 round trip',
    },
    {
      id: 'deflate-1k',
      title: 'echo 1 KiB JSON text, permessage-deflate without context takeover, 100 conns × 8',
      kind: 'throughput',
      unit: 'msg',
      units: 'msgs',
      servers: deflateServers,
      serverArgs: ['--deflate', 'fair'],
      loadgen: deflateEcho(OFFER_FAIR),
      // The deflate issue: faster than ws + bufferutil at no more memory.
      targets: { vsWs: 1.5, rssVsWs: 1, vsBun: 0.6 },
      note: 'every server with the same parameters: no context takeover either way (the client offers `client_no_context_takeover; server_no_context_takeover`), level 1, threshold 1024 (Bun: its shared compressor and decompressor, which is no context takeover)',
    },
    {
      id: 'deflate-1k-defaults',
      title:
        'echo 1 KiB JSON text, permessage-deflate, each server’s defaults, browser offer (Rally, Bun: no context takeover; ws: context takeover)',
      kind: 'throughput',
      unit: 'msg',
      units: 'msgs',
      servers: deflateServers,
      serverArgs: ['--deflate', 'default'],
      loadgen: deflateEcho(OFFER_BROWSER),
      note: '`perMessageDeflate: true` on every server; the client offers what browsers offer. ws then compresses with context takeover at zlib’s default level; Rally and Bun answer `server_no_context_takeover; client_no_context_takeover` (their defaults). Rally with context takeover: the next scenario',
    },
    {
      id: 'deflate-1k-takeover',
      title:
        'echo 1 KiB JSON text, permessage-deflate with context takeover both ways, browser offer, 100 conns × 8',
      kind: 'throughput',
      unit: 'msg',
      units: 'msgs',
      servers: deflateServers,
      serverArgs: ['--deflate', 'takeover'],
      loadgen: deflateEcho(OFFER_BROWSER),
      targets: { vsBun: 0.6 },
      note: 'every server keeps a compressor and a decompressor per connection (RFC 7692 context takeover, 32 KiB windows): Rally `{ serverNoContextTakeover: false, clientNoContextTakeover: false }` (level 1), ws the same parameters (level 1, memLevel 8), Bun `{ compress: "dedicated", decompress: "dedicated" }`; the client offers what browsers offer and sends each message compressed on its own (valid with takeover too)',
    },
    {
      id: 'broadcast-1k',
      title: 'broadcast 64 B to 1,000 subscribers, 8 broadcasts in flight',
      kind: 'throughput',
      unit: 'delivery',
      units: 'deliveries',
      servers: broadcastServers,
      serverArgs: [],
      loadgen: ['--mode', 'sink', '--conns', '1000', '--window', '8'],
      note: 'one publisher connection; the server fans each message out',
    },
    {
      id: 'broadcast-10k',
      title: 'broadcast 64 B to 10,000 subscribers, 8 broadcasts in flight',
      kind: 'throughput',
      unit: 'delivery',
      units: 'deliveries',
      servers: broadcastServers,
      serverArgs: [],
      loadgen: ['--mode', 'sink', '--conns', '10000', '--window', '8'],
      targets: { vsWs: 3, vsRaw: 0.7, vsBun: 1 },
      note: 'one publisher connection; the server fans each message out',
    },
    {
      id: 'handshake',
      title: 'handshakes, 32 concurrent (connect, upgrade, 101, reset)',
      kind: 'throughput',
      unit: 'handshake',
      units: 'handshakes',
      servers: echoServers,
      serverArgs: [],
      loadgen: ['--mode', 'handshake', '--conns', '32'],
      targets: { vsWs: 1.2, vsRaw: 1, vsBun: 0.6 },
      note: 'the 101 is counted; then the client resets the connection (no TIME_WAIT)',
    },
    {
      id: 'idle-10k',
      title: 'idle memory per connection, 10,000 connections',
      kind: 'memory',
      unit: 'B/conn',
      units: 'B/conn',
      servers: echoServers,
      serverArgs: [],
      loadgen: ['--mode', 'idle'],
      connections: options.quick ? 2_000 : 10_000,
      // Issue 7 asked for ≤ 1.1× raw node:net; issue 17 for ≤ 1.05×, with the defaults (heartbeat on).
      targets: { vsWs: 0.9, vsRaw: 1.05 },
      note: 'server RSS after − before (both after a full GC) ÷ connections',
    },
    {
      id: 'idle-max',
      title: `idle memory per connection, ${idleBig.toLocaleString('en-US')} connections`,
      kind: 'memory',
      unit: 'B/conn',
      units: 'B/conn',
      servers: echoServers,
      serverArgs: [],
      loadgen: ['--mode', 'idle'],
      connections: options.quick ? 4_000 : idleBig,
      // Opening 19,900 connections takes a while, and the figure varies little.
      reps: Math.min(2, options.memoryReps),
      targets: { vsRaw: 1.05 },
      note: 'as many as the per-process open-file cap allows',
    },
    {
      id: 'deflate-memory',
      title: `memory per connection with permessage-deflate context takeover, ${deflateConns.toLocaleString('en-US')} connections, window of 2^9, 2^12 and 2^15 bytes`,
      kind: 'memory',
      unit: 'B/conn',
      units: 'B/conn',
      servers: ['rally', ...TAKEOVER_WINDOWS.map((bits) => `rally-takeover-${bits}` as ServerId)],
      baseline: 'rally',
      baselineName: 'no permessage-deflate',
      serverArgs: [],
      // Each connection sends one 1 KiB JSON message and waits for its echo before the count.
      loadgen: ['--mode', 'idle', '--once', '--text'],
      loadgenFor: {
        rally: ['--payload-file', files.text],
        ...Object.fromEntries(
          TAKEOVER_WINDOWS.map((bits) => [
            `rally-takeover-${bits}`,
            ['--deflate-file', files.deflatedWithWindow[bits]!, '--offer', offerWithWindow(bits)],
          ]),
        ),
      },
      connections: deflateConns,
      // Short (well under a minute in all): the figure varies little between repetitions.
      reps: Math.min(2, options.memoryReps),
      note: 'each connection exchanged one 1 KiB JSON text message, then stays idle: with permessage-deflate and context takeover both ways (Rally `--deflate takeover`: `serverNoContextTakeover: false, clientNoContextTakeover: false`, memLevel 8), the client offering `server_max_window_bits=N; client_max_window_bits=N`, against Rally without permessage-deflate exchanging the same message uncompressed. Server RSS after − before (both after a full GC) ÷ connections; “above no deflate” is the difference, pair by pair: the compressor and decompressor each connection keeps. No target: the trade-off is documented in docs/deflate.md',
    },
    {
      id: 'realtime-fanout',
      title: 'real-time layer: a 64 B publication to 10,000 subscribers, 8 in flight',
      kind: 'throughput',
      unit: 'delivery',
      units: 'deliveries',
      servers: ['realtime', 'rally', 'socketio'],
      subject: 'realtime',
      serverArgs: [],
      loadgen: ['--mode', 'sink', '--conns', '10000', '--window', '8', '--text'],
      loadgenFor: {
        realtime: ['--proto', 'rally'],
        socketio: ['--proto', 'socketio', '--sub-path', '/socket.io/?EIO=4&transport=websocket'],
      },
      targets: { vsRally: 0.6, vsSocketIo: 5 },
      note: 'the same 64 B text from one publisher connection: Rally realtime publishes it with `realtime.publish` to a rally.v1 channel (subscribers connected and subscribed, presence on); Rally raw with `server.publish(topic)`; Socket.IO 4 (websocket transport) with its room broadcast `io.to(room).emit`. A delivery is a publication received by a subscriber; protocol traffic is not counted',
    },
    {
      id: 'realtime-idle',
      title: 'real-time layer: idle memory per subscribed session, 10,000 sessions',
      kind: 'memory',
      unit: 'B/conn',
      units: 'B/conn',
      servers: ['realtime', 'rally'],
      subject: 'realtime',
      serverArgs: [],
      loadgen: ['--mode', 'idle'],
      loadgenFor: { realtime: ['--proto', 'rally', '--path', '/sub'] },
      connections: options.quick ? 2_000 : 10_000,
      targets: { vsRally: 2 },
      note: 'a rally.v1 session connected and subscribed to one channel with presence, against a bare Rally WebSocket connection; server RSS after − before (both after a full GC) ÷ connections',
    },
    {
      id: 'realtime-recovery',
      title: 'real-time layer: recovering 1,000 missed publications',
      kind: 'recovery',
      unit: 'µs',
      units: 'µs',
      servers: ['realtime'],
      subject: 'realtime',
      serverArgs: [],
      loadgen: [],
      note: 'a client subscribed, went away, 1,000 publications (64 B) were made on the channel, and it subscribes again with its last offset and epoch: the time from sending that subscribe to its reply, and the frames it took',
    },
    {
      id: 'transports-sse',
      title: `real-time transports: a 64 B publication to ${fanoutConns.toLocaleString('en-US')} subscribers over SSE, against WebSocket, 8 in flight`,
      kind: 'throughput',
      unit: 'delivery',
      units: 'deliveries',
      servers: ['rt-sse', 'rt-ws'],
      subject: 'rt-sse',
      issue: 13,
      minDuration: 1.5,
      serverArgs: [],
      loadgen: [],
      nodeLoadgen: { 'rt-sse': fanout('sse'), 'rt-ws': fanout('ws') },
      targets: { peers: { 'rt-ws': 0.5 } },
      note: 'the same realtime server (`bench/servers/transports.ts`: `createRealtime`, WebSocket on `/rt`, SSE and long polling under it) publishes each 64 B text from the publisher connection with `realtime.publish`; subscribers read it as SSE events (`GET /rt/sse` over keep-alive HTTP/1.1, a `pong` POST acknowledging every 1,000 events) or as rally.v1 WebSocket messages (Rally’s WHATWG client), both from the same Node load generator, `bench/loadgen/fanout.ts`, so that both transports get publications at the same pace: the server’s cost per delivery depends mostly on how many publications a subscriber gets per turn (one write each), and the C load generator, which paces its publisher differently, gave WebSocket 2.6 times as many deliveries per CPU-second for that reason alone (docs: bench/profile-notes.md). A delivery is a publication received by a subscriber',
    },
    {
      id: 'transports-lp',
      title: `real-time transports: a 64 B publication to ${fanoutConns.toLocaleString('en-US')} subscribers over long polling, against Socket.IO 4's polling, 8 in flight`,
      kind: 'throughput',
      unit: 'delivery',
      units: 'deliveries',
      servers: ['rt-lp', 'rt-lp-node', 'raw-lp', 'socketio-lp'],
      subject: 'rt-lp',
      issue: 13,
      minDuration: 1.5,
      serverArgs: [],
      loadgen: [],
      nodeLoadgen: {
        'rt-lp': fanout('lp'),
        'rt-lp-node': fanout('lp'),
        'raw-lp': fanout('lp'),
        'socketio-lp': fanout('sio-lp'),
      },
      targets: { peers: { 'socketio-lp': 3 } },
      note: "both driven by `bench/loadgen/fanout.ts`: Rally’s `GET /rt/poll` held until there is something to send, polled again at once with the acknowledgement of what came; Socket.IO 4 with `transports: ['polling']` (Engine.IO v4 polling: open, `40`, a `join` event with an ack, then a GET loop; the broadcast is `io.to(room).emit`)",
    },
    {
      id: 'transports-latency',
      title: 'real-time transports: one publication to one subscriber, latency',
      kind: 'latency',
      unit: 'delivery',
      units: 'deliveries',
      servers: ['rt-ws', 'rt-sse', 'rt-lp', 'socketio', 'socketio-lp'],
      subject: 'rt-ws',
      issue: 13,
      minDuration: 1.5,
      serverArgs: [],
      loadgen: [],
      nodeLoadgen: {
        'rt-ws': oneSubscriber('ws'),
        'rt-sse': oneSubscriber('sse'),
        'rt-lp': oneSubscriber('lp'),
        socketio: oneSubscriber('sio-ws'),
        'socketio-lp': oneSubscriber('sio-lp'),
      },
      note: 'one subscriber, one publication in flight, from the publisher’s send to the subscriber’s receipt, both in `bench/loadgen/fanout.ts` (Rally’s WebSocket client for WebSocket, raw sockets for long-polling GETs, `node:http` for the rest); Socket.IO 4 over its websocket and its polling transports, for reference. The ratio column is WebSocket / this: below 1× the transport is slower than WebSocket',
    },
    {
      id: 'cluster-fanout',
      title: `cluster: a 64 B publication to ${clusterConns.toLocaleString('en-US')} subscribers on 3 nodes through Redis, 8 in flight`,
      kind: 'throughput',
      unit: 'delivery',
      units: 'deliveries',
      servers: ['cluster-3', 'socketio-cluster'],
      subject: 'cluster-3',
      issue: 14,
      minDuration: 1.5,
      serverArgs: [],
      loadgen: clusterLoad,
      loadgenFor: {
        'cluster-3': rallyOnCluster,
        'socketio-cluster': ['--proto', 'socketio', '--sub-path', '/socket.io/?EIO=4&transport=websocket'],
      },
      targets: { peers: { 'socketio-cluster': 3 } },
      note: 'three server processes and one redis-server (started on a free port by the runner); subscribers spread over the nodes in turn, the publisher on the first. Rally: `createRealtime` on `RedisBus`, the channel with history (recovery on: offset, stream append and publish in one Redis script); Socket.IO 4 with `@socket.io/redis-adapter` (its recovery cannot run with it). Per server CPU-second: the sum over the node processes (Redis’s own CPU is not counted, for either). Latency: the send time the C load generator writes in each text publication, read back where the payload starts',
    },
    {
      id: 'cluster-scaling',
      title: `cluster: the same load (${clusterConns.toLocaleString('en-US')} subscribers) on 1, 2 and 3 Rally nodes through Redis`,
      kind: 'throughput',
      unit: 'delivery',
      units: 'deliveries',
      servers: ['cluster-1', 'cluster-2', 'cluster-3'],
      subject: 'cluster-3',
      issue: 14,
      minDuration: 1.5,
      serverArgs: [],
      loadgen: clusterLoad,
      loadgenFor: { 'cluster-1': rallyOnCluster, 'cluster-2': rallyOnCluster, 'cluster-3': rallyOnCluster },
      note: 'every node on `RedisBus`, as above, all pinned to the same CPU as a single server would be: the ratio column is 3 nodes / this. On a 2-core machine the nodes cannot run in parallel with the load generator on the other core, so the curve shows what spreading costs per delivery (each node receives every publication from Redis and frames it for its own subscribers), not how far throughput grows with cores',
    },
    {
      id: 'http2-handshake',
      title:
        'HTTP/2: new WebSockets, 32 concurrent, as streams of one HTTP/2 connection vs HTTP/1.1 over TLS',
      kind: 'throughput',
      unit: 'handshake',
      units: 'handshakes',
      ...overHttp2,
      nodeLoadgen: {
        h2: h2('handshake', 'h2', ['--conns', '32']),
        'h1-tls': h2('handshake', 'h1', ['--conns', '32']),
      },
      note: 'one server (`bench/servers/http2.ts`: `node:http2` `createSecureServer` with `allowHTTP1`, `server.attachHttp2`), driven by `bench/loadgen/h2.ts`. HTTP/2: an extended CONNECT (`:protocol websocket`) on a connection opened before the measurement, counted on its `200`, then the stream is ended (not reset: nghttp2 ends a session whose peer resets streams faster than it allows, its Rapid Reset mitigation). HTTP/1.1: a TCP connection, a TLS handshake (resuming the TLS session, as browsers do), the upgrade, counted on its `101`, then reset. p50 and p99 are the handshake’s time',
    },
    {
      id: 'http2-first-message',
      title:
        'HTTP/2: time to the first message of a new WebSocket, on an open HTTP/2 connection vs a new HTTP/1.1 TLS connection',
      kind: 'latency',
      unit: 'socket',
      units: 'sockets',
      ...overHttp2,
      nodeLoadgen: { h2: h2('first', 'h2'), 'h1-tls': h2('first', 'h1') },
      note: 'one socket at a time with Rally’s WebSocket client (`{ http2: session }` on a session opened before the measurement, or a new `wss://` connection): from `new WebSocket()` to the echo of 32 B sent on open',
    },
    {
      id: 'http2-echo',
      title:
        'HTTP/2: echo 32 B binary, 100 WebSockets × 16 in flight, as streams of one HTTP/2 connection vs 100 HTTP/1.1 TLS connections',
      kind: 'throughput',
      unit: 'msg',
      units: 'msgs',
      ...overHttp2,
      nodeLoadgen: {
        h2: h2('echo', 'h2', ['--conns', '100', '--window', '16', '--size', '32']),
        'h1-tls': h2('echo', 'h1', ['--conns', '100', '--window', '16', '--size', '32']),
      },
      note: 'Rally’s WebSocket client, binary messages, every echo timed and replaced at once; all 100 sockets on one HTTP/2 connection (Rally’s default cap of WebSocket streams per connection), or each on its own TLS connection',
    },
  ]
  list.sort((a, b) => SCENARIO_IDS.indexOf(a.id) - SCENARIO_IDS.indexOf(b.id))
  if (options.quick) {
    // Smaller where connecting takes the time; idle-max is left out unless asked for.
    const broadcast = list.find((s) => s.id === 'broadcast-10k')!
    broadcast.title = 'broadcast 64 B to 3,000 subscribers (quick), 8 broadcasts in flight'
    broadcast.loadgen = ['--mode', 'sink', '--conns', '3000', '--window', '8']
    const fanout = list.find((s) => s.id === 'realtime-fanout')!
    fanout.title = 'real-time layer: a 64 B publication to 3,000 subscribers (quick), 8 in flight'
    fanout.loadgen = ['--mode', 'sink', '--conns', '3000', '--window', '8', '--text']
    list.find((s) => s.id === 'realtime-idle')!.title =
      'real-time layer: idle memory per subscribed session, 2,000 sessions (quick)'
    list.find((s) => s.id === 'idle-10k')!.title = 'idle memory per connection, 2,000 connections (quick)'
    if (options.only === undefined)
      list.splice(
        list.findIndex((s) => s.id === 'idle-max'),
        1,
      )
    else
      list.find((s) => s.id === 'idle-max')!.title = 'idle memory per connection, 4,000 connections (quick)'
  }
  let selected = options.only === undefined ? list : list.filter((s) => options.only!.includes(s.id))
  if (options.only !== undefined) {
    const unknown = options.only.filter((id) => !list.some((s) => s.id === id))
    if (unknown.length > 0)
      throw new Error(`unknown scenario ${unknown.join(', ')}; known: ${list.map((s) => s.id).join(', ')}`)
  }
  if (options.servers !== undefined) {
    const wanted = new Set<ServerId>(['rally', ...options.servers])
    // A scenario measured against a baseline has no peers to leave out: all its servers are Rally.
    selected = selected.map((s) => ({
      ...s,
      servers: s.servers.filter((id) => wanted.has(id) || id === subjectOf(s) || s.baseline !== undefined),
    }))
  }
  return selected
}
