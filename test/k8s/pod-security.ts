/**
 * @module test/k8s/pod-security
 *
 * Pod Security Standards "restricted" (plus the baseline checks it includes), evaluated the way
 * the Pod Security Admission plugin does and worded like its `violates PodSecurity
 * "restricted:latest": …` denial, so Ferry's pod template can be checked without a modern cluster.
 */
import type { Pod } from './types.ts'

type PodSpec = NonNullable<Pod['spec']>
type Container = PodSpec['containers'][number]

const ALLOWED_VOLUME_TYPES = [
  'configMap',
  'csi',
  'downwardAPI',
  'emptyDir',
  'ephemeral',
  'persistentVolumeClaim',
  'projected',
  'secret',
]
const VALID_SECCOMP = ['RuntimeDefault', 'Localhost']

const quoted = (values: Array<string | number>) =>
  values.map((value) => (typeof value === 'string' ? `"${value}"` : String(value))).join(', ')
const containersWord = (names: string[]) =>
  names.length === 1 ? `container ${quoted(names)}` : `containers ${quoted(names)}`
const volumesWord = (names: string[]) =>
  names.length === 1 ? `volume ${quoted(names)}` : `volumes ${quoted(names)}`

const allContainers = (spec: PodSpec): Container[] => [
  ...(spec.initContainers ?? []),
  ...(spec.containers ?? []),
  ...((spec.ephemeralContainers ?? []) as Container[]),
]

