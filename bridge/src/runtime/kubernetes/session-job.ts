/**
 * @module
 * The `batch/v1` Job of one session: one pod whose `mcp` container runs the
 * sidecar, which runs the MCP server over stdio. The catalog's
 * `podTemplatePatch` is merged in first; Ferry's required settings (restricted
 * Pod Security context, no service-account token, `restartPolicy: Never`, the
 * sidecar command and probe, the session labels) are applied last, so a patch
 * can add to the pod but never weaken it.
 */
import type {
  V1Container,
  V1EnvVar,
  V1Job,
  V1PodTemplateSpec,
  V1SecurityContext,
  V1Volume,
} from '@kubernetes/client-node'
import type { KubernetesServerConfig, LogLevel } from '@ferry/shared'
import { sidecarSettingsArgs } from '@ferry/sidecar'

/** Where the bundled sidecar lives in the pod (image mode) or is copied to (inject mode). */
export const SIDECAR_PATH = '/ferry/sidecar.mjs'
/** Labels every session Job and pod carries; the NetworkPolicies select on `app.kubernetes.io/name`. */
export const SESSION_LABEL = 'ferry.dev/session'
export const SERVER_LABEL = 'ferry.dev/server'
/** The starting principal's quota key (`principalKey()`), for cluster-wide per-principal counts. */
export const PRINCIPAL_LABEL = 'ferry.dev/principal'
export const MANAGED_BY = 'ferry-bridge'
export const MANAGED_SELECTOR = `app.kubernetes.io/managed-by=${MANAGED_BY}`
/** When a start that has not become ready may be swept away. */
export const START_DEADLINE_ANNOTATION = 'ferry.dev/start-deadline'
const RUN_AS = 10001

export interface SidecarConnectionSettings {
  heartbeatMs: number
  maxPayload: number
  logLevel: LogLevel
}

/** Sidecar defaults, for callers without bridge settings at hand. */
export const DEFAULT_SIDECAR_CONNECTION: SidecarConnectionSettings = {
  heartbeatMs: 15_000,
  maxPayload: 16 * 1024 * 1024,
  logLevel: 'info',
}

export interface SessionJobInput {
  jobName: string
  sessionName: string
  serverName: string
  server: KubernetesServerConfig
  /** Verifier of the per-session secret (the secret itself never enters the spec). */
  verifier: string
  now: Date
  /** Sidecar path override (tests run the bundle from the work tree). */
  sidecarPath?: string
  /** How the bridge talks to sidecars, which must agree (heartbeat, frame size). */
  connection?: SidecarConnectionSettings
  /** Labels Ferry adds to the Job and its pod (e.g. `ferry.dev/principal`), after the server's own. */
  labels?: Record<string, string>
}

const restrictedContainer: V1SecurityContext = {
  allowPrivilegeEscalation: false,
  readOnlyRootFilesystem: true,
  runAsNonRoot: true,
  capabilities: { drop: ['ALL'] },
  seccompProfile: { type: 'RuntimeDefault' },
}

/**
 * The restricted settings on any container, whatever a patch asked for: no privileged
 * mode, no root user, no added capabilities, no host ports, no unconfined profiles.
 */
const hardened = (container: V1Container): V1Container => {
  const {
    privileged: _privileged,
    procMount: _procMount,
    appArmorProfile,
    runAsUser,
    ...context
  } = container.securityContext ?? {}
  return {
    ...container,
    ...(container.ports
      ? { ports: container.ports.map(({ hostPort: _hostPort, hostIP: _hostIP, ...port }) => port) }
      : {}),
    securityContext: {
      ...context,
      ...(runAsUser ? { runAsUser } : {}),
      ...(appArmorProfile && appArmorProfile.type !== 'Unconfined' ? { appArmorProfile } : {}),
      ...restrictedContainer,
    },
  }
}

/** Environment variables only Ferry sets: the sidecar's address and secret verifier. */
const isFerryEnv = (name: string) => name === 'POD_IP' || name.startsWith('FERRY_SIDECAR_')

/** Drops earlier entries of a name given again later (the later one wins, once). */
const lastByName = (env: V1EnvVar[]): V1EnvVar[] =>
  env.filter((entry, i) => !env.slice(i + 1).some((later) => later.name === entry.name))

