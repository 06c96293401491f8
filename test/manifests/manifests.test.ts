/**
 * The kustomize manifests under manifests/: each kustomization (the base and every overlay) is
 * rendered with `kubectl kustomize`, every object is validated with its `kubernetes-models`
 * class, and Ferry's own rules are checked on top: no unknown fields, RFC 1123 names, the
 * restricted Pod Security context on every container, least-privilege RBAC, the NetworkPolicy
 * shape, SSE-friendly Ingress settings and a catalog the bridge accepts.
 *
 * Needs kubectl on PATH (or FERRY_KUBECTL); without it these tests fail rather than skip.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { isDeepStrictEqual } from 'node:util'
import { parseCatalog } from '@ferry/shared'
import { parse as parseYaml } from 'yaml'
import { beforeAll, describe, expect, it } from 'vitest'
import {
  type KubeObject,
  kustomize,
  modelClass,
  nameProblem,
  parseObjects,
  podSpecs,
  ref,
  repoRoot,
  restrictedViolations,
  unknownFields,
} from './k8s.ts'

type Obj = Record<string, unknown>
// Rendered YAML is untyped; tests navigate it freely and let assertions catch wrong shapes.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any

const manifestsDir = join(repoRoot, 'manifests')
const overlays = readdirSync(join(manifestsDir, 'overlays')).filter((name) =>
  statSync(join(manifestsDir, 'overlays', name)).isDirectory()
)
const kustomizations = ['base', ...overlays.map((name) => `overlays/${name}`)]

const BRIDGE_LABELS = { 'app.kubernetes.io/name': 'ferry-bridge' }
const SESSION_LABELS = { 'app.kubernetes.io/name': 'ferry-session' }
const PRIVATE_RANGES = ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '169.254.0.0/16']

/** The bridge's rights in the sessions namespace, exactly (see rbac.yaml). */
const EXPECTED_RULES = [
  {
    apiGroups: ['batch'],
    resources: ['jobs'],
    verbs: ['create', 'delete', 'get', 'list', 'watch'],
  },
  { apiGroups: [''], resources: ['pods'], verbs: ['get', 'list', 'watch'] },
  { apiGroups: [''], resources: ['pods/log'], verbs: ['get'] },
  { apiGroups: ['', 'events.k8s.io'], resources: ['events'], verbs: ['list', 'watch'] },
]

const matches = (selector: Record<string, string> | undefined, labels: Obj | undefined) =>
  selector !== undefined &&
  Object.keys(selector).length > 0 &&
  Object.entries(selector).every(([key, value]) => labels?.[key] === value)

const sorted = (values: unknown): string[] =>
  Array.isArray(values) ? values.map(String).sort() : []

const dnsRule = {
  to: [
    {
      namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'kube-system' } },
      podSelector: { matchLabels: { 'k8s-app': 'kube-dns' } },
    },
  ],
  ports: [
    { protocol: 'UDP', port: 53 },
    { protocol: 'TCP', port: 53 },
  ],
}

