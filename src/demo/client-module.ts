/**
 * Serves RallyClient to the demo's pages as plain ES modules at /rally/client/index.js (and the
 * files it imports: /rally/client/**.js, /rally/protocol.js). Built (`npm start` runs tsc first),
 * the demo reads dist/realtime; run from the sources (tsx, the tests), it strips the types of
 * src/realtime/*.ts with TypeScript's transpileModule, as tsc's output would — so pages always
 * get the client that matches the server they talk to.
 */
import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import type { Hono } from 'hono'

/** src/realtime or dist/realtime, whichever this module runs from. */
const REALTIME_DIR = fileURLToPath(new URL('../realtime/', import.meta.url))
const FROM_SOURCES = import.meta.url.endsWith('.ts')

/** Only the client's files and the protocol module it shares with the server. */
const SERVED = /^\/rally\/((?:client\/(?:[\w-]+\/)*[\w-]+)|protocol)\.js$/

type Transpile = (source: string) => string
let transpiler: Promise<Transpile> | undefined

function loadTranspiler(): Promise<Transpile> {
  transpiler ??= import('typescript').then(
    ({ default: ts }) =>
      (source: string) =>
        ts.transpileModule(source, {
          compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
        }).outputText,
  )
  return transpiler
}

/** The module's JavaScript, or undefined when there is no such file. */
async function moduleText(name: string): Promise<string | undefined> {
  try {
    if (!FROM_SOURCES) return await readFile(`${REALTIME_DIR}${name}.js`, 'utf8')
    const source = await readFile(`${REALTIME_DIR}${name}.ts`, 'utf8')
    return (await loadTranspiler())(source)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw error
  }
}

export function serveClientModule(app: Hono): void {
  app.get('/rally/*', async (c) => {
    const match = SERVED.exec(c.req.path)
    const text = match === null ? undefined : await moduleText(match[1]!)
    if (text === undefined) return c.text('Not found', 404)
    return c.body(text, 200, {
      'Content-Type': 'text/javascript; charset=utf-8',
      // Pages and server are upgraded together: never a stale client against a newer server.
      'Cache-Control': 'no-cache',
    })
  })
}
