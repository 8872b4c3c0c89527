/**
 * Every TypeScript/JavaScript block of README.md and docs/*.md, as a new user meets it: in a fresh
 * folder outside the repository, with the package installed from the tarball `npm pack` makes of
 * dist/ (run `npm run build` first; `npm test` does), offline. Peers (hono, @hono/node-server,
 * @types/node, typescript) are installed from the repository's node_modules as file links, so no
 * network is needed.
 *
 * Each snippet is type-checked under `strict` as written, as an ES module (`.ts` in a
 * `"type": "module"` package, `module: nodenext`), again as a bundler's project has it (DOM lib,
 * `moduleResolution: bundler`), and as CommonJS (`.cts`; code with a top-level await is wrapped
 * in an async function there, since CommonJS has none). Complete
 * programs (no `<!-- snippet: … -->` mark, see scripts/check-snippets.mjs) are then run, as the
 * ES module and as the CommonJS file tsc emitted (plain JavaScript, types erased): a preload turns
 * every `listen` onto a free port of 127.0.0.1 and reports it, and a WebSocket client connects
 * (to /realtime when the snippet serves that path, else /), sends "hello" and must get a message
 * back before the server is stopped. A program that does not listen must exit 0 by itself.
 */
import assert from 'node:assert/strict'
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import ts from 'typescript'
import { collectSnippets } from '../../scripts/check-snippets.mjs'
import { WebSocket } from '../../src/index.js'
import { type Installed, packAndInstall, ROOT, run } from './pack.js'

const PEERS = [
  'hono',
  '@hono/node-server',
  'redis',
  '@nats-io/transport-node',
  '@nats-io/jetstream',
  '@nats-io/kv',
  'zod',
  '@types/node',
  'typescript',
]
/** The probe's credentials, which README's server example accepts. */
const PROBE_HEADERS = { Authorization: 'Bearer secret-token' }

/** Lists a snippet with line numbers, for failure messages. */
function numbered(code: string): string {
  return code
    .split('\n')
    .map((line, index) => `${String(index + 1).padStart(3)} | ${line}`)
    .join('\n')
}

/** True when `await` (or `for await`) appears outside every function of the file. */
function hasTopLevelAwait(source: ts.SourceFile): boolean {
  let found = false
  const visit = (node: ts.Node): void => {
    if (found || ts.isFunctionLike(node) || ts.isClassLike(node)) return
    if (ts.isAwaitExpression(node) || (ts.isForOfStatement(node) && node.awaitModifier)) {
      found = true
      return
    }
    ts.forEachChild(node, visit)
  }
  ts.forEachChild(source, visit)
  return found
}

/**
 * The snippet as a CommonJS module: unchanged, unless it awaits at top level, which CommonJS
 * cannot; then its statements after the imports run in an async function.
 */
function asCommonJs(code: string): string {
  const source = ts.createSourceFile('snippet.ts', code, ts.ScriptTarget.Latest, true)
  if (!hasTopLevelAwait(source)) return code
  const body = source.statements.find((statement) => !ts.isImportDeclaration(statement))
  if (body === undefined) return code
  const start = body.getFullStart()
  return `${code.slice(0, start)}\nvoid (async () => {${code.slice(start)}})()\n`
}

