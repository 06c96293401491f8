/**
 * @module test/k8s/pod-env
 *
 * The container environment the kubelet builds: `envFrom` first, then `env` (later wins),
 * downward-API `fieldRef`s (`status.podIP`, `metadata.name`, …), Secret and ConfigMap references,
 * and `$(VAR)` expansion in values, `command` and `args`. A missing Secret/ConfigMap or key is a
 * `ConfigError`, which the kubelet reports as `CreateContainerConfigError` with the real message.
 */
import type { V1Container, V1Pod } from '@kubernetes/client-node'

/** Looks up Secrets and ConfigMaps (decoded); `undefined` means "not found". */
export interface EnvSources {
  secret(namespace: string, name: string): Promise<Record<string, string> | undefined>
  configMap(namespace: string, name: string): Promise<Record<string, string> | undefined>
}

/** A configuration problem that keeps the container from being created. */
export class ConfigError extends Error {}

export interface PodAddresses {
  podIP: string
  hostIP: string
}

/** `$(VAR)` → value when VAR is defined, `$$` → `$`, anything else stays as written. */
export const expand = (text: string, env: Record<string, string>): string =>
  text.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (match, name: string | undefined) => {
    if (match === '$$') return '$'
    return name !== undefined && Object.prototype.hasOwnProperty.call(env, name)
      ? env[name]!
      : match
  })

const fieldValue = (pod: V1Pod, path: string, addresses: PodAddresses): string => {
  const map = /^metadata\.(labels|annotations)\['(.+)'\]$/.exec(path)
  if (map) return pod.metadata?.[map[1] as 'labels' | 'annotations']?.[map[2]!] ?? ''
  switch (path) {
    case 'metadata.name':
      return pod.metadata?.name ?? ''
    case 'metadata.namespace':
      return pod.metadata?.namespace ?? ''
    case 'metadata.uid':
      return pod.metadata?.uid ?? ''
    case 'spec.nodeName':
      return pod.spec?.nodeName ?? ''
    case 'spec.serviceAccountName':
      return pod.spec?.serviceAccountName ?? 'default'
    case 'status.podIP':
    case 'status.podIPs':
      return addresses.podIP
    case 'status.hostIP':
    case 'status.hostIPs':
      return addresses.hostIP
    default:
      throw new ConfigError(`unsupported fieldRef path ${path}`)
  }
}

const kindWord = { secret: 'Secret', configMap: 'ConfigMap' } as const
const lowerWord = { secret: 'secret', configMap: 'configmap' } as const

const lookup = async (
  sources: EnvSources,
  kind: 'secret' | 'configMap',
  namespace: string,
  name: string,
  optional: boolean
): Promise<Record<string, string> | undefined> => {
  const found = await sources[kind](namespace, name)
  if (!found && !optional) throw new ConfigError(`${lowerWord[kind]} "${name}" not found`)
  return found
}

/** The environment of `container`, as the kubelet would pass it to the container runtime. */
export const resolveEnv = async (
  pod: V1Pod,
  container: V1Container,
  addresses: PodAddresses,
  sources: EnvSources
): Promise<Record<string, string>> => {
  const namespace = pod.metadata?.namespace ?? 'default'
  const env: Record<string, string> = {}
  for (const from of container.envFrom ?? []) {
    const kind = from.secretRef ? 'secret' : from.configMapRef ? 'configMap' : undefined
    const ref = from.secretRef ?? from.configMapRef
    if (!kind || !ref) continue
    const values = await lookup(sources, kind, namespace, ref.name ?? '', ref.optional === true)
    for (const [key, value] of Object.entries(values ?? {})) {
      // Keys that are not valid variable names are skipped (the kubelet emits an event).
      if (/^[-._a-zA-Z][-._a-zA-Z0-9]*$/.test(key)) env[`${from.prefix ?? ''}${key}`] = value
    }
  }
  for (const variable of container.env ?? []) {
    const source = variable.valueFrom
    if (!source) {
      env[variable.name] = expand(variable.value ?? '', env)
      continue
    }
    if (source.fieldRef) {
      env[variable.name] = fieldValue(pod, source.fieldRef.fieldPath, addresses)
      continue
    }
    const keyRef = source.secretKeyRef ?? source.configMapKeyRef
    const kind = source.secretKeyRef ? 'secret' : source.configMapKeyRef ? 'configMap' : undefined
    if (keyRef && kind) {
      const values = await lookup(
        sources,
        kind,
        namespace,
        keyRef.name ?? '',
        keyRef.optional === true
      )
      if (values && !(keyRef.key in values) && keyRef.optional !== true) {
        throw new ConfigError(
          `couldn't find key ${keyRef.key} in ${kindWord[kind]} ${namespace}/${keyRef.name}`
        )
      }
      if (values?.[keyRef.key] !== undefined) env[variable.name] = values[keyRef.key]!
      continue
    }
    if (source.resourceFieldRef) {
      const { resource } = source.resourceFieldRef
      const [section, name] = resource.split('.') as ['limits' | 'requests', string]
      env[variable.name] = String(container.resources?.[section]?.[name] ?? '0')
    }
  }
  return env
}

/** `command` + `args` with `$(VAR)` expanded against the final environment. */
export const commandLine = (container: V1Container, env: Record<string, string>): string[] => [
  ...(container.command ?? []).map((part) => expand(part, env)),
  ...(container.args ?? []).map((part) => expand(part, env)),
]
