#!/usr/bin/env node
// Writes the API reference, docs/api/*.md, from the TSDoc comments of every public entry point
// (the subpaths package.json exports), through TypeDoc's converter: one markdown file per
// entry point, each export with its signature or members, their types, their defaults and their
// documentation. TypeDoc's own markdown output needs a plugin this repository does not carry, so
// this script renders the converted project itself.
//
// Usage: npm run docs:api   (node scripts/docs-api.mjs [--out DIR])
//
// Defaults come from an `@defaultValue` (or `@default`) tag, a parameter's or property's
// initializer, the clause of the comment that starts with "Default" ("Default: 16 MiB."), or a
// value marked "(default)".
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Application, Comment, Converter, ReflectionKind } from 'typedoc'
import ts from 'typescript'

const ROOT = fileURLToPath(new URL('..', import.meta.url))

/** `rallyjs/ws` → `src/adapters/ws/index.ts`, for every export of package.json with a source. */
export function publicEntryPoints(root = ROOT) {
  const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
  const entries = []
  for (const [subpath, target] of Object.entries(manifest.exports)) {
    const file = typeof target === 'string' ? target : target.default
    if (!file.startsWith('./dist/') || !file.endsWith('.js')) continue
    const source = `src/${file.slice('./dist/'.length, -'.js'.length)}.ts`
    if (!existsSync(join(root, source))) continue
    const name = subpath === '.' ? manifest.name : `${manifest.name}/${subpath.slice(2)}`
    entries.push({ name, source, page: `${name.replace(/\//g, '-')}.md` })
  }
  return entries
}

/** TypeDoc names a module after its path below the entry points' common folder, without /index. */
function typedocModuleName(source) {
  const path = source.slice('src/'.length, -'.ts'.length).replace(/(^|\/)index$/, '')
  return path === '' ? 'index' : path
}

/**
 * What TypeDoc's model leaves out, read from the TypeScript checker while it converts: the
 * members of a type an exported alias names when that type itself is not exported (the client's
 * `WebSocketOptions = ClientOptions`), and the full initializer of a constant (DEFAULT_LIMITS,
 * which TypeDoc shortens to "..."). By reflection id.
 */
const extras = new Map()

function recordExtras(context, reflection) {
  const symbol = context.getSymbolFromReflection(reflection)
  const declaration = symbol?.valueDeclaration ?? symbol?.declarations?.[0]
  if (symbol === undefined || declaration === undefined) return
  const checker = context.checker
  if (reflection.kindOf(ReflectionKind.Variable)) {
    if (ts.isVariableDeclaration(declaration) && declaration.initializer !== undefined)
      extras.set(reflection.id, { initializer: declaration.initializer.getText() })
    return
  }
  if (!ts.isTypeAliasDeclaration(declaration) || !ts.isTypeReferenceNode(declaration.type)) return
  const type = checker.getDeclaredTypeOfSymbol(symbol)
  if (type.isUnion() || !(type.flags & ts.TypeFlags.Object)) return
  // Rally's own members: not those inherited from Node's or the DOM's types (EventEmitter...).
  const own = checker
    .getPropertiesOfType(type)
    .filter((property) =>
      (property.declarations ?? []).some((node) => !node.getSourceFile().fileName.includes('/node_modules/')),
    )
  const members = own.map((property) => ({
    name: property.name,
    optional: (property.flags & ts.SymbolFlags.Optional) !== 0,
    // An optional member's "| undefined" is what the "?" already says.
    type: checker
      .typeToString(checker.getTypeOfSymbolAtLocation(property, declaration))
      .replace(/ \| undefined$/, ''),
    description: ts.displayPartsToString(property.getDocumentationComment(checker)).trim(),
  }))
  extras.set(reflection.id, { members })
}

/** The members of an alias's target that is not in the reference itself, as a table. */
function aliasedMembersTable(reflection) {
  const members = extras.get(reflection.id)?.members
  if (members === undefined || members.length === 0 || reflection.type?.reflection !== undefined) return ''
  const rows = members.map((member) => {
    const fallback = defaultInText(member.description)
    return `| \`${member.name}${member.optional ? '?' : ''}\` | \`${cell(member.type)}\` | ${cell(fallback)} | ${cell(member.description)} |`
  })
  return `| member | type | default | description |\n| --- | --- | --- | --- |\n${rows.join('\n')}\n`
}

const KIND_ORDER = [
  [ReflectionKind.Function, 'Functions'],
  [ReflectionKind.Class, 'Classes'],
  [ReflectionKind.Interface, 'Interfaces'],
  [ReflectionKind.TypeAlias, 'Types'],
  [ReflectionKind.Variable, 'Constants'],
  [ReflectionKind.Enum, 'Enums'],
  [ReflectionKind.Namespace, 'Namespaces'],
  [ReflectionKind.Reference, 'Re-exports'],
]

function text(parts) {
  return parts === undefined ? '' : Comment.combineDisplayParts(parts).trim()
}

function summary(reflection) {
  const comment =
    reflection.comment ?? reflection.signatures?.[0]?.comment ?? reflection.getSignature?.comment
  return comment === undefined ? '' : text(comment.summary)
}

