/**
 * Helpers for checking Kubernetes objects without a cluster: render a kustomization with
 * `kubectl kustomize`, validate each object with its `kubernetes-models` class, and the checks
 * those classes miss (unknown fields, names, Pod Security "restricted").
 *
 * The unknown-field walk reads the field names from `kubernetes-models`' own TypeScript
 * declarations through the compiler API: the generated validators ignore unknown fields, but
 * the declared interfaces list exactly the fields of the Kubernetes version they were generated
 * from. Also usable for objects built in code, such as the Job the Kubernetes runtime creates.
 */
import { spawnSync } from 'node:child_process'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import ts from 'typescript'
import { parseAllDocuments } from 'yaml'

export type KubeObject = {
  apiVersion: string
  kind: string
  metadata: { name: string; namespace?: string; [key: string]: unknown }
  [key: string]: unknown
}

const here = dirname(fileURLToPath(import.meta.url))
export const repoRoot = join(here, '..', '..')

/** kubectl to render with; `FERRY_KUBECTL` picks another one, e.g. a kubectl 1.20 binary. */
export const KUBECTL = process.env.FERRY_KUBECTL || 'kubectl'

/** `kubectl kustomize <dir>` → its output. Throws, with a hint, when kubectl is missing. */
export function kustomize(dir: string): string {
  const result = spawnSync(KUBECTL, ['kustomize', dir], {
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
    timeout: 60_000,
  })
  if ((result.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') {
    throw new Error(
      `${KUBECTL} not found: the manifest tests render with \`kubectl kustomize\`. ` +
        'Install kubectl (Debian: `apt-get install -y kubernetes-client`; it conflicts with an ' +
        "already installed `kubectl` package from Google's repository) or set FERRY_KUBECTL."
    )
  }
  if (result.error) throw result.error
  if (result.status !== 0) {
    throw new Error(`${KUBECTL} kustomize ${dir} failed (exit ${result.status}):\n${result.stderr}`)
  }
  return result.stdout
}

/** Every non-empty document of a multi-document YAML text. */
export function parseObjects(text: string): KubeObject[] {
  return parseAllDocuments(text).flatMap((document) => {
    if (document.errors.length > 0) throw new Error(document.errors.join('\n'))
    const value: unknown = document.toJS()
    return value === null || value === undefined ? [] : [value as KubeObject]
  })
}

/** `kind/namespace/name`, for messages. */
export const ref = (object: KubeObject): string =>
  `${object.kind}/${object.metadata?.namespace ?? '-'}/${object.metadata?.name}`

/** `kubernetes-models` module of a kind: `kubernetes-models/<group>/<version>/<Kind>`. */
const modelModule = (apiVersion: string, kind: string) => `kubernetes-models/${apiVersion}/${kind}`

type Model = { validate(): void }
type ModelClass = new (data: unknown) => Model

/** The `kubernetes-models` class for an object's apiVersion and kind. */
export async function modelClass(object: KubeObject): Promise<ModelClass> {
  const module = (await import(modelModule(object.apiVersion, object.kind))) as Record<
    string,
    ModelClass | undefined
  >
  const model = module[object.kind]
  if (!model)
    throw new Error(`kubernetes-models has no class for ${object.apiVersion} ${object.kind}`)
  return model
}

// ---------------------------------------------------------------------------------------------
// Unknown fields

interface TypeIndex {
  checker: ts.TypeChecker
  types: Map<string, ts.Type>
}

let typeIndex: { key: string; index: TypeIndex } | undefined

/** Builds (once per set of kinds) a program that imports the models' declared interfaces. */
function loadTypes(kinds: ReadonlyArray<readonly [string, string]>): TypeIndex {
  const wanted = [...new Set(kinds.map(([apiVersion, kind]) => `${apiVersion}|${kind}`))].sort()
  const key = wanted.join(',')
  if (typeIndex?.key === key) return typeIndex.index
  // A virtual module next to this file, so `kubernetes-models` resolves from node_modules.
  const fileName = join(here, '__kubernetes_models__.ts')
  const source = wanted
    .map((entry, i) => {
      const [apiVersion, kind] = entry.split('|') as [string, string]
      return `import type { I${kind} as T${i} } from '${modelModule(apiVersion, kind)}'\nexport declare const t${i}: T${i}`
    })
    .join('\n')
  const options: ts.CompilerOptions = {
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2023,
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: [],
  }
  const host = ts.createCompilerHost(options)
  const { getSourceFile, fileExists, readFile } = host
  host.getSourceFile = (name, version, ...rest) =>
    name === fileName
      ? ts.createSourceFile(name, source, version)
      : getSourceFile.call(host, name, version, ...rest)
  host.fileExists = (name) => name === fileName || fileExists.call(host, name)
  host.readFile = (name) => (name === fileName ? source : readFile.call(host, name))
  const program = ts.createProgram([fileName], options, host)
  const problems = ts
    .getPreEmitDiagnostics(program)
    .map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'))
  if (problems.length > 0)
    throw new Error(`cannot load kubernetes-models types:\n${problems.join('\n')}`)
  const checker = program.getTypeChecker()
  const file = program.getSourceFile(fileName)!
  const moduleSymbol = checker.getSymbolAtLocation(file)!
  const exports = checker.getExportsOfModule(moduleSymbol)
  const types = new Map<string, ts.Type>()
  wanted.forEach((entry, i) => {
    const symbol = exports.find((s) => s.name === `t${i}`)!
    types.set(entry, checker.getTypeOfSymbol(symbol))
  })
  const index = { checker, types }
  typeIndex = { key, index }
  return index
}

const isPlainObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value)

