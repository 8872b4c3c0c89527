/**
 * The package as a user gets it: `npm pack` of the repository (dist/ as built — run `npm run
 * build` first; `npm test` does), installed with `npm install --offline` into a fresh folder
 * outside the repository. Peers come from the repository's node_modules as file links, so that
 * no network is needed.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

export const ROOT = fileURLToPath(new URL('../..', import.meta.url))
export const run = promisify(execFile)

export interface Installed {
  /** The fresh folder, with package.json (`"type": "module"`) and node_modules. */
  dir: string
  /** The tarball's file name, in `dir`. */
  tarball: string
  /** Every path the tarball holds, relative to the package root (`dist/index.js`). */
  files: string[]
  remove(): void
}

export async function packAndInstall(peers: string[]): Promise<Installed> {
  assert.ok(existsSync(join(ROOT, 'dist', 'index.js')), 'dist/ is missing: run npm run build first')
  const dir = mkdtempSync(join(tmpdir(), 'rally-package-'))
  try {
    const { stdout } = await run('npm', ['pack', '--silent', '--pack-destination', dir], { cwd: ROOT })
    const tarball = stdout.trim().split('\n').at(-1)!
    const listing = await run('tar', ['-tzf', join(dir, tarball)])
    const files = listing.stdout
      .split('\n')
      .filter((line) => line.startsWith('package/') && !line.endsWith('/'))
      .map((line) => line.slice('package/'.length))
    writeFileSync(
      join(dir, 'package.json'),
      JSON.stringify({ name: 'fresh-app', private: true, type: 'module' }),
    )
    await run(
      'npm',
      [
        'install',
        '--offline',
        '--no-audit',
        '--no-fund',
        '--no-package-lock',
        `./${tarball}`,
        ...peers.map((name) => join(ROOT, 'node_modules', name)),
      ],
      { cwd: dir },
    )
    return {
      dir,
      tarball,
      files,
      remove() {
        if (process.env.KEEP_PACKAGE_DIR === undefined) rmSync(dir, { recursive: true, force: true })
      },
    }
  } catch (error) {
    rmSync(dir, { recursive: true, force: true })
    throw error
  }
}
