/**
 * The API reference in docs/api (written by `npm run docs:api`, scripts/docs-api.mjs) has a page
 * for every entry point package.json exports, and on it a section for every name that entry
 * point exports, as TypeScript sees them (types included). A new export without a regenerated
 * reference fails here.
 */
import assert from 'node:assert/strict'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import ts from 'typescript'
import { publicEntryPoints } from '../../scripts/docs-api.mjs'
import { ROOT } from './pack.js'

const entries = publicEntryPoints(ROOT)

/** Every name an entry point exports, types and re-exports included. */
function exportedNames(sources: string[]): Map<string, string[]> {
  const program = ts.createProgram(
    sources.map((source) => join(ROOT, source)),
    {
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      strict: true,
      noEmit: true,
    },
  )
  const checker = program.getTypeChecker()
  const names = new Map<string, string[]>()
  for (const source of sources) {
    const file = program.getSourceFile(join(ROOT, source))
    assert.ok(file !== undefined, source)
    const symbol = checker.getSymbolAtLocation(file)
    names.set(source, symbol === undefined ? [] : checker.getExportsOfModule(symbol).map((s) => s.name))
  }
  return names
}

describe('the API reference in docs/api', () => {
  it('covers the package: rallyjs, rallyjs/ws and rallyjs/hono at least', () => {
    const names = entries.map((entry) => entry.name)
    for (const name of ['rallyjs', 'rallyjs/protocol', 'rallyjs/ws', 'rallyjs/hono'])
      assert.ok(names.includes(name), name)
  })

  it('has a page per entry point, listed in docs/api/README.md', () => {
    const index = readFileSync(join(ROOT, 'docs', 'api', 'README.md'), 'utf8')
    for (const entry of entries) {
      assert.ok(
        existsSync(join(ROOT, 'docs', 'api', entry.page)),
        `${entry.page} is missing: npm run docs:api`,
      )
      assert.ok(
        index.includes(`](${entry.page})`),
        `${entry.page} is not in docs/api/README.md: npm run docs:api`,
      )
    }
  })

  it('documents every export of every entry point', () => {
    const names = exportedNames(entries.map((entry) => entry.source))
    const missing: string[] = []
    for (const entry of entries) {
      const page = join(ROOT, 'docs', 'api', entry.page)
      const text = existsSync(page) ? readFileSync(page, 'utf8') : ''
      for (const name of names.get(entry.source) ?? []) {
        if (!text.includes(`### \`${name}\``)) missing.push(`${entry.name}: ${name}`)
      }
    }
    assert.deepEqual(missing, [], 'exports missing from docs/api (run npm run docs:api)')
  })

  it('gives the documented defaults of the server and client options and of the limits', () => {
    const page = readFileSync(join(ROOT, 'docs', 'api', 'rallyjs.md'), 'utf8')
    /** The row of `member` in the section of export `name`. */
    const row = (name: string, member: string): string => {
      const start = page.indexOf(`### \`${name}\``)
      assert.ok(start >= 0, `no section for ${name}`)
      const end = page.indexOf('\n### ', start + 1)
      const section = page.slice(start, end === -1 ? undefined : end)
      return section.split('\n').find((line) => line.startsWith(`| \`${member}\``)) ?? ''
    }
    assert.match(row('ServerOptions', 'maxPayload?'), /\| 16 MiB \|/)
    assert.match(row('ServerOptions', 'closeTimeout?'), /\| 5000 \|/)
    assert.match(row('ServerOptions', 'handshakeTimeout?'), /\| 10000 ms \|/)
    assert.match(row('Limits', 'maxMessageSize'), /\| 16 MiB \|/)
    // The client's options: an alias of a type the root does not export, expanded in place.
    assert.match(row('WebSocketOptions', 'handshakeTimeout?'), /\| 30000 \|/)
    // DEFAULT_LIMITS with its value, not TypeDoc's "...".
    assert.match(page, /### `DEFAULT_LIMITS`[^#]*maxFragments: 4096/)
  })
})