/**
 * Paths of fields that the object's `kubernetes-models` interface does not declare, such as
 * `spec.backofLimit` or `spec.template.spec.containers[0].comand`. The API server drops such
 * fields silently (or rejects them under strict field validation); the models' validators let
 * them through.
 */
export function unknownFields(
  objects: KubeObject[]
): Array<{ object: KubeObject; paths: string[] }> {
  const { checker, types } = loadTypes(objects.map((o) => [o.apiVersion, o.kind] as const))
  const walk = (value: unknown, type: ts.Type, path: string, out: string[]) => {
    if (typeof value !== 'object' || value === null) return
    const nonNull = checker.getNonNullableType(type)
    const members = nonNull.isUnion() ? nonNull.types : [nonNull]
    if (Array.isArray(value)) {
      const element = members
        .filter((m) => checker.isArrayType(m))
        .map((m) => checker.getTypeArguments(m as ts.TypeReference)[0])
        .find((t) => t !== undefined)
      // A type mismatch is the validators' business; here only names matter.
      if (!element) return
      value.forEach((item, i) => walk(item, element, `${path}[${i}]`, out))
      return
    }
    const objectTypes = members.filter(
      (m) => (m.flags & ts.TypeFlags.Object) !== 0 && !checker.isArrayType(m)
    )
    if (objectTypes.length === 0) return
    for (const [key, child] of Object.entries(value)) {
      const childPath = path ? `${path}.${key}` : key
      let childType: ts.Type | undefined
      for (const candidate of objectTypes) {
        const property = candidate.getProperty(key)
        if (property) {
          childType = checker.getTypeOfSymbol(property)
          break
        }
        const index = checker.getIndexInfoOfType(candidate, ts.IndexKind.String)
        if (index) {
          childType = index.type
          break
        }
      }
      if (childType) walk(child, childType, childPath, out)
      else out.push(childPath)
    }
  }
  return objects.map((object) => {
    const paths: string[] = []
    walk(object, types.get(`${object.apiVersion}|${object.kind}`)!, '', paths)
    return { object, paths }
  })
}

// ---------------------------------------------------------------------------------------------
// Names

/** RFC 1123 label: what names of Namespaces, Services, containers and ports-by-name must be. */
export const RFC1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/

/** Why `name` is not an RFC 1123 label (≤ 63 characters), or undefined. */
export function nameProblem(name: unknown): string | undefined {
  if (typeof name !== 'string') return `name is ${JSON.stringify(name)}`
  if (name.length > 63) return `"${name}" is longer than 63 characters`
  if (!RFC1123_LABEL.test(name)) return `"${name}" is not an RFC 1123 label`
  return undefined
}