/** tsc's diagnostics grouped by file (`src/x.ts`), one string per diagnostic. */
function diagnosticsByFile(output: string): Map<string, string[]> {
  const byFile = new Map<string, string[]>()
  let current: string[] | undefined
  for (const line of output.split('\n')) {
    const match = /^(src\/[^(]+)\(\d+,\d+\): error /.exec(line)
    if (match !== null) {
      current = byFile.get(match[1]!) ?? []
      byFile.set(match[1]!, current)
      current.push(line)
    } else if (line.startsWith(' ') && current !== undefined) {
      current[current.length - 1] += `\n${line}`
    } else if (line.trim() !== '') {
      // A diagnostic without a file (a broken tsconfig, a missing lib): every file fails with it.
      const all = byFile.get('*') ?? []
      all.push(line)
      byFile.set('*', all)
      current = all
    }
  }
  return byFile
}

/** tsc over a config in the folder; its output, whatever the exit code. */
async function typeCheck(dir: string, config: string): Promise<Map<string, string[]>> {
  const tsc = join(dir, 'node_modules', 'typescript', 'bin', 'tsc')
  try {
    await run(process.execPath, [tsc, '-p', config, '--pretty', 'false'], { cwd: dir })
    return new Map()
  } catch (error) {
    const { stdout, stderr } = error as { stdout: string; stderr: string }
    return diagnosticsByFile(`${stdout}\n${stderr}`)
  }
}

/** Reports every listen of the child (on a free port of 127.0.0.1 instead of the snippet's). */
const PRELOAD = `'use strict'
const net = require('node:net')
const listen = net.Server.prototype.listen
net.Server.prototype.listen = function (...args) {
  // The snippet's fixed port (3000, 8080) could be taken: the test picks a free one.
  const callback = typeof args[args.length - 1] === 'function' ? args.pop() : undefined
  const options = typeof args[0] === 'object' && args[0] !== null ? args[0] : {}
  this.once('listening', () => process.send?.({ listening: this.address().port }))
  return listen.call(this, { ...options, port: 0, host: '127.0.0.1' }, callback)
}
`

interface Ran {
  port?: number
  exit?: { code: number | null; signal: NodeJS.Signals | null }
  stderr: string
}

/** Starts a compiled snippet; resolves once it listens or exits. */
function start(dir: string, file: string): { child: ChildProcess; ran: Promise<Ran>; exited: Promise<Ran> } {
  const child = spawn(process.execPath, ['--require', './preload.cjs', file], {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  })
  const result: Ran = { stderr: '' }
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    result.stderr += chunk
  })
  child.stdout!.resume()
  const exited = new Promise<Ran>((resolve) => {
    child.once('exit', (code, signal) => {
      result.exit = { code, signal }
      resolve(result)
    })
  })
  const ran = new Promise<Ran>((resolve) => {
    child.once('message', (message: { listening?: number }) => {
      result.port ??= message.listening
      resolve(result)
    })
    void exited.then(resolve)
  })
  return { child, ran, exited }
}

function within<T>(promise: Promise<T>, ms: number, label: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${label}: nothing after ${ms} ms`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

/**
 * Connects, sends "hello", and resolves with the server's answer: its first message, or the code
 * of a close it starts (a protocol server may answer a stranger's "hello" that way). A refused
 * upgrade or a dropped connection (1006) is no answer.
 */
async function probe(port: number, path: string, protocols: string[]): Promise<string> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`, protocols, { headers: PROBE_HEADERS })
  try {
    return await new Promise<string>((resolve, reject) => {
      ws.addEventListener('open', () => ws.send('hello'))
      ws.addEventListener('message', (event) => resolve(`message ${String(event.data)}`))
      ws.addEventListener('close', (event) => {
        if (event.code === 1006) reject(new Error(`no answer: connection failed or dropped (1006)`))
        else resolve(`close ${event.code}`)
      })
    })
  } finally {
    ws.close()
  }
}

/** Where a snippet serves WebSockets: its `path: '/x'` option or first `.get('/x'` route, else /. */
function servedPath(code: string): string {
  return /(?:\bpath:\s*|\.get\(\s*)'(\/[^']*)'/.exec(code)?.[1] ?? '/'
}

const snippets = collectSnippets(ROOT).filter((snippet) => snippet.mode !== 'fragment')

