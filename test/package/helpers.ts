/**
 * Helpers for tests of the package as users get it: this repository built into a temporary
 * `rallyjs` package (package.json + dist, as `npm pack` ships them), and small apps next to it
 * whose node_modules link to it.
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

export const root = fileURLToPath(new URL('../..', import.meta.url))
export const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc')

export interface BuiltPackage {
  /** A temporary directory holding the package and the apps. */
  dir: string
  /** The package's folder (package.json + dist). */
  pkg: string
  remove(): void
}

/**
 * Builds the sources into a fresh package folder. Errors in files other tests own do not stop the
 * emit (tsc emits anyway); what the tests need is checked to exist.
 */
export function buildPackage(): BuiltPackage {
  const dir = mkdtempSync(join(tmpdir(), 'rally-package-'))
  const pkg = join(dir, 'rallyjs')
  mkdirSync(pkg)
  copyFileSync(join(root, 'package.json'), join(pkg, 'package.json'))
  spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json'), '--outDir', join(pkg, 'dist')], {
    cwd: root,
    encoding: 'utf8',
  })
  for (const file of [
    'index.js',
    'index.d.ts',
    'adapters/ws/index.js',
    'adapters/ws/index.cjs',
    'adapters/ws/index.d.cts',
  ])
    assert.ok(existsSync(join(pkg, 'dist', file)), `the build produced dist/${file}`)
  return { dir, pkg, remove: () => rmSync(dir, { recursive: true, force: true }) }
}

/**
 * Makes an app folder: `links` become node_modules entries (name → folder the symlink points to),
 * `files` are written (name → text).
 */
export function makeApp(
  parent: string,
  name: string,
  links: Record<string, string>,
  files: Record<string, string>,
): string {
  const app = join(parent, name)
  for (const [module, target] of Object.entries(links)) {
    const link = join(app, 'node_modules', module)
    mkdirSync(dirname(link), { recursive: true })
    symlinkSync(target, link, 'dir')
  }
  for (const [file, text] of Object.entries(files)) {
    mkdirSync(dirname(join(app, file)), { recursive: true })
    writeFileSync(join(app, file), text)
  }
  return app
}

/**
 * A strict tsconfig for an ES-module app on Node 20. Declaration files are not checked (that would
 * re-check all of @types/node on every run); the program's use of them is.
 */
export function strictTsconfig(include: string[], lib = ['ES2023']): string {
  return JSON.stringify({
    compilerOptions: {
      target: 'ES2022',
      module: 'NodeNext',
      moduleResolution: 'NodeNext',
      lib,
      types: ['node'],
      strict: true,
      noEmit: true,
      skipLibCheck: true,
    },
    include,
  })
}

/** Runs tsc on a project; returns its exit status and output. */
export function typeCheck(project: string): { status: number | null; output: string } {
  const result = spawnSync(process.execPath, [tsc, '-p', project], { encoding: 'utf8' })
  return { status: result.status, output: `${result.stdout}${result.stderr}` }
}

/** Runs a script with node in `cwd`; returns status, stdout and stderr. */
export function runNode(
  cwd: string,
  script: string,
  timeout = 30_000,
): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [script], { cwd, encoding: 'utf8', timeout })
  return { status: result.status, stdout: result.stdout, stderr: result.stderr }
}