// ---------------------------------------------------------------------------------------------
// Pod Security "restricted" (plus Ferry's read-only root filesystem)

type Obj = Record<string, unknown>
const obj = (value: unknown): Obj => (isPlainObject(value) ? value : {})
const list = (value: unknown): Obj[] => (Array.isArray(value) ? value.map(obj) : [])

/** Pod templates in an object: Deployment/StatefulSet/DaemonSet/ReplicaSet/Job, CronJob, Pod. */
export function podSpecs(object: KubeObject): Obj[] {
  const spec = obj(object.spec)
  if (object.kind === 'Pod') return [spec]
  if (object.kind === 'CronJob') return [obj(obj(obj(obj(spec.jobTemplate).spec).template).spec)]
  if (isPlainObject(spec.template)) return [obj(spec.template.spec)]
  return []
}

const ALLOWED_VOLUMES = new Set([
  'configMap',
  'csi',
  'downwardAPI',
  'emptyDir',
  'ephemeral',
  'persistentVolumeClaim',
  'projected',
  'secret',
])

/**
 * Violations of the "restricted" Pod Security Standard in a pod spec, with Ferry's own
 * additions: every container sets `allowPrivilegeEscalation: false`,
 * `readOnlyRootFilesystem: true` and drops ALL capabilities itself, and adds none.
 */
export function restrictedViolations(pod: Obj): string[] {
  const problems: string[] = []
  const podContext = obj(pod.securityContext)
  for (const field of ['hostNetwork', 'hostPID', 'hostIPC'] as const) {
    if (pod[field] === true) problems.push(`pod sets ${field}`)
  }
  for (const volume of list(pod.volumes)) {
    const types = Object.keys(volume).filter((k) => k !== 'name')
    const bad = types.filter((t) => !ALLOWED_VOLUMES.has(t))
    if (bad.length > 0) problems.push(`volume ${String(volume.name)} is of type ${bad.join(', ')}`)
  }
  const containers = [
    ...list(pod.initContainers),
    ...list(pod.containers),
    ...list(pod.ephemeralContainers),
  ]
  if (containers.length === 0) problems.push('pod has no containers')
  for (const container of containers) {
    const name = `container ${String(container.name)}`
    const context = obj(container.securityContext)
    const capabilities = obj(context.capabilities)
    if (context.privileged === true) problems.push(`${name} is privileged`)
    if (context.allowPrivilegeEscalation !== false) {
      problems.push(`${name} does not set allowPrivilegeEscalation: false`)
    }
    if (context.readOnlyRootFilesystem !== true) {
      problems.push(`${name} does not set readOnlyRootFilesystem: true`)
    }
    const drop = Array.isArray(capabilities.drop) ? capabilities.drop : []
    if (!drop.includes('ALL')) problems.push(`${name} does not drop ALL capabilities`)
    if (Array.isArray(capabilities.add) && capabilities.add.length > 0) {
      problems.push(`${name} adds capabilities ${capabilities.add.join(', ')}`)
    }
    const runAsNonRoot = context.runAsNonRoot ?? podContext.runAsNonRoot
    if (runAsNonRoot !== true) problems.push(`${name} may run as root (runAsNonRoot not true)`)
    const runAsUser = context.runAsUser ?? podContext.runAsUser
    if (!(typeof runAsUser === 'number' && Number.isInteger(runAsUser) && runAsUser > 0)) {
      problems.push(`${name} has no numeric non-root runAsUser`)
    }
    const seccomp = obj(context.seccompProfile ?? podContext.seccompProfile).type
    if (seccomp !== 'RuntimeDefault' && seccomp !== 'Localhost') {
      problems.push(`${name} has no RuntimeDefault/Localhost seccomp profile`)
    }
    for (const port of list(container.ports)) {
      if (port.hostPort !== undefined)
        problems.push(`${name} uses hostPort ${String(port.hostPort)}`)
    }
  }
  return problems
}