type Json = Record<string, unknown>
const isObject = (value: unknown): value is Json =>
  typeof value === 'object' && value !== null && !Array.isArray(value)

/**
 * Strategic-merge-like patch: objects merge key by key; lists of named objects
 * (containers, volumes, env) merge by `name`; anything else is replaced.
 */
export const mergePatch = (base: unknown, patch: unknown): unknown => {
  if (isObject(base) && isObject(patch)) {
    const merged: Json = { ...base }
    for (const [key, value] of Object.entries(patch)) merged[key] = mergePatch(base[key], value)
    return merged
  }
  const named = (list: unknown[]) =>
    list.every((item) => isObject(item) && typeof item.name === 'string')
  if (Array.isArray(base) && Array.isArray(patch) && named(base) && named(patch)) {
    const merged = [...base] as Json[]
    for (const item of patch as Json[]) {
      const at = merged.findIndex((existing) => existing.name === item.name)
      if (at === -1) merged.push(item)
      else merged[at] = mergePatch(merged[at], item) as Json
    }
    return merged
  }
  return patch === undefined ? base : patch
}

const sidecarCommand = (input: SessionJobInput): string[] => {
  const { server, sessionName } = input
  const connection = input.connection ?? DEFAULT_SIDECAR_CONNECTION
  return [
    server.nodePath,
    // V8 settings for a small, mostly idle relay (see the local runtime).
    '--max-semi-space-size=1',
    input.sidecarPath ?? (server.delivery === 'inject' ? SIDECAR_PATH : server.sidecarPath),
    '--session',
    sessionName,
    '--port',
    String(server.port),
    ...sidecarSettingsArgs({
      idleTimeoutMs: server.idleTimeout,
      stopGraceMs: server.stopGrace,
      maxLineBytes: server.maxLineBytes,
      maxPayload: connection.maxPayload,
      heartbeatMs: connection.heartbeatMs,
      eventLog: { ...server.eventLog, maxAgeMs: server.eventLog.maxAge },
      logLevel: connection.logLevel,
    }),
    '--',
    ...server.command,
    ...server.args,
  ]
}

