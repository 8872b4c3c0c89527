/**
 * Types as TypeScript users get them from the built package:
 * - a corpus of ordinary `ws` code (test/package/fixtures/ws-corpus, ES modules and CommonJS)
 *   compiles against `ws` + `@types/ws` — the corpus is genuine — and against `rallyjs/ws` with
 *   only the module specifier changed: the drop-in claim, for TypeScript;
 * - browser code for the WHATWG WebSocket (fixtures/dom-client) compiles against `rallyjs` under
 *   --strict: handlers and addEventListener are typed per event as lib.dom.d.ts types them.
 * The fixtures hold `@ts-expect-error` lines too, so types that went `any` would fail the check.
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { type BuiltPackage, buildPackage, makeApp, root, strictTsconfig, typeCheck } from './helpers.js'

const fixtures = join(root, 'test', 'package', 'fixtures')
const corpus = {
  'esm.ts': readFileSync(join(fixtures, 'ws-corpus', 'esm.ts'), 'utf8'),
  'cjs.cts': readFileSync(join(fixtures, 'ws-corpus', 'cjs.cts'), 'utf8'),
}
const nodeTypes = join(root, 'node_modules', '@types', 'node')

/** The corpus with `ws` replaced by `rallyjs/ws` in imports and requires, and nothing else. */
function toRally(source: string): string {
  const changed = source
    .replace(/from 'ws'/g, "from 'rallyjs/ws'")
    .replace(/require\('ws'\)/g, "require('rallyjs/ws')")
  assert.notEqual(changed, source, 'the corpus imports ws')
  return changed
}

let built: BuiltPackage

before(() => {
  built = buildPackage()
})

after(() => built?.remove())

describe('rallyjs/ws types match @types/ws', () => {
  it('the corpus is genuine ws code: it compiles against ws + @types/ws', () => {
    const app = makeApp(
      built.dir,
      'with-types-ws',
      {
        ws: join(root, 'node_modules', 'ws'),
        '@types/ws': join(root, 'node_modules', '@types', 'ws'),
        '@types/node': nodeTypes,
      },
      {
        'package.json': JSON.stringify({ type: 'module' }),
        'tsconfig.json': strictTsconfig(['*.ts', '*.cts']),
        ...corpus,
      },
    )
    const { status, output } = typeCheck(app)
    assert.equal(status, 0, output)
  })

  it('the same corpus compiles against rallyjs/ws with only the import changed (ESM and CommonJS)', () => {
    const app = makeApp(
      built.dir,
      'with-rallyjs',
      { rallyjs: built.pkg, '@types/node': nodeTypes },
      {
        'package.json': JSON.stringify({ type: 'module' }),
        'tsconfig.json': strictTsconfig(['*.ts', '*.cts']),
        'esm.ts': toRally(corpus['esm.ts']),
        'cjs.cts': toRally(corpus['cjs.cts']),
      },
    )
    const { status, output } = typeCheck(app)
    assert.equal(status, 0, output)
  })
  it('…and from a classic CommonJS TypeScript setup (module commonjs, moduleResolution node10)', () => {
    // node10 resolution does not read `exports`: package.json's typesVersions points it at the
    // same declarations (the CommonJS one for rallyjs/ws).
    const legacy = toRally(corpus['cjs.cts']).replace(/require\('node:http'\)/, "require('http')")
    const app = makeApp(
      built.dir,
      'legacy-commonjs',
      { rallyjs: built.pkg, '@types/node': nodeTypes },
      {
        'package.json': JSON.stringify({}),
        'tsconfig.json': JSON.stringify({
          compilerOptions: {
            target: 'ES2022',
            module: 'commonjs',
            moduleResolution: 'node10',
            types: ['node'],
            strict: true,
            noEmit: true,
            skipLibCheck: true,
          },
          include: ['*.ts'],
        }),
        'legacy.ts': legacy,
      },
    )
    const { status, output } = typeCheck(app)
    assert.equal(status, 0, output)
  })
})

describe('the WHATWG client is typed like a browser WebSocket', () => {
  const source = readFileSync(join(fixtures, 'dom-client', 'browser-code.ts'), 'utf8')
  const changed = source.replace("'../../../../src/index.js'", "'rallyjs'")
  const commonJs = readFileSync(join(fixtures, 'dom-client', 'commonjs.cts'), 'utf8')
  const commonJsChanged = commonJs.replace("require('../../../../src/index.js')", "require('rallyjs')")

  for (const [name, lib] of [
    ['Node only (lib ES2023)', ['ES2023']],
    ['with lib DOM as well (the DOM types next to Rally’s)', ['ES2023', 'DOM']],
  ] as const) {
    it(`browser code (onmessage, addEventListener per event) and require('rallyjs') compile under --strict: ${name}`, () => {
      assert.notEqual(changed, source)
      assert.notEqual(commonJsChanged, commonJs)
      const app = makeApp(
        built.dir,
        `browser-code-${lib.length}`,
        { rallyjs: built.pkg, '@types/node': nodeTypes },
        {
          'package.json': JSON.stringify({ type: 'module' }),
          'tsconfig.json': strictTsconfig(['*.ts', '*.cts'], [...lib]),
          'browser-code.ts': changed,
          'commonjs.cts': commonJsChanged,
        },
      )
      const { status, output } = typeCheck(app)
      assert.equal(status, 0, output)
    })
  }
})