describe.each(kustomizations)('manifests/%s', (dir) => {
  let objects: KubeObject[] = []
  const all = (kind: string) => objects.filter((o) => o.kind === kind)
  const one = (kind: string, name: string, namespace?: string): Any => {
    const found = objects.filter(
      (o) =>
        o.kind === kind &&
        o.metadata.name === name &&
        (namespace === undefined || o.metadata.namespace === namespace)
    )
    expect(found, `${kind} ${name}`).toHaveLength(1)
    return found[0]
  }
  const deployment = (): Any => one('Deployment', 'ferry-bridge', 'ferry')
  const catalogConfigMap = (): Any => {
    const found = all('ConfigMap').filter((o) =>
      /^ferry-catalog(-[a-z0-9]+)?$/.test(o.metadata.name)
    )
    expect(found).toHaveLength(1)
    return found[0]
  }
  const sessionPolicies = (type: 'Ingress' | 'Egress'): Any[] =>
    all('NetworkPolicy').filter(
      (p: Any) =>
        p.metadata.namespace === 'ferry-sessions' &&
        matches(p.spec.podSelector.matchLabels, SESSION_LABELS) &&
        p.spec.policyTypes.includes(type)
    )

  beforeAll(() => {
    objects = parseObjects(kustomize(join(manifestsDir, dir)))
  })

  it('renders the expected objects', () => {
    const names = objects.map((o) => `${o.kind} ${o.metadata.namespace ?? ''}/${o.metadata.name}`)
    expect(names).toEqual(
      expect.arrayContaining([
        'Namespace /ferry',
        'Namespace /ferry-sessions',
        'ServiceAccount ferry/ferry-bridge',
        'ServiceAccount ferry-sessions/ferry-session',
        'Role ferry-sessions/ferry-bridge',
        'RoleBinding ferry-sessions/ferry-bridge',
        'Deployment ferry/ferry-bridge',
        'Service ferry/ferry-bridge',
        'Ingress ferry/ferry-bridge',
        'HorizontalPodAutoscaler ferry/ferry-bridge',
        'PodDisruptionBudget ferry/ferry-bridge',
        'NetworkPolicy ferry-sessions/ferry-session-ingress',
        'NetworkPolicy ferry-sessions/ferry-session-egress',
        'NetworkPolicy ferry/ferry-bridge-egress',
      ])
    )
    catalogConfigMap()
    // Every namespaced object lives in one of Ferry's two namespaces.
    for (const object of objects) {
      if (object.kind !== 'Namespace') {
        expect(['ferry', 'ferry-sessions'], ref(object)).toContain(object.metadata.namespace)
      }
    }
  })

  it('validates every object with its kubernetes-models class', async () => {
    const failures: string[] = []
    for (const object of objects) {
      try {
        const Model = await modelClass(object)
        new Model(object).validate()
      } catch (error) {
        failures.push(`${ref(object)}: ${(error as Error).message}`)
      }
    }
    expect(failures).toEqual([])
  })

  it('has no fields unknown to the Kubernetes API', () => {
    const unknown = unknownFields(objects)
      .filter(({ paths }) => paths.length > 0)
      .map(({ object, paths }) => `${ref(object)}: ${paths.join(', ')}`)
    expect(unknown).toEqual([])
  })

  it('uses RFC 1123 names', () => {
    const problems: string[] = []
    const check = (where: string, name: unknown) => {
      const problem = nameProblem(name)
      if (problem) problems.push(`${where}: ${problem}`)
    }
    for (const object of objects) {
      check(ref(object), object.metadata.name)
      for (const pod of podSpecs(object)) {
        for (const container of [
          ...((pod.initContainers as Obj[]) ?? []),
          ...((pod.containers as Obj[]) ?? []),
        ]) {
          check(`${ref(object)} container`, container.name)
          for (const port of (container.ports as Obj[]) ?? []) {
            // Port names are IANA service names: at most 15 characters, at least one letter.
            check(`${ref(object)} port`, port.name)
            if (String(port.name).length > 15 || !/[a-z]/.test(String(port.name))) {
              problems.push(
                `${ref(object)}: port name ${String(port.name)} is not an IANA service name`
              )
            }
          }
        }
        for (const volume of (pod.volumes as Obj[]) ?? [])
          check(`${ref(object)} volume`, volume.name)
      }
    }
    expect(problems).toEqual([])
  })

  it('labels every object with app.kubernetes.io/* labels', () => {
    for (const object of objects) {
      const labels = (object.metadata.labels ?? {}) as Obj
      for (const key of ['name', 'instance', 'part-of', 'managed-by']) {
        expect(labels[`app.kubernetes.io/${key}`], `${ref(object)} label ${key}`).toBeTruthy()
      }
      expect(labels['app.kubernetes.io/part-of'], ref(object)).toBe('ferry')
    }
    const template = deployment().spec.template.metadata.labels
    expect(template).toMatchObject({ ...BRIDGE_LABELS, 'app.kubernetes.io/part-of': 'ferry' })
    expect(matches(deployment().spec.selector.matchLabels, template)).toBe(true)
  })

  it('runs every container with the restricted security context', () => {
    const templates = objects.flatMap((object) => podSpecs(object).map((pod) => ({ object, pod })))
    expect(templates.length).toBeGreaterThan(0)
    for (const { object, pod } of templates) {
      expect(restrictedViolations(pod), ref(object)).toEqual([])
    }
  })

  it('enforces Pod Security "restricted" on the namespaces', () => {
    for (const name of ['ferry', 'ferry-sessions']) {
      expect(one('Namespace', name).metadata.labels).toMatchObject({
        'pod-security.kubernetes.io/enforce': 'restricted',
        'pod-security.kubernetes.io/enforce-version': 'latest',
        'pod-security.kubernetes.io/warn': 'restricted',
        'pod-security.kubernetes.io/audit': 'restricted',
      })
    }
  })

  it('grants the bridge least privilege and session pods none', () => {
    expect(all('ClusterRole')).toEqual([])
    expect(all('ClusterRoleBinding')).toEqual([])
    expect(all('Role')).toHaveLength(1)
    const role = one('Role', 'ferry-bridge', 'ferry-sessions')
    const rules = (role.rules as Any[]).map((rule) => ({
      apiGroups: sorted(rule.apiGroups),
      resources: sorted(rule.resources),
      verbs: sorted(rule.verbs),
    }))
    expect(rules).toEqual(EXPECTED_RULES)
    for (const rule of role.rules as Any[]) {
      const fields = [rule.apiGroups, rule.resources, rule.verbs, rule.resourceNames ?? []].flat()
      expect(fields, 'no wildcards').not.toContain('*')
      expect(rule.resources, 'no secrets').not.toContain('secrets')
      expect(rule.verbs, 'no escalation verbs').not.toEqual(
        expect.arrayContaining([expect.stringMatching(/^(escalate|bind|impersonate)$/)])
      )
    }
    const bindings = all('RoleBinding') as Any[]
    expect(bindings).toHaveLength(1)
    expect(bindings[0].roleRef).toEqual({
      apiGroup: 'rbac.authorization.k8s.io',
      kind: 'Role',
      name: 'ferry-bridge',
    })
    expect(bindings[0].subjects).toEqual([
      { kind: 'ServiceAccount', name: 'ferry-bridge', namespace: 'ferry' },
    ])
    const session = one('ServiceAccount', 'ferry-session', 'ferry-sessions')
    expect(session.automountServiceAccountToken).toBe(false)
  })

  it('runs the bridge as documented', () => {
    const d = deployment()
    const pod = d.spec.template.spec
    expect(pod.serviceAccountName).toBe('ferry-bridge')
    expect(pod.automountServiceAccountToken).toBe(true)
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 10001 })
    expect(pod.topologySpreadConstraints?.length ?? pod.affinity?.podAntiAffinity).toBeTruthy()
    expect(pod.containers).toHaveLength(1)
    const [bridge] = pod.containers
    expect(bridge.image).toMatch(/^ghcr\.io\/ferry-mcp\/bridge[:@]/)
    expect(bridge.securityContext).toMatchObject({ runAsUser: 10001, runAsNonRoot: true })
    expect(bridge.ports).toEqual([{ name: 'http', containerPort: 8080, protocol: 'TCP' }])
    const env = Object.fromEntries(bridge.env.map((e: Any) => [e.name, e.value]))
    expect(env).toEqual({
      HOST: '0.0.0.0',
      PORT: '8080',
      FERRY_CONFIG: '/etc/ferry/catalog.yaml',
      FERRY_SESSION_KEYS: '/etc/ferry/keys/keys.json',
    })
    expect(bridge.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'http' })
    expect(bridge.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'http' })
    expect(bridge.resources.requests).toMatchObject({
      cpu: expect.any(String),
      memory: expect.any(String),
    })
    expect(bridge.resources.limits.memory).toBeTruthy()

    // The env paths point at the mounted catalog and keyring.
    const volumes = Object.fromEntries(pod.volumes.map((v: Any) => [v.name, v]))
    const mountAt = (path: string) => bridge.volumeMounts.find((m: Any) => m.mountPath === path)
    const catalogMount = mountAt('/etc/ferry/catalog.yaml')
    expect(catalogMount).toMatchObject({ subPath: 'catalog.yaml', readOnly: true })
    expect(volumes[catalogMount.name].configMap.name).toBe(catalogConfigMap().metadata.name)
    expect(catalogConfigMap().data['catalog.yaml']).toBeTruthy()
    const keysMount = mountAt('/etc/ferry/keys')
    expect(keysMount.readOnly).toBe(true)
    expect(volumes[keysMount.name].secret).toMatchObject({
      secretName: 'ferry-session-keys',
      items: [{ key: 'keys.json', path: 'keys.json' }],
    })
    // Not optional: a bridge must never fall back to a random per-replica key.
    expect(volumes[keysMount.name].secret.optional).not.toBe(true)
  })

  it('gives the bridge more termination grace than its shutdownGrace and preStop pause', () => {
    const pod = deployment().spec.template.spec
    const catalog = parseCatalog(catalogConfigMap().data['catalog.yaml'])
    const preStop = pod.containers[0].lifecycle?.preStop?.exec?.command ?? []
    const pauseMs = preStop[0] === 'sleep' ? Number(preStop[1]) * 1000 : 0
    expect(pod.terminationGracePeriodSeconds * 1000).toBeGreaterThan(
      catalog.bridge.shutdownGrace + pauseMs
    )
  })

  it('exposes the bridge through a ClusterIP Service, port 80 to the http port', () => {
    const service = one('Service', 'ferry-bridge', 'ferry')
    expect(service.spec.type).toBe('ClusterIP')
    expect(service.spec.sessionAffinity ?? 'None').toBe('None')
    expect(service.spec.ports).toEqual([
      expect.objectContaining({ name: 'http', port: 80, targetPort: 'http', protocol: 'TCP' }),
    ])
    expect(matches(service.spec.selector, deployment().spec.template.metadata.labels)).toBe(true)
  })

  it('configures the Ingress for Server-Sent Events and no stickiness', () => {
    const ingress = one('Ingress', 'ferry-bridge', 'ferry')
    const annotations = ingress.metadata.annotations as Record<string, string>
    expect(ingress.spec.ingressClassName).toBe('nginx')
    expect(annotations['nginx.ingress.kubernetes.io/proxy-buffering']).toBe('off')
    expect(
      Number(annotations['nginx.ingress.kubernetes.io/proxy-read-timeout'])
    ).toBeGreaterThanOrEqual(3600)
    expect(
      Number(annotations['nginx.ingress.kubernetes.io/proxy-send-timeout'])
    ).toBeGreaterThanOrEqual(60)
    for (const sticky of ['affinity', 'affinity-mode', 'session-cookie-name', 'upstream-hash-by']) {
      expect(annotations, sticky).not.toHaveProperty(`nginx.ingress.kubernetes.io/${sticky}`)
    }
    const backends = (ingress.spec.rules as Any[]).flatMap((rule) =>
      rule.http.paths.map((path: Any) => path.backend.service)
    )
    expect(backends.length).toBeGreaterThan(0)
    const servicePorts = one('Service', 'ferry-bridge', 'ferry').spec.ports.map((p: Any) => p.name)
    for (const backend of backends) {
      expect(backend.name).toBe('ferry-bridge')
      expect(servicePorts).toContain(backend.port.name)
    }
  })

  it('autoscales and protects the bridge Deployment', () => {
    const hpa = one('HorizontalPodAutoscaler', 'ferry-bridge', 'ferry')
    expect(hpa.spec.scaleTargetRef).toEqual({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      name: 'ferry-bridge',
    })
    expect(hpa.spec.minReplicas).toBeGreaterThanOrEqual(2)
    expect(hpa.spec.maxReplicas).toBe(10)
    expect(hpa.spec.metrics).toEqual([
      expect.objectContaining({
        type: 'Resource',
        resource: expect.objectContaining({ name: 'cpu' }),
      }),
    ])
    // A re-apply must not scale below the autoscaler's floor.
    expect(deployment().spec.replicas).toBe(hpa.spec.minReplicas)
    const pdb = one('PodDisruptionBudget', 'ferry-bridge', 'ferry')
    expect(pdb.spec.minAvailable).toBe(1)
    expect(matches(pdb.spec.selector.matchLabels, deployment().spec.template.metadata.labels)).toBe(
      true
    )
  })

  it('lets only bridge pods reach session pods, on 8080', () => {
    const policies = sessionPolicies('Ingress')
    expect(policies.map((p) => p.metadata.name)).toEqual(['ferry-session-ingress'])
    expect(policies[0].spec.ingress).toEqual([
      {
        from: [
          {
            namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'ferry' } },
            podSelector: { matchLabels: BRIDGE_LABELS },
          },
        ],
        ports: [{ protocol: 'TCP', port: 8080 }],
      },
    ])
    // The bridge's pods carry the label the policy admits, in the namespace it names.
    expect(deployment().metadata.namespace).toBe('ferry')
    expect(matches(BRIDGE_LABELS, deployment().spec.template.metadata.labels)).toBe(true)
  })

  it('limits session egress to DNS, plus public HTTPS where an overlay opts in', () => {
    const base = one('NetworkPolicy', 'ferry-session-egress', 'ferry-sessions')
    expect(base.spec.egress).toEqual([dnsRule])
    for (const policy of sessionPolicies('Egress')) {
      for (const rule of policy.spec.egress as Any[]) {
        if (isDeepStrictEqual(rule, dnsRule)) continue
        // Anything else must name its ports and keep private ranges (pods, nodes, cloud
        // metadata) closed.
        expect(rule.ports?.length, policy.metadata.name).toBeGreaterThan(0)
        for (const peer of rule.to ?? [{}]) {
          expect(peer.ipBlock, `${policy.metadata.name}: only ipBlock peers`).toBeDefined()
          expect(peer.ipBlock.except ?? [], policy.metadata.name).toEqual(
            expect.arrayContaining(PRIVATE_RANGES)
          )
        }
      }
    }
  })

  it('lets the bridge reach session sidecars, the API server and DNS only', () => {
    const policy = one('NetworkPolicy', 'ferry-bridge-egress', 'ferry')
    expect(policy.spec.podSelector.matchLabels).toEqual(BRIDGE_LABELS)
    expect(policy.spec.policyTypes).toEqual(['Egress'])
    const [sessions, api, dns] = policy.spec.egress
    expect(sessions).toEqual({
      to: [
        {
          namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'ferry-sessions' } },
          podSelector: { matchLabels: SESSION_LABELS },
        },
      ],
      ports: [{ protocol: 'TCP', port: 8080 }],
    })
    expect(api.ports).toEqual([
      { protocol: 'TCP', port: 443 },
      { protocol: 'TCP', port: 6443 },
    ])
    expect(dns).toEqual(dnsRule)
    expect(policy.spec.egress).toHaveLength(3)
  })

  it('ships a catalog the bridge accepts, pointing at the session namespace and account', () => {
    const catalog = parseCatalog(catalogConfigMap().data['catalog.yaml'], `${dir} catalog`)
    const servers = Object.entries(catalog.servers)
    expect(servers.length).toBeGreaterThan(0)
    for (const [name, server] of servers) {
      if (server.runtime !== 'kubernetes') continue
      const namespace = one('Namespace', server.namespace)
      expect(namespace.metadata.labels['pod-security.kubernetes.io/enforce'], name).toBe(
        'restricted'
      )
      expect(server.serviceAccountName, name).toBe('ferry-session')
      expect(server.image, name).toMatch(/^ghcr\.io\/ferry-mcp\/sidecar[:@]/)
      // The bridge can only manage Jobs where its Role is bound.
      expect(one('RoleBinding', 'ferry-bridge').metadata.namespace, name).toBe(server.namespace)
    }
  })
})

