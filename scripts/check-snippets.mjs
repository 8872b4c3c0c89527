#!/usr/bin/env node
// Finds the TypeScript and JavaScript code blocks of README.md and docs/*.md, the snippets that
// test/package/snippets.test.ts type-checks and runs against the packed tarball.
//
// A block is a complete program unless an HTML comment on the line before its fence says
// otherwise (keep such marks rare):
//   <!-- snippet: compile-only -->  complete and type-checked, but not run (it needs a remote
//                                   server, a certificate…)
//   <!-- snippet: fragment -->      not a program at all; skipped
//
// Usage: node scripts/check-snippets.mjs   lists the snippets found, with their mode.
import { readdirSync, readFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

const LANGUAGES = new Map([
  ['ts', 'ts'],
  ['typescript', 'ts'],
  ['js', 'js'],
  ['javascript', 'js'],
])
const MODES = new Set(['run', 'compile-only', 'fragment'])
const MARK = /^<!--\s*snippet:\s*([\w-]+)\s*-->$/

/**
 * @typedef {{ id: string, name: string, source: string, line: number, language: 'ts' | 'js',
 *   mode: 'run' | 'compile-only' | 'fragment', code: string }} Snippet
 */

/** The markdown files whose snippets are checked: README.md and docs/*.md (not docs/api). */
export function snippetFiles(root) {
  const docs = readdirSync(join(root, 'docs'))
    .filter((name) => name.endsWith('.md'))
    .sort()
    .map((name) => join(root, 'docs', name))
  return [join(root, 'README.md'), ...docs]
}

/**
 * The snippets of one markdown text. `source` names the file in reports; each snippet's `id`
 * (`README.md:34`) is where its fence opens, and `name` is a file-name-safe form of it.
 * @returns {Snippet[]}
 */
export function extractSnippets(source, text) {
  const lines = text.split('\n')
  /** @type {Snippet[]} */
  const snippets = []
  for (let i = 0; i < lines.length; i++) {
    const fence = /^(`{3,}|~{3,})\s*([\w-]*)/.exec(lines[i])
    if (fence === null) continue
    const [, marker, info] = fence
    let end = i + 1
    while (end < lines.length && !lines[end].startsWith(marker)) end++
    if (end === lines.length) throw new Error(`${source}:${i + 1}: code block never closed`)
    const language = LANGUAGES.get(info.toLowerCase())
    if (language !== undefined) {
      let previous = i - 1
      while (previous >= 0 && lines[previous].trim() === '') previous--
      const mark = previous >= 0 ? MARK.exec(lines[previous].trim()) : null
      const mode = mark === null ? 'run' : mark[1]
      if (!MODES.has(mode)) throw new Error(`${source}:${previous + 1}: unknown snippet mark "${mode}"`)
      const line = i + 1
      snippets.push({
        id: `${source}:${line}`,
        name: `${source.replace(/\.md$/, '').replace(/[^\w]+/g, '_')}_L${line}`.toLowerCase(),
        source,
        line,
        language,
        mode,
        code: `${lines.slice(i + 1, end).join('\n')}\n`,
      })
    }
    i = end
  }
  return snippets
}

/** Every snippet of README.md and docs/*.md, in file order. */
export function collectSnippets(root) {
  return snippetFiles(root).flatMap((file) =>
    extractSnippets(relative(root, file), readFileSync(file, 'utf8')),
  )
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const root = fileURLToPath(new URL('..', import.meta.url))
  for (const snippet of collectSnippets(root))
    console.log(`${snippet.id}\t${snippet.language}\t${snippet.mode}`)
}