/** The documented default of a member, or ''. */
function defaultOf(reflection) {
  const comment = reflection.comment ?? reflection.getSignature?.comment
  const tag = comment?.blockTags.find((block) => block.tag === '@defaultValue' || block.tag === '@default')
  if (tag !== undefined) return text(tag.content).replace(/^```\w*\n?|\n?```$/g, '')
  if (reflection.defaultValue !== undefined && reflection.defaultValue !== '...')
    return `\`${reflection.defaultValue}\``
  return defaultInText(summary(reflection))
}

/** The clause of a description that starts with "Default", or the value it marks "(default)". */
function defaultInText(description) {
  const sentence = /(?:^|[.(;,]\s*)[Dd]efaults?(?: to|:)?\s+((?:[^.;]|\.\d)+)/.exec(description)
  if (sentence !== null) return sentence[1].trim()
  // "'drop' (default) — …"
  const marked = /(\S+) \(default\)/.exec(description)
  return marked === null ? '' : marked[1]
}

function cell(value) {
  return value.replace(/\|/g, '\\|').replace(/\s*\n\s*/g, ' ')
}

function signatureLine(name, signature) {
  const parameters = (signature.parameters ?? []).map((parameter) => {
    const rest = parameter.flags.isRest ? '...' : ''
    const optional = parameter.flags.isOptional || parameter.defaultValue !== undefined ? '?' : ''
    return `${rest}${parameter.name}${optional}: ${parameter.type ?? 'unknown'}`
  })
  const typeParameters = signature.typeParameters?.length
    ? `<${signature.typeParameters.map((parameter) => parameter.name).join(', ')}>`
    : ''
  return `${name}${typeParameters}(${parameters.join(', ')}): ${signature.type ?? 'void'}`
}

function parameterTable(signature) {
  const rows = (signature.parameters ?? [])
    .map((parameter) => {
      const description = text(parameter.comment?.summary)
      const fallback = defaultOf(parameter)
      return `| \`${parameter.name}\` | \`${cell(String(parameter.type ?? 'unknown'))}\` | ${cell(fallback)} | ${cell(description)} |`
    })
    .join('\n')
  return rows === ''
    ? ''
    : `| parameter | type | default | description |\n| --- | --- | --- | --- |\n${rows}\n`
}

/** A member is Rally's own: declared in this repository's src/, not inherited from a lib. */
function isOwn(member) {
  if (member.flags.isPrivate || member.flags.isProtected || member.name.startsWith('#')) return false
  const file = member.sources?.[0]?.fileName ?? member.signatures?.[0]?.sources?.[0]?.fileName
  return file === undefined || file.includes('src/')
}

function memberType(member) {
  if (member.kindOf(ReflectionKind.Accessor)) {
    const type = member.getSignature?.type ?? member.setSignature?.parameters?.[0]?.type
    return `${member.setSignature === undefined ? 'readonly ' : ''}${type ?? 'unknown'}`
  }
  if (member.signatures !== undefined)
    return member.signatures.map((signature) => signatureLine('', signature)).join('; ')
  return `${member.flags.isReadonly ? 'readonly ' : ''}${member.type ?? 'unknown'}`
}

function membersTable(reflection) {
  const members = (reflection.children ?? []).filter(
    (member) => isOwn(member) && !member.kindOf(ReflectionKind.Constructor),
  )
  if (members.length === 0) return ''
  const rows = members.map((member) => {
    const optional = member.flags.isOptional ? '?' : ''
    const statics = member.flags.isStatic ? 'static ' : ''
    return `| \`${statics}${member.name}${optional}\` | \`${cell(memberType(member))}\` | ${cell(defaultOf(member))} | ${cell(summary(member))} |`
  })
  return `| member | type | default | description |\n| --- | --- | --- | --- |\n${rows.join('\n')}\n`
}

function renderExport(reflection) {
  const out = [`### \`${reflection.name}\``, '']
  const description = summary(reflection)
  if (reflection.kindOf(ReflectionKind.Reference)) {
    const target = reflection.getTargetReflectionDeep?.()
    out.push(`Re-export of \`${target?.getFullName?.() ?? reflection.name}\`.`, '')
    return out.join('\n')
  }
  if (description !== '') out.push(description, '')
  for (const block of reflection.comment?.blockTags ?? []) {
    if (block.tag === '@example') out.push('Example:', '', text(block.content), '')
  }
  if (reflection.signatures !== undefined) {
    for (const signature of reflection.signatures) {
      out.push('```ts', signatureLine(reflection.name, signature), '```', '')
      const own = text(signature.comment?.summary)
      if (own !== '' && own !== description) out.push(own, '')
      const table = parameterTable(signature)
      if (table !== '') out.push(table)
    }
  }
  if (reflection.kindOf(ReflectionKind.Class)) {
    const construct = reflection.children?.find((member) => member.kindOf(ReflectionKind.Constructor))
    for (const signature of construct?.signatures ?? []) {
      out.push('```ts', signatureLine(`new ${reflection.name}`, signature).replace(/: [^:]*$/, ''), '```', '')
      const table = parameterTable(signature)
      if (table !== '') out.push(table)
    }
  }
  if (reflection.kindOf(ReflectionKind.TypeAlias) || reflection.kindOf(ReflectionKind.Variable)) {
    const keyword = reflection.kindOf(ReflectionKind.TypeAlias) ? 'type' : 'const'
    const separator = keyword === 'type' ? ' =' : ':'
    out.push('```ts', `${keyword} ${reflection.name}${separator} ${reflection.type ?? 'unknown'}`, '```', '')
    const initializer = extras.get(reflection.id)?.initializer
    if (keyword === 'const' && initializer !== undefined && initializer.length <= 1500)
      out.push('Value:', '', '```ts', initializer, '```', '')
    const aliased = aliasedMembersTable(reflection)
    if (aliased !== '') out.push(aliased)
  }
  const table = membersTable(reflection)
  if (table !== '') out.push(table)
  return out.join('\n')
}

/**
 * The doc comment that opens an entry point's file. TypeDoc takes it as the module's only with an
 * `@module` tag, which Rally's files do not carry; it is the module's documentation all the same.
 */
function moduleDoc(source) {
  const opening = /^(?:#!.*\n)?\s*\/\*\*([\s\S]*?)\*\//.exec(readFileSync(join(ROOT, source), 'utf8'))
  if (opening === null) return ''
  return opening[1]
    .split('\n')
    .map((line) => line.replace(/^\s*\* ?/, ''))
    .join('\n')
    .trim()
}

function renderModule(entry, module) {
  const out = [
    `# \`${entry.name}\``,
    '',
    `<!-- Generated by scripts/docs-api.mjs from ${entry.source} and what it exports; do not edit. -->`,
    '',
  ]
  const description = module.comment === undefined ? moduleDoc(entry.source) : text(module.comment.summary)
  if (description !== '') out.push(description, '')
  const exports = module.children ?? []
  for (const [kind, title] of KIND_ORDER) {
    const ofKind = exports.filter((reflection) => reflection.kindOf(kind))
    if (ofKind.length === 0) continue
    out.push(`## ${title}`, '')
    for (const reflection of ofKind) out.push(renderExport(reflection))
  }
  return `${out
    .join('\n')
    .replace(/\n{3,}/g, '\n\n')
    .trim()}\n`
}

function renderIndex(entries) {
  const lines = [
    '# API reference',
    '',
    '<!-- Generated by scripts/docs-api.mjs; do not edit. Regenerate with: npm run docs:api -->',
    '',
    "Generated from the source's TSDoc comments, one page per entry point of the package:",
    '',
    ...entries.map((entry) => {
      const gist = entry.gist === '' ? '' : `: ${entry.gist}`
      return `- [\`${entry.name}\`](${entry.page})${gist} (from \`${entry.source}\`)`
    }),
    '',
  ]
  return lines.join('\n')
}

export async function generate(out = join(ROOT, 'docs', 'api')) {
  const entries = publicEntryPoints()
  const app = await Application.bootstrap({
    entryPoints: entries.map((entry) => join(ROOT, entry.source)),
    tsconfig: join(ROOT, 'tsconfig.build.json'),
    excludePrivate: true,
    excludeProtected: true,
    excludeInternal: true,
    // Other engineers' work in progress must not stop the reference from being written.
    skipErrorChecking: true,
    logLevel: 'Error',
  })
  app.converter.on(Converter.EVENT_CREATE_DECLARATION, recordExtras)
  const project = await app.convert()
  if (project === undefined) throw new Error('TypeDoc could not convert the project')
  const modules = new Map((project.children ?? []).map((module) => [module.name, module]))
  // With a single entry point TypeDoc makes the project itself the module.
  const moduleOf = (entry) => (entries.length === 1 ? project : modules.get(typedocModuleName(entry.source)))
  mkdirSync(out, { recursive: true })
  for (const name of readdirSync(out)) if (name.endsWith('.md')) rmSync(join(out, name))
  for (const entry of entries) {
    const module = moduleOf(entry)
    if (module === undefined) throw new Error(`no TypeDoc module for ${entry.source}`)
    writeFileSync(join(out, entry.page), renderModule(entry, module))
    // The first sentence of the module's doc comment, after its title (`rallyjs/hono`: …).
    const description = module.comment === undefined ? moduleDoc(entry.source) : text(module.comment.summary)
    const first = /^(?:`[^`]+`:\s*)?([^\n]*?(?:\.(?=\s)|$))/.exec(description.replace(/\s*\n\s*/g, ' '))
    entry.gist = first?.[1]?.trim() ?? ''
  }
  writeFileSync(join(out, 'README.md'), renderIndex(entries))
  return entries
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const index = process.argv.indexOf('--out')
  const out = index === -1 ? undefined : process.argv[index + 1]
  const entries = await generate(out)
  for (const entry of entries)
    console.log(`${relative(ROOT, join(out ?? 'docs/api', entry.page))}  ${entry.name}`)
}