describe('manifests/overlays/example', () => {
  let objects: KubeObject[] = []
  const one = (kind: string, name: string): Any =>
    objects.find((o) => o.kind === kind && o.metadata.name === name)

  beforeAll(() => {
    objects = parseObjects(kustomize(join(manifestsDir, 'overlays', 'example')))
  })

  it('runs 3 bridge replicas with the autoscaler floor raised to match', () => {
    expect(one('Deployment', 'ferry-bridge').spec.replicas).toBe(3)
    expect(one('HorizontalPodAutoscaler', 'ferry-bridge').spec.minReplicas).toBe(3)
  })

  it('serves mcp.example.com over TLS', () => {
    const ingress = one('Ingress', 'ferry-bridge')
    expect(ingress.spec.rules.map((r: Any) => r.host)).toEqual(['mcp.example.com'])
    expect(ingress.spec.tls).toEqual([{ hosts: ['mcp.example.com'], secretName: 'ferry-tls' }])
  })

  it('pins the images and replaces the catalog', () => {
    const container = one('Deployment', 'ferry-bridge').spec.template.spec.containers[0]
    expect(container.image).toMatch(
      /^ghcr\.io\/ferry-mcp\/bridge(:[\w.-]+)?(@sha256:[0-9a-f]{64})?$/
    )
    const configMap = objects.find(
      (o) => o.kind === 'ConfigMap' && o.metadata.name.startsWith('ferry-catalog')
    ) as Any
    const catalog = parseCatalog(configMap.data['catalog.yaml'])
    expect(catalog.bridge.publicUrl).toBe('https://mcp.example.com')
    expect(catalog.bridge.allowedHosts).toEqual(['mcp.example.com'])
    expect(Object.keys(catalog.servers).length).toBeGreaterThan(1)
  })
})