describe('README and docs snippets, installed from the packed tarball in a fresh folder', () => {
  let installed: Installed | undefined
  let dir: string
  const checks = new Map<string, Map<string, string[]>>()

  before(async () => {
    installed = await packAndInstall(PEERS)
    dir = installed.dir
    mkdirSync(join(dir, 'src'))
    for (const snippet of snippets) {
      if (snippet.language === 'ts') {
        writeFileSync(join(dir, 'src', `${snippet.name}.ts`), snippet.code)
        writeFileSync(join(dir, 'src', `${snippet.name}.cts`), asCommonJs(snippet.code))
      } else {
        const commonJs = /\brequire\(/.test(snippet.code)
        mkdirSync(join(dir, 'out'), { recursive: true })
        writeFileSync(join(dir, 'out', `${snippet.name}.${commonJs ? 'cjs' : 'js'}`), snippet.code)
      }
    }
    const compilerOptions = {
      strict: true,
      module: 'nodenext',
      target: 'es2022',
      lib: ['es2023'],
      // As `tsc --init` and Hono's Node template have it (Hono's websocket types name DOM globals,
      // which a project without the DOM lib lacks); checking @types/node's declarations too
      // would triple the time and test nothing of Rally's.
      skipLibCheck: true,
      moduleDetection: 'force',
      rootDir: 'src',
      outDir: 'out',
    }
    writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions, include: ['src'] }))
    writeFileSync(
      join(dir, 'tsconfig.dom.json'),
      // As a bundler's template has it (Vite's): DOM lib, ESNext modules, bundler resolution.
      JSON.stringify({
        extends: './tsconfig.json',
        compilerOptions: {
          lib: ['es2023', 'dom', 'dom.iterable'],
          module: 'esnext',
          moduleResolution: 'bundler',
          noEmit: true,
        },
        include: ['src/*.ts'],
      }),
    )
    writeFileSync(join(dir, 'preload.cjs'), PRELOAD)
    const [node, dom] = await Promise.all([
      typeCheck(dir, 'tsconfig.json'),
      typeCheck(dir, 'tsconfig.dom.json'),
    ])
    checks.set('node', node)
    checks.set('dom', dom)
  })

  after(() => installed?.remove())

  it('finds the snippets of README.md and docs/', () => {
    assert.ok(snippets.some((snippet) => snippet.source === 'README.md'))
    assert.ok(snippets.some((snippet) => snippet.source === 'docs/hono.md'))
  })

  for (const snippet of snippets) {
    describe(`${snippet.id} (${snippet.mode})`, () => {
      if (snippet.language === 'ts') {
        const cases = [
          ['as an ES module', 'node', `src/${snippet.name}.ts`],
          ['with the DOM lib and bundler resolution', 'dom', `src/${snippet.name}.ts`],
          ['as CommonJS', 'node', `src/${snippet.name}.cts`],
        ] as const
        for (const [label, config, file] of cases) {
          it(`type-checks under --strict ${label}`, () => {
            const errors = [...(checks.get(config)?.get('*') ?? []), ...(checks.get(config)?.get(file) ?? [])]
            assert.deepEqual(
              errors,
              [],
              `${snippet.id} ${label} (${file}):\n${errors.join('\n')}\n\n${numbered(snippet.code)}`,
            )
          })
        }
      } else if (snippet.mode !== 'run') {
        // JavaScript that cannot run here (browser code, a remote server): its syntax at least.
        it('is valid JavaScript (node --check)', async () => {
          const file = `out/${snippet.name}.${/\brequire\(/.test(snippet.code) ? 'cjs' : 'js'}`
          await run(process.execPath, ['--check', file], { cwd: dir })
        })
      }
      if (snippet.mode !== 'run') return
      const path = servedPath(snippet.code)
      // The realtime layer speaks its own subprotocol; other servers ignore or accept the offer.
      const protocols = snippet.code.includes("'rallyjs/realtime'") ? ['rally.v1'] : []
      const files =
        snippet.language === 'ts'
          ? ([
              ['as JavaScript, an ES module', `out/${snippet.name}.js`],
              ['as JavaScript, CommonJS', `out/${snippet.name}.cjs`],
            ] as const)
          : ([
              ['as written', `out/${snippet.name}.${/\brequire\(/.test(snippet.code) ? 'cjs' : 'js'}`],
            ] as const)
      for (const [label, file] of files) {
        it(`runs ${label}, and a client gets an answer on ${path}`, async () => {
          const { child, ran, exited } = start(dir, file)
          try {
            const started = await within(ran, 15_000, `${snippet.id} ${label}: listening or exit`)
            if (started.port === undefined) {
              assert.deepEqual(started.exit, { code: 0, signal: null }, `${snippet.id}:\n${started.stderr}`)
              return
            }
            const answer = await within(
              probe(started.port, path, protocols),
              10_000,
              `${snippet.id} ${label}: answer`,
            )
            assert.ok(answer.length > 0)
          } finally {
            if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
            const { exit, stderr } = await within(exited, 10_000, `${snippet.id} ${label}: exit`)
            assert.ok(
              exit?.signal === 'SIGTERM' || exit?.code === 0,
              `${snippet.id} ${label} ended with ${JSON.stringify(exit)}:\n${stderr}`,
            )
          }
        })
      }
    })
  }
})