/** One entry per failed check, in the order the admission plugin prints them. */
export const restrictedViolations = (spec: PodSpec | undefined): string[] => {
  if (!spec) return []
  const containers = allContainers(spec)
  const podContext = spec.securityContext ?? {}
  const names = (predicate: (container: Container) => boolean) =>
    containers.filter(predicate).map((container) => container.name)
  const out: string[] = []

  const escalating = names((c) => c.securityContext?.allowPrivilegeEscalation !== false)
  if (escalating.length) {
    out.push(
      `allowPrivilegeEscalation != false (${containersWord(escalating)} must set securityContext.allowPrivilegeEscalation=false)`
    )
  }

  const capabilityProblems: string[] = []
  const notDropping = names((c) => !(c.securityContext?.capabilities?.drop ?? []).includes('ALL'))
  if (notDropping.length) {
    capabilityProblems.push(
      `${containersWord(notDropping)} must set securityContext.capabilities.drop=["ALL"]`
    )
  }
  for (const container of containers) {
    const added = (container.securityContext?.capabilities?.add ?? []).filter(
      (cap) => cap !== 'NET_BIND_SERVICE'
    )
    if (added.length) {
      capabilityProblems.push(
        `${containersWord([container.name])} must not include ${quoted(added)} in securityContext.capabilities.add`
      )
    }
  }
  if (capabilityProblems.length)
    out.push(`unrestricted capabilities (${capabilityProblems.join('; ')})`)

  const hostNamespaces = (['hostNetwork', 'hostPID', 'hostIPC'] as const).filter(
    (key) => spec[key] === true
  )
  if (hostNamespaces.length) {
    out.push(`host namespaces (${hostNamespaces.map((key) => `${key}=true`).join(', ')})`)
  }

  const volumes = spec.volumes ?? []
  const hostPaths = volumes.filter((volume) => volume.hostPath).map((volume) => volume.name)
  if (hostPaths.length) out.push(`hostPath volumes (${volumesWord(hostPaths)})`)

  const hostPortUsers = names((c) => (c.ports ?? []).some((port) => (port.hostPort ?? 0) !== 0))
  if (hostPortUsers.length) {
    const ports = containers
      .flatMap((c) => (c.ports ?? []).map((p) => p.hostPort ?? 0))
      .filter((p) => p !== 0)
    out.push(
      `hostPort (${containersWord(hostPortUsers)} ${hostPortUsers.length === 1 ? 'uses' : 'use'} ${ports.length === 1 ? 'hostPort' : 'hostPorts'} ${ports.join(', ')})`
    )
  }

  const privileged = names((c) => c.securityContext?.privileged === true)
  if (privileged.length) {
    out.push(
      `privileged (${containersWord(privileged)} must not set securityContext.privileged=true)`
    )
  }

  const restricted = volumes
    .map((volume) => ({
      name: volume.name,
      type: Object.keys(volume).find(
        (key) => key !== 'name' && volume[key as keyof typeof volume] != null
      ),
    }))
    .filter((volume) => volume.type !== undefined && !ALLOWED_VOLUME_TYPES.includes(volume.type))
  if (restricted.length) {
    const types = [...new Set(restricted.map((volume) => volume.type!))]
    out.push(
      `restricted volume types (${volumesWord(restricted.map((v) => v.name))} ${restricted.length === 1 ? 'uses' : 'use'} ${types.length === 1 ? 'restricted volume type' : 'restricted volume types'} ${quoted(types)})`
    )
  }

  const nonRootProblems: string[] = []
  if (podContext.runAsNonRoot === false)
    nonRootProblems.push('pod must not set securityContext.runAsNonRoot=false')
  const explicitRoot = names((c) => c.securityContext?.runAsNonRoot === false)
  if (explicitRoot.length) {
    nonRootProblems.push(
      `${containersWord(explicitRoot)} must not set securityContext.runAsNonRoot=false`
    )
  }
  if (podContext.runAsNonRoot !== true) {
    const unset = names(
      (c) =>
        c.securityContext?.runAsNonRoot === undefined || c.securityContext?.runAsNonRoot === null
    )
    if (unset.length)
      nonRootProblems.push(
        `pod or ${containersWord(unset)} must set securityContext.runAsNonRoot=true`
      )
  }
  if (nonRootProblems.length) out.push(`runAsNonRoot != true (${nonRootProblems.join('; ')})`)

  const rootUser: string[] = []
  if (podContext.runAsUser === 0) rootUser.push('pod must not set runAsUser=0')
  const rootContainers = names((c) => c.securityContext?.runAsUser === 0)
  if (rootContainers.length)
    rootUser.push(`${containersWord(rootContainers)} must not set runAsUser=0`)
  if (rootUser.length) out.push(`runAsUser=0 (${rootUser.join('; ')})`)

  const seccompProblems: string[] = []
  const podSeccomp = podContext.seccompProfile?.type
  if (podSeccomp !== undefined && !VALID_SECCOMP.includes(podSeccomp)) {
    seccompProblems.push(`pod must not set securityContext.seccompProfile.type to "${podSeccomp}"`)
  }
  const badSeccomp = names((c) => {
    const type = c.securityContext?.seccompProfile?.type
    return type !== undefined && !VALID_SECCOMP.includes(type)
  })
  if (badSeccomp.length) {
    const types = [
      ...new Set(
        containers
          .map((c) => c.securityContext?.seccompProfile?.type)
          .filter((t) => t !== undefined && !VALID_SECCOMP.includes(t))
      ),
    ]
    seccompProblems.push(
      `${containersWord(badSeccomp)} must not set securityContext.seccompProfile.type to ${quoted(types as string[])}`
    )
  }
  if (podSeccomp === undefined || !VALID_SECCOMP.includes(podSeccomp)) {
    const unset = names((c) => c.securityContext?.seccompProfile?.type === undefined)
    if (unset.length && podSeccomp === undefined) {
      seccompProblems.push(
        `pod or ${containersWord(unset)} must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost"`
      )
    }
  }
  if (seccompProblems.length) out.push(`seccompProfile (${seccompProblems.join('; ')})`)

  return out
}

/** The admission denial text (without the `pods "x" is forbidden: ` prefix). */
export const restrictedDenial = (violations: string[]): string =>
  `violates PodSecurity "restricted:latest": ${violations.join(', ')}`
