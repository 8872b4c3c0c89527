/**
 * The packed tarball installed in a fresh folder (see pack.ts): every subpath export points to
 * files the package ships, every source map to sources it ships, the `rally` bin runs, the root
 * export loads from CommonJS, and rallyjs/hono uses the app's own copy of Hono.
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { dirname, join, posix } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { type Installed, packAndInstall, ROOT, run } from './pack.js'

type Target = string | { [condition: string]: Target }

interface Manifest {
  version: string
  bin: Record<string, string>
  exports: Record<string, Target>
  typesVersions?: Record<string, Record<string, string[]>>
}

const manifest = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as Manifest

describe('the packed tarball, installed in a fresh folder', () => {
  let installed: Installed
  let shipped: Set<string>

  before(async () => {
    installed = await packAndInstall(['hono', '@hono/node-server'])
    shipped = new Set(installed.files)
  })

  after(() => installed?.remove())

  it('ships every file that package.json exports, maps in typesVersions and names as bin', () => {
    // Conditions nest ({ require: { types, default } }): every leaf is a file.
    const leaves = (target: Target): string[] =>
      typeof target === 'string' ? [target] : Object.values(target).flatMap(leaves)
    const targets = Object.values(manifest.exports).flatMap(leaves)
    targets.push(...Object.values(manifest.bin))
    for (const map of Object.values(manifest.typesVersions ?? {}))
      targets.push(
        ...Object.values(map)
          .flat()
          .filter((path) => !path.includes('*')),
      )
    const missing = targets.map((target) => posix.normalize(target)).filter((path) => !shipped.has(path))
    assert.deepEqual(missing, [])
  })

  it('ships the sources every source map points to', () => {
    const maps = installed.files.filter((path) => path.endsWith('.map'))
    assert.ok(maps.length > 0, 'no source maps in the tarball')
    const missing: string[] = []
    for (const map of maps) {
      const { sources } = JSON.parse(
        readFileSync(join(installed.dir, 'node_modules', 'rallyjs', map), 'utf8'),
      ) as { sources: string[] }
      for (const source of sources) {
        const path = posix.normalize(posix.join(posix.dirname(map), source))
        if (!shipped.has(path)) missing.push(`${map} -> ${path}`)
      }
    }
    assert.deepEqual(missing, [])
  })

  it('runs the rally bin (npx rally --version)', async () => {
    const { stdout } = await run(join(installed.dir, 'node_modules', '.bin', 'rally'), ['--version'], {
      cwd: installed.dir,
    })
    assert.equal(stdout, `${manifest.version}\n`)
  })

  it('loads the root export from CommonJS', async () => {
    const script =
      "const rally = require('rallyjs'); process.stdout.write([typeof rally.createServer, typeof rally.WebSocket].join())"
    const { stdout } = await run(process.execPath, ['-e', script], { cwd: installed.dir })
    assert.equal(stdout, 'function,function')
  })

  it("resolves rallyjs/hono's hono to the app's Hono, one copy", async () => {
    // Resolved from inside the installed package, as its own imports are, and from the app.
    const script = `
      const { createRequire } = require('node:module')
      const { realpathSync } = require('node:fs')
      const fromAdapter = createRequire(require.resolve('rallyjs/package.json')).resolve('hono')
      const fromApp = require.resolve('hono')
      process.stdout.write(JSON.stringify([realpathSync(fromAdapter), realpathSync(fromApp)]))`
    const { stdout } = await run(process.execPath, ['-e', script], { cwd: installed.dir })
    const [fromAdapter, fromApp] = JSON.parse(stdout) as [string, string]
    assert.equal(fromAdapter, fromApp)
    assert.ok(!dirname(fromAdapter).includes(join('rallyjs', 'node_modules')))
  })
})
