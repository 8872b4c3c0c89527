/**
 * Top self-time functions of a V8 CPU profile (`node --cpu-prof`, or `npm run bench -- --cpu-prof`
 * which profiles every Rally server into bench/results/profiles/).
 *
 *   node --import tsx bench/profile-summary.ts PROFILE.cpuprofile [--top 30] [--filter src/]
 *
 * Prints self time per function (name, file:line), inclusive time per function (with --filter,
 * only matching functions), then self time per file, as shares of the busy time:
 * every sample but "(idle)" (waiting in epoll). "(program)" is native work V8 cannot attribute
 * to a JS function — libuv's reads among it — and stays in the total.
 */
import { readFileSync } from 'node:fs'
import { relative } from 'node:path'
import { fileURLToPath } from 'node:url'

interface CallFrame {
  functionName: string
  url: string
  lineNumber: number
  columnNumber: number
}

interface ProfileNode {
  id: number
  callFrame: CallFrame
  hitCount?: number
  children?: number[]
}

interface Profile {
  nodes: ProfileNode[]
  startTime: number
  endTime: number
  samples: number[]
  timeDeltas: number[]
}

function shortUrl(url: string): string {
  if (url === '') return '(native)'
  try {
    const path = url.startsWith('file://') ? fileURLToPath(url) : url
    return path.startsWith('/') ? relative(process.cwd(), path) : path
  } catch {
    return url
  }
}

function main(): void {
  process.stdout.on('error', () => process.exit(0))
  const args = process.argv.slice(2)
  const file = args.find((arg) => !arg.startsWith('--'))
  if (file === undefined) {
    console.error('usage: bench/profile-summary.ts PROFILE.cpuprofile [--top N] [--filter TEXT]')
    process.exit(2)
  }
  const topIndex = args.indexOf('--top')
  const top = topIndex === -1 ? 30 : Number(args[topIndex + 1])
  const filterIndex = args.indexOf('--filter')
  const filter = filterIndex === -1 ? undefined : args[filterIndex + 1]
  const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile
  const byId = new Map<number, ProfileNode>()
  for (const node of profile.nodes) byId.set(node.id, node)
  // Self time per node from the samples and their time deltas (µs).
  const selfTime = new Map<number, number>()
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i]!
    const delta = profile.timeDeltas[i + 1] ?? 0
    selfTime.set(id, (selfTime.get(id) ?? 0) + delta)
  }
  const perFunction = new Map<string, number>()
  const perFile = new Map<string, number>()
  let total = 0
  let idle = 0
  for (const [id, time] of selfTime) {
    const frame = byId.get(id)!.callFrame
    const name = frame.functionName || '(anonymous)'
    if (name === '(idle)') {
      idle += time
      continue
    }
    total += time
    const where = shortUrl(frame.url)
    const key = `${name}  ${where}${frame.url ? `:${frame.lineNumber + 1}` : ''}`
    perFunction.set(key, (perFunction.get(key) ?? 0) + time)
    perFile.set(where, (perFile.get(where) ?? 0) + time)
  }
  const wall = profile.endTime - profile.startTime
  console.log(
    `${file}: ${(wall / 1e6).toFixed(1)} s profiled, ${(total / 1e6).toFixed(2)} s busy, ${(idle / 1e6).toFixed(2)} s idle`,
  )
  console.log('\nself time by function (share of busy time):')
  const rows = [...perFunction.entries()]
    .filter(([key]) => filter === undefined || key.includes(filter))
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
  for (const [key, time] of rows)
    console.log(
      `  ${((time / total) * 100).toFixed(1).padStart(5)}%  ${(time / 1000).toFixed(0).padStart(6)} ms  ${key}`,
    )
  // Inclusive time: a node's samples plus its descendants', summed per function (a function
  // that appears in its own subtree is counted once, at its outermost frame).
  const inclusive = new Map<string, number>()
  const keyOf = (node: ProfileNode): string => {
    const frame = node.callFrame
    const where = shortUrl(frame.url)
    return `${frame.functionName || '(anonymous)'}  ${where}${frame.url ? `:${frame.lineNumber + 1}` : ''}`
  }
  const walk = (id: number, open: Set<string>): number => {
    const node = byId.get(id)!
    const name = node.callFrame.functionName
    let time = name === '(idle)' ? 0 : (selfTime.get(id) ?? 0)
    const key = keyOf(node)
    const outermost = !open.has(key)
    if (outermost) open.add(key)
    for (const child of node.children ?? []) time += walk(child, open)
    if (outermost) {
      open.delete(key)
      inclusive.set(key, (inclusive.get(key) ?? 0) + time)
    }
    return time
  }
  const childIds = new Set(profile.nodes.flatMap((node) => node.children ?? []))
  for (const node of profile.nodes) if (!childIds.has(node.id)) walk(node.id, new Set())
  console.log('\ntotal (inclusive) time by function (share of busy time):')
  const inclusiveRows = [...inclusive.entries()]
    .filter(([key]) => (filter === undefined ? !key.startsWith('(root)') : key.includes(filter)))
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
  for (const [key, time] of inclusiveRows)
    console.log(
      `  ${((time / total) * 100).toFixed(1).padStart(5)}%  ${(time / 1000).toFixed(0).padStart(6)} ms  ${key}`,
    )
  console.log('\nself time by file:')
  for (const [where, time] of [...perFile.entries()].sort((a, b) => b[1] - a[1]).slice(0, 20))
    console.log(`  ${((time / total) * 100).toFixed(1).padStart(5)}%  ${where}`)
}

main()