describe('kustomization files', () => {
  // What kustomize v2.0.3 (embedded in kubectl 1.20) understands, minus `commonLabels`, which
  // would rewrite the Deployment's immutable selector and the NetworkPolicy selectors.
  const V2_FIELDS = new Set([
    'apiVersion',
    'kind',
    'bases',
    'resources',
    'configMapGenerator',
    'secretGenerator',
    'generatorOptions',
    'images',
    'patchesStrategicMerge',
    'patchesJson6902',
    'namePrefix',
    'nameSuffix',
    'commonAnnotations',
    'vars',
    'crds',
  ])
  it.each(kustomizations)('%s uses only fields kustomize v2.0.3 knows', (dir) => {
    const path = join(manifestsDir, dir, 'kustomization.yaml')
    const kustomization = parseYaml(readFileSync(path, 'utf8')) as Obj
    expect(Object.keys(kustomization).filter((key) => !V2_FIELDS.has(key))).toEqual([])
    // v2.0.3 reads only files from `resources`; directories go in `bases`.
    for (const resource of (kustomization.resources as string[]) ?? []) {
      expect(statSync(join(manifestsDir, dir, resource)).isFile(), resource).toBe(true)
    }
    expect(
      kustomization.namespace,
      'a global namespace would merge both namespaces'
    ).toBeUndefined()
  })
})

