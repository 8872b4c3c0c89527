/** Types of check-snippets.mjs, for the tests that import it. */
export interface Snippet {
  /** Where the fence opens, `README.md:34`. */
  id: string
  /** A file-name-safe form of the id. */
  name: string
  source: string
  line: number
  language: 'ts' | 'js'
  mode: 'run' | 'compile-only' | 'fragment'
  code: string
}
export function snippetFiles(root: string): string[]
export function extractSnippets(source: string, text: string): Snippet[]
export function collectSnippets(root: string): Snippet[]