export const buildSessionJob = (input: SessionJobInput): V1Job => {
  const { server, sessionName, serverName, jobName } = input
  const inject = server.delivery === 'inject'
  const labels = {
    ...server.labels,
    ...input.labels,
    'app.kubernetes.io/name': 'ferry-session',
    'app.kubernetes.io/component': 'mcp-server',
    'app.kubernetes.io/part-of': 'ferry',
    'app.kubernetes.io/managed-by': MANAGED_BY,
    [SESSION_LABEL]: sessionName,
    [SERVER_LABEL]: serverName,
  }
  const startDeadline = new Date(input.now.getTime() + server.startTimeout).toISOString()
  const annotations = { ...server.annotations, [START_DEADLINE_ANNOTATION]: startDeadline }

  // What a podTemplatePatch may change.
  const adjustable: V1PodTemplateSpec = {
    metadata: { annotations: server.annotations },
    spec: {
      containers: [
        {
          name: 'mcp',
          image: server.image,
          imagePullPolicy: server.imagePullPolicy,
          resources: server.resources,
          envFrom: server.envFrom,
          volumeMounts: server.volumeMounts,
        },
      ],
      // The catalog passes volumes through; the API server validates their shape.
      volumes: server.volumes as unknown as V1Volume[],
      nodeSelector: server.nodeSelector,
      tolerations: server.tolerations,
      ...(server.affinity ? { affinity: server.affinity } : {}),
      ...(server.priorityClassName ? { priorityClassName: server.priorityClassName } : {}),
      ...(server.runtimeClassName ? { runtimeClassName: server.runtimeClassName } : {}),
      ...(server.serviceAccountName ? { serviceAccountName: server.serviceAccountName } : {}),
      imagePullSecrets: server.imagePullSecrets.map((name) => ({ name })),
      terminationGracePeriodSeconds: Math.ceil(server.stopGrace / 1000) + 5,
    },
  }
  const template = mergePatch(adjustable, server.podTemplatePatch ?? {}) as V1PodTemplateSpec
  const spec = template.spec!
  // A patch may have replaced the list (an unnamed container): the API server names the problem.
  const containers: V1Container[] = Array.isArray(spec.containers) ? spec.containers : []
  const patchedMcp = containers.find((c) => c?.name === 'mcp') ?? adjustable.spec!.containers[0]!
  const env: V1EnvVar[] = [
    // The root filesystem is read-only; tools that write caches need a home (unless set).
    ...lastByName([
      { name: 'HOME', value: '/tmp' },
      ...Object.entries(server.env).map(([name, value]) => ({ name, value })),
      ...(patchedMcp.env ?? []),
    ]).filter((entry) => !isFerryEnv(entry.name)),
    { name: 'POD_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
    { name: 'FERRY_SIDECAR_VERIFIER', value: input.verifier },
  ]
  const mcp: V1Container = {
    ...hardened(patchedMcp),
    name: 'mcp',
    command: sidecarCommand(input),
    args: [],
    env,
    ports: [{ name: 'ws', containerPort: server.port, protocol: 'TCP' }],
    readinessProbe: {
      httpGet: { path: '/healthz', port: server.port },
      periodSeconds: 1,
      failureThreshold: 3,
    },
    volumeMounts: [
      ...(patchedMcp.volumeMounts ?? []).filter(
        (m) => m.mountPath !== '/tmp' && m.mountPath !== '/ferry'
      ),
      { name: 'ferry-tmp', mountPath: '/tmp' },
      ...(inject ? [{ name: 'ferry-sidecar', mountPath: '/ferry', readOnly: true }] : []),
    ],
  }
  const injector: V1Container = {
    name: 'ferry-inject',
    image: server.sidecarImage,
    imagePullPolicy: server.imagePullPolicy,
    command: ['cp', SIDECAR_PATH, '/inject/sidecar.mjs'],
    volumeMounts: [{ name: 'ferry-sidecar', mountPath: '/inject' }],
    resources: { requests: { cpu: '10m', memory: '16Mi' }, limits: { memory: '64Mi' } },
    securityContext: restrictedContainer,
  }
  const volumes = [
    ...(spec.volumes ?? []).filter((v) => v.name !== 'ferry-tmp' && v.name !== 'ferry-sidecar'),
    { name: 'ferry-tmp', emptyDir: { sizeLimit: server.tmpSizeLimit } },
    ...(inject ? [{ name: 'ferry-sidecar', emptyDir: { sizeLimit: '16Mi' } }] : []),
  ]
  // Host namespaces and an unconfined AppArmor profile are not for session pods.
  const { hostNetwork: _hostNetwork, hostPID: _hostPID, hostIPC: _hostIPC, ...podSpec } = spec
  const { appArmorProfile: podAppArmor, ...podContext } = spec.securityContext ?? {}
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: { name: jobName, namespace: server.namespace, labels, annotations },
    spec: {
      backoffLimit: 0,
      completions: 1,
      parallelism: 1,
      activeDeadlineSeconds: server.activeDeadlineSeconds,
      ttlSecondsAfterFinished: server.ttlSecondsAfterFinished,
      // A crashed session is not retried (its state is gone), and the reason stays visible.
      podFailurePolicy: {
        rules: [
          { action: 'FailJob', onPodConditions: [{ type: 'DisruptionTarget', status: 'True' }] },
          {
            action: 'FailJob',
            onExitCodes: { containerName: 'mcp', operator: 'NotIn', values: [0] },
          },
        ],
      },
      template: {
        metadata: {
          ...template.metadata,
          labels: { ...template.metadata?.labels, ...labels },
          annotations: { ...template.metadata?.annotations, ...annotations },
        },
        spec: {
          ...podSpec,
          restartPolicy: 'Never',
          automountServiceAccountToken: false,
          enableServiceLinks: false,
          securityContext: {
            ...podContext,
            ...(podAppArmor && podAppArmor.type !== 'Unconfined'
              ? { appArmorProfile: podAppArmor }
              : {}),
            runAsNonRoot: true,
            runAsUser: RUN_AS,
            runAsGroup: RUN_AS,
            fsGroup: RUN_AS,
            seccompProfile: { type: 'RuntimeDefault' },
          },
          initContainers: [
            ...(spec.initContainers ?? []).filter((c) => c.name !== 'ferry-inject').map(hardened),
            ...(inject ? [injector] : []),
          ],
          containers: [mcp, ...containers.filter((c) => c?.name !== 'mcp').map(hardened)],
          volumes,
        },
      },
    },
  }
}