describe('the checks themselves', () => {
  // A session Job shaped like the Kubernetes runtime's (notes/kubernetes.md §5), used to show
  // that the checks catch what kubernetes-models lets through.
  const job = (): Any => ({
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: { name: 'mcp-abc123', namespace: 'ferry-sessions', labels: SESSION_LABELS },
    spec: {
      backoffLimit: 0,
      ttlSecondsAfterFinished: 300,
      activeDeadlineSeconds: 14400,
      template: {
        metadata: { labels: SESSION_LABELS },
        spec: {
          restartPolicy: 'Never',
          automountServiceAccountToken: false,
          securityContext: {
            runAsNonRoot: true,
            runAsUser: 10001,
            seccompProfile: { type: 'RuntimeDefault' },
          },
          containers: [
            {
              name: 'mcp',
              image: 'ghcr.io/ferry-mcp/sidecar:0.1.0',
              command: ['node', '/ferry/sidecar.mjs', '--', 'npx', '-y', 'server'],
              ports: [{ name: 'ws', containerPort: 8080 }],
              env: [{ name: 'POD_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } }],
              resources: { requests: { cpu: '100m', memory: '128Mi' } },
              securityContext: {
                allowPrivilegeEscalation: false,
                readOnlyRootFilesystem: true,
                capabilities: { drop: ['ALL'] },
              },
            },
          ],
          volumes: [{ name: 'tmp', emptyDir: { sizeLimit: '256Mi' } }],
        },
      },
    },
  })

  it('accept a well-formed session Job', async () => {
    const Model = await modelClass(job())
    expect(() => new Model(job()).validate()).not.toThrow()
    expect(unknownFields([job()])[0]!.paths).toEqual([])
    expect(restrictedViolations(job().spec.template.spec)).toEqual([])
  })

  it('find misspelled fields that kubernetes-models accepts', async () => {
    const bad = job()
    bad.spec.backofLimit = 0
    bad.spec.template.spec.containers[0].comand = ['x']
    bad.spec.template.spec.containers[0].securityContext.capabilities.dorp = ['ALL']
    const Model = await modelClass(bad)
    expect(() => new Model(bad).validate()).not.toThrow()
    expect(unknownFields([bad])[0]!.paths.sort()).toEqual([
      'spec.backofLimit',
      'spec.template.spec.containers[0].comand',
      'spec.template.spec.containers[0].securityContext.capabilities.dorp',
    ])
  })

  it('find Pod Security violations', () => {
    const bad = job()
    const pod = bad.spec.template.spec
    pod.hostNetwork = true
    pod.securityContext.runAsUser = 0
    pod.volumes.push({ name: 'host', hostPath: { path: '/' } })
    pod.containers[0].securityContext = { capabilities: { add: ['NET_ADMIN'] } }
    expect(restrictedViolations(pod)).toEqual([
      'pod sets hostNetwork',
      'volume host is of type hostPath',
      'container mcp does not set allowPrivilegeEscalation: false',
      'container mcp does not set readOnlyRootFilesystem: true',
      'container mcp does not drop ALL capabilities',
      'container mcp adds capabilities NET_ADMIN',
      'container mcp has no numeric non-root runAsUser',
    ])
  })

  it('reject names that are not RFC 1123 labels', () => {
    expect(nameProblem('ferry-bridge')).toBeUndefined()
    expect(nameProblem('Bad_Name')).toMatch(/RFC 1123/)
    expect(nameProblem('a'.repeat(64))).toMatch(/63/)
  })
})
