/** Types of docs-api.mjs, for the test that imports it. */
export interface EntryPoint {
  /** The import specifier, `rallyjs/ws`. */
  name: string
  /** Its source, `src/adapters/ws/index.ts`. */
  source: string
  /** Its page in docs/api, `rallyjs-ws.md`. */
  page: string
}
export function publicEntryPoints(root?: string): EntryPoint[]
export function generate(out?: string): Promise<EntryPoint[]>
