/**
 * @module test/k8s/kubelet-simulator.test
 *
 * The whole simulated cluster through client-node: pods run real local processes on their own
 * loopback IPs, become Ready only once their probe passes, report exits and injected failures
 * the way a kubelet does, and stop on deletion. Every test checks that no process is left.
 */
import { connect } from 'node:net'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import {
  BatchV1Api,
  CoreV1Api,
  type V1Container,
  type V1Job,
  type V1Pod,
  Watch,
} from '@kubernetes/client-node'
import { startSimulatedCluster, type SimulatedCluster } from './cluster.ts'
import { FAIL_AFTER_ANNOTATION, FAIL_ANNOTATION, START_DELAY_ANNOTATION } from './sim-failures.ts'
import {
  apiFailure,
  downwardEnv,
  HTTP_SERVER,
  jobBody,
  randomPort,
  TCP_SERVER,
  waitFor,
} from './testing.ts'

const PREFIX = '127.0.31.'

let cluster: SimulatedCluster
let batch: BatchV1Api
let core: CoreV1Api
let ns: string
const pids = new Set<number>()
const aborts: AbortController[] = []

const isAlive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

beforeEach(async () => {
  cluster = await startSimulatedCluster({
    namespace: 'sim',
    kubelet: { ipPrefix: PREFIX, maxGracePeriodMs: 3000, imagePullBackOffMs: 150 },
    controller: { backoffBaseMs: 50 },
  })
  batch = cluster.kubeconfig.makeApiClient(BatchV1Api)
  core = cluster.kubeconfig.makeApiClient(CoreV1Api)
  ns = cluster.namespace
})

afterEach(async () => {
  for (const abort of aborts.splice(0)) abort.abort()
  for (const process of cluster.kubelet.processes()) pids.add(process.pid)
  await cluster.stop()
  expect(cluster.orphans().processes).toEqual([])
  const alive = [...pids].filter(isAlive)
  pids.clear()
  expect(alive).toEqual([])
})

const track = () => {
  for (const process of cluster.kubelet.processes()) pids.add(process.pid)
}

const tcpServer = (port: number, env: Record<string, string> = {}, probe = true): V1Container => ({
  name: 'main',
  image: 'ferry/sidecar:1',
  command: ['node', '-e', TCP_SERVER],
  env: [
    ...downwardEnv,
    { name: 'PORT', value: String(port) },
    ...Object.entries(env).map(([name, value]) => ({ name, value })),
  ],
  ports: [{ name: 'ws', containerPort: port }],
  ...(probe ? { readinessProbe: { tcpSocket: { port: 'ws' }, periodSeconds: 1 } } : {}),
})

const nodeScript = (source: string): V1Container => ({
  name: 'main',
  image: 'node:24',
  command: ['node', '-e', source],
})

const create = (options: Parameters<typeof jobBody>[0]) =>
  batch.createNamespacedJob({ namespace: ns, body: jobBody(options) })

const podOf = async (job: string): Promise<V1Pod | undefined> =>
  (await core.listNamespacedPod({ namespace: ns, labelSelector: `job-name=${job}` })).items[0]

const waitPod = (
  job: string,
  what: string,
  predicate: (pod: V1Pod) => boolean,
  timeoutMs = 10_000
) =>
  waitFor(
    `${job}: ${what}`,
    async () => {
      const pod = await podOf(job)
      track()
      return pod && predicate(pod) ? pod : undefined
    },
    timeoutMs
  )

const isReady = (pod: V1Pod) =>
  pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false
const state = (pod: V1Pod) => pod.status?.containerStatuses?.[0]?.state
const jobCondition = async (name: string, type: string, timeoutMs = 10_000): Promise<V1Job> =>
  waitFor(
    `${name} ${type}`,
    async () => {
      const job = await batch.readNamespacedJob({ name, namespace: ns })
      return job.status?.conditions?.some((c) => c.type === type && c.status === 'True')
        ? job
        : undefined
    },
    timeoutMs
  )

const dial = (host: string, port: number) =>
  new Promise<string>((resolve, reject) => {
    const socket = connect({ host, port })
    let data = ''
    socket.on('data', (chunk) => (data += chunk))
    socket.on('end', () => resolve(data))
    socket.on('error', reject)
  })

describe('running pods', () => {
  it('runs the command as a real process that is Ready only once its port accepts TCP', async () => {
    const port = randomPort()
    const seen: string[] = []
    const watch = await new Watch(cluster.kubeconfig).watch(
      `/api/v1/namespaces/${ns}/pods`,
      { labelSelector: 'job-name=srv' },
      (type, pod: V1Pod) => seen.push(`${type}:${pod.status?.phase}:${isReady(pod)}`),
      () => {}
    )
    aborts.push(watch)
    await create({ name: 'srv', container: tcpServer(port, { LISTEN_DELAY_MS: '700' }) })
    const running = await waitPod('srv', 'Running', (pod) => pod.status?.phase === 'Running')
    const ip = running.status!.podIP!
    expect(ip.startsWith(PREFIX)).toBe(true)
    expect(running.status?.podIPs).toEqual([{ ip }])
    expect(running.status?.hostIP).toBe('127.0.0.1')
    expect(running.spec?.nodeName).toBe('sim-node')
    expect(state(running)?.running?.startedAt).toBeInstanceOf(Date)
    if (!isReady(running)) {
      // Not Ready yet means nothing listens yet.
      await expect(dial(ip, port)).rejects.toMatchObject({ code: 'ECONNREFUSED' })
    }
    const ready = await waitPod('srv', 'Ready', isReady)
    expect(ready.status?.containerStatuses?.[0]?.ready).toBe(true)
    expect(await dial(ip, port)).toBe(`${ip} ${ready.metadata!.name} ${ns}`)
    expect(seen[0]).toBe('ADDED:Pending:false')
    expect(seen).toContain('MODIFIED:Running:false')
    expect(seen.indexOf('MODIFIED:Running:true')).toBeGreaterThan(
      seen.indexOf('MODIFIED:Running:false')
    )
    const job = await waitFor('ready=1', async () => {
      const current = await batch.readNamespacedJob({ name: 'srv', namespace: ns })
      return current.status?.ready === 1 ? current : undefined
    })
    expect(job.status?.active).toBe(1)
  })

  it('probes httpGet readiness with real GETs and needs a success status', async () => {
    const port = randomPort()
    const container: V1Container = {
      name: 'main',
      image: 'node:24',
      command: ['node', '-e', HTTP_SERVER],
      env: [
        ...downwardEnv,
        { name: 'PORT', value: String(port) },
        { name: 'READY_AFTER_MS', value: '800' },
      ],
      readinessProbe: {
        httpGet: { path: '/healthz', port: port },
        periodSeconds: 1,
      },
    }
    await create({ name: 'http', container })
    const running = await waitPod('http', 'answering', (pod) => pod.status?.phase === 'Running')
    const ip = running.status!.podIP!
    const early = await waitFor('the server to answer', () =>
      fetch(`http://${ip}:${port}/healthz`).then((response) => response.status)
    )
    if (early === 503) expect(isReady((await podOf('http'))!)).toBe(false)
    await waitPod('http', 'Ready', isReady)
    expect((await fetch(`http://${ip}:${port}/healthz`)).status).toBe(200)
  })

  it('fills in downward-API env, $(VAR) expansion, HOSTNAME, Secrets and ConfigMaps; logs are served', async () => {
    await core.createNamespacedSecret({
      namespace: ns,
      body: { metadata: { name: 'creds' }, stringData: { token: 's3cret' } },
    })
    await core.createNamespacedConfigMap({
      namespace: ns,
      body: { metadata: { name: 'conf' }, data: { LEVEL: 'debug' } },
    })
    const container: V1Container = {
      ...nodeScript(
        'const e = process.env; console.log([e.POD_IP, e.POD_NAME, e.POD_NAMESPACE, e.HOSTNAME, e.TOKEN, e.CFG_LEVEL, e.GREETING, process.argv[1]].join("|"))'
      ),
      args: ['$(POD_NAME)'],
      env: [
        ...downwardEnv,
        { name: 'GREETING', value: 'hello $(POD_NAMESPACE)' },
        { name: 'TOKEN', valueFrom: { secretKeyRef: { name: 'creds', key: 'token' } } },
      ],
      envFrom: [{ configMapRef: { name: 'conf' }, prefix: 'CFG_' }],
    }
    await create({ name: 'env', container })
    const done = await waitPod('env', 'Succeeded', (pod) => pod.status?.phase === 'Succeeded')
    const name = done.metadata!.name!
    const log = await core.readNamespacedPodLog({ name, namespace: ns })
    expect(log.trim()).toBe(
      [done.status!.podIP, name, ns, name, 's3cret', 'debug', `hello ${ns}`, name].join('|')
    )
    expect(state(done)?.terminated).toMatchObject({ exitCode: 0, reason: 'Completed' })
    await jobCondition('env', 'Complete')
  })

  it('fails the Job with BackoffLimitExceeded when the process exits 1', async () => {
    await create({ name: 'exit1', container: nodeScript('process.exit(1)'), backoffLimit: 0 })
    const pod = await waitPod('exit1', 'Failed', (p) => p.status?.phase === 'Failed')
    expect(state(pod)?.terminated).toMatchObject({ exitCode: 1, reason: 'Error' })
    expect(isReady(pod)).toBe(false)
    const job = await jobCondition('exit1', 'Failed')
    expect(job.status?.conditions?.find((c) => c.type === 'Failed')?.reason).toBe(
      'BackoffLimitExceeded'
    )
  })

  it('gives every pod its own IP and reuses an IP once its pod is gone', async () => {
    await create({ name: 'ip-a', container: tcpServer(randomPort()) })
    await create({ name: 'ip-b', container: tcpServer(randomPort()) })
    const a = await waitPod('ip-a', 'an IP', (pod) => !!pod.status?.podIP)
    const b = await waitPod('ip-b', 'an IP', (pod) => !!pod.status?.podIP)
    expect(new Set([a.status?.podIP, b.status?.podIP])).toEqual(
      new Set([`${PREFIX}2`, `${PREFIX}3`])
    )
    await batch.deleteNamespacedJob({
      name: 'ip-a',
      namespace: ns,
      propagationPolicy: 'Background',
    })
    await waitFor(
      'ip-a pod gone',
      async () => !(await podOf('ip-a')) && !cluster.kubelet.allocatedIPs.includes(a.status!.podIP!)
    )
    await create({ name: 'ip-c', container: tcpServer(randomPort()) })
    const c = await waitPod('ip-c', 'an IP', (pod) => !!pod.status?.podIP)
    expect(c.status?.podIP).toBe(a.status?.podIP)
  })
})

describe('stopping pods', () => {
  it('Background delete sends SIGTERM, waits for the exit and removes the pod', async () => {
    await create({ name: 'term', container: tcpServer(randomPort()) })
    const pod = await waitPod('term', 'Ready', isReady)
    const [proc] = cluster.kubelet.processes()
    expect(proc).toMatchObject({ name: pod.metadata!.name, ip: pod.status!.podIP })
    await batch.deleteNamespacedJob({
      name: 'term',
      namespace: ns,
      propagationPolicy: 'Background',
    })
    await waitFor('the pod gone', async () => !(await podOf('term')))
    expect(isAlive(proc!.pid)).toBe(false)
    expect(cluster.orphans()).toMatchObject({ jobs: [], pods: [], processes: [] })
  })

  it('SIGKILLs a process that ignores SIGTERM after terminationGracePeriodSeconds', async () => {
    const exits: number[] = []
    const watch = await new Watch(cluster.kubeconfig).watch(
      `/api/v1/namespaces/${ns}/pods`,
      {},
      (_type, pod: V1Pod) => {
        const code = state(pod)?.terminated?.exitCode
        if (code !== undefined) exits.push(code)
      },
      () => {}
    )
    aborts.push(watch)
    await create({
      name: 'stubborn',
      container: tcpServer(randomPort(), { IGNORE_TERM: '1' }),
      terminationGracePeriodSeconds: 1,
    })
    const pod = await waitPod('stubborn', 'Ready', isReady)
    const startedAt = Date.now()
    await core.deleteNamespacedPod({ name: pod.metadata!.name!, namespace: ns })
    await waitFor('the pod gone', async () => !(await podOf('stubborn')), 5000)
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(900)
    expect(exits).toContain(137)
    expect(cluster.kubelet.logs(ns, pod.metadata!.name!)).toBeUndefined()
  })

  it('delete without propagationPolicy orphans the pod, whose process keeps running', async () => {
    await create({ name: 'orphan', container: tcpServer(randomPort()) })
    const pod = await waitPod('orphan', 'Ready', isReady)
    await batch.deleteNamespacedJob({ name: 'orphan', namespace: ns })
    await waitFor(
      'the Job gone',
      async () =>
        (await apiFailure(batch.readNamespacedJob({ name: 'orphan', namespace: ns }))).code === 404
    )
    const kept = await waitPod('orphan', 'orphaned', (p) => !p.metadata?.ownerReferences)
    expect(kept.metadata?.uid).toBe(pod.metadata?.uid)
    expect(cluster.kubelet.processes().map((p) => p.name)).toEqual([pod.metadata!.name])
    expect(cluster.orphans()).toMatchObject({ jobs: [], pods: [`${ns}/${pod.metadata!.name}`] })
  })

  it('activeDeadlineSeconds stops the running process and fails the Job with DeadlineExceeded', async () => {
    await create({ name: 'deadline', container: tcpServer(randomPort()), activeDeadlineSeconds: 1 })
    await waitPod('deadline', 'Ready', isReady)
    const job = await jobCondition('deadline', 'Failed', 6000)
    expect(job.status?.conditions?.find((c) => c.type === 'Failed')?.reason).toBe(
      'DeadlineExceeded'
    )
    await waitFor('the pod gone', async () => !(await podOf('deadline')))
    expect(cluster.kubelet.processes()).toEqual([])
  })

  it('ttlSecondsAfterFinished removes the finished Job and its pod', async () => {
    await create({
      name: 'ttl',
      container: nodeScript('setTimeout(() => {}, 100)'),
      ttlSecondsAfterFinished: 1,
    })
    await jobCondition('ttl', 'Complete')
    await waitFor(
      'the Job gone',
      async () =>
        (await apiFailure(batch.readNamespacedJob({ name: 'ttl', namespace: ns }))).code === 404,
      5000
    )
    await waitFor('the pod gone', async () => !(await podOf('ttl')))
  })
})

describe('injected failures', () => {
  const annotated = (name: string, mode: string, extra: Record<string, string> = {}) =>
    create({
      name,
      container: tcpServer(randomPort()),
      annotations: { [FAIL_ANNOTATION]: mode, ...extra },
    })

  it('image-pull: ErrImagePull, then ImagePullBackOff; nothing runs', async () => {
    await annotated('pull', 'image-pull')
    const first = await waitPod(
      'pull',
      'ErrImagePull',
      (pod) => !!state(pod)?.waiting?.reason?.match(/ErrImagePull|ImagePullBackOff/)
    )
    expect(first.status?.phase).toBe('Pending')
    const backoff = await waitPod(
      'pull',
      'ImagePullBackOff',
      (pod) => state(pod)?.waiting?.reason === 'ImagePullBackOff'
    )
    expect(state(backoff)?.waiting?.message).toBe('Back-off pulling image "ferry/sidecar:1"')
    expect(cluster.kubelet.processes()).toEqual([])
    const events = await core.listNamespacedEvent({
      namespace: ns,
      fieldSelector: `involvedObject.name=${backoff.metadata!.name}`,
    })
    expect(events.items.map((event) => event.reason)).toEqual(
      expect.arrayContaining(['Failed', 'BackOff'])
    )
  })

  it('the failure can be named by the image, and a malformed image is InvalidImageName', async () => {
    await create({
      name: 'by-image',
      container: { ...tcpServer(randomPort()), image: 'ferry.test/fail:image-pull' },
    })
    await waitPod('by-image', 'pull error', (pod) =>
      /ErrImagePull|ImagePullBackOff/.test(state(pod)?.waiting?.reason ?? '')
    )
    await create({
      name: 'bad-image',
      container: { ...tcpServer(randomPort()), image: 'Not/A Valid:Image' },
    })
    const pod = await waitPod(
      'bad-image',
      'InvalidImageName',
      (p) => state(p)?.waiting?.reason === 'InvalidImageName'
    )
    expect(state(pod)?.waiting?.message).toContain('invalid reference format')
  })

  it('unschedulable: PodScheduled=False/Unschedulable and a FailedScheduling event', async () => {
    await annotated('nospace', 'unschedulable')
    const pod = await waitPod(
      'nospace',
      'Unschedulable',
      (p) => !!p.status?.conditions?.some((c) => c.type === 'PodScheduled' && c.status === 'False')
    )
    expect(pod.status?.conditions?.find((c) => c.type === 'PodScheduled')).toMatchObject({
      reason: 'Unschedulable',
      message: '0/1 nodes are available: 1 Insufficient cpu.',
    })
    expect(pod.spec?.nodeName).toBeUndefined()
    expect(pod.status?.phase).toBe('Pending')
    const events = await core.listNamespacedEvent({
      namespace: ns,
      fieldSelector: 'reason=FailedScheduling',
    })
    expect(events.items).toHaveLength(1)
  })

  it('oom: the process is killed and reported OOMKilled with exit code 137', async () => {
    await annotated('oom', 'oom', { [FAIL_AFTER_ANNOTATION]: '200' })
    const pod = await waitPod('oom', 'Failed', (p) => p.status?.phase === 'Failed')
    expect(state(pod)?.terminated).toMatchObject({ reason: 'OOMKilled', exitCode: 137 })
    expect(cluster.kubelet.processes()).toEqual([])
    expect((await jobCondition('oom', 'Failed')).status?.failed).toBe(1)
  })

  it('crash: exits 1 right away', async () => {
    await annotated('crash', 'crash')
    const pod = await waitPod('crash', 'Failed', (p) => p.status?.phase === 'Failed')
    expect(state(pod)?.terminated).toMatchObject({ reason: 'Error', exitCode: 1 })
  })

  it('slow-start: stays ContainerCreating for the delay, then runs', async () => {
    const created = Date.now()
    await annotated('slow', 'slow-start', { [START_DELAY_ANNOTATION]: '800' })
    const creating = await waitPod(
      'slow',
      'ContainerCreating',
      (p) => state(p)?.waiting?.reason === 'ContainerCreating'
    )
    expect(creating.status?.podIP).toBeTruthy()
    await waitPod('slow', 'Running', (p) => p.status?.phase === 'Running')
    expect(Date.now() - created).toBeGreaterThanOrEqual(700)
  })

  it('config: CreateContainerConfigError, also for a missing Secret reference', async () => {
    await annotated('cfg', 'config')
    await waitPod(
      'cfg',
      'config error',
      (p) => state(p)?.waiting?.reason === 'CreateContainerConfigError'
    )
    const container = { ...tcpServer(randomPort()), envFrom: [{ secretRef: { name: 'absent' } }] }
    await create({ name: 'missing', container })
    const pod = await waitPod(
      'missing',
      'config error',
      (p) => state(p)?.waiting?.reason === 'CreateContainerConfigError'
    )
    expect(state(pod)?.waiting?.message).toBe('secret "absent" not found')
    expect(cluster.kubelet.processes()).toEqual([])
  })

  it('a command that cannot start: waiting RunContainerError', async () => {
    await create({
      name: 'noexec',
      container: { name: 'main', image: 'x:1', command: ['/nonexistent/ferry-binary'] },
    })
    const pod = await waitPod(
      'noexec',
      'RunContainerError',
      (p) => state(p)?.waiting?.reason === 'RunContainerError'
    )
    expect(state(pod)?.waiting?.message).toContain('executable file not found in $PATH')
  })

  it('evict: DisruptionTarget, phase Failed/Evicted, and podFailurePolicy FailJob sees it', async () => {
    await create({
      name: 'evict',
      container: tcpServer(randomPort()),
      backoffLimit: 2,
      podFailurePolicy: {
        rules: [
          { action: 'FailJob', onPodConditions: [{ type: 'DisruptionTarget', status: 'True' }] },
        ],
      },
    })
    const running = await waitPod('evict', 'Ready', isReady)
    await cluster.kubelet.evict(ns, running.metadata!.name!)
    const pod = await waitPod('evict', 'Evicted', (p) => p.status?.reason === 'Evicted')
    expect(pod.status?.phase).toBe('Failed')
    expect(pod.status?.conditions?.find((c) => c.type === 'DisruptionTarget')).toMatchObject({
      status: 'True',
      reason: 'TerminationByKubelet',
    })
    const job = await jobCondition('evict', 'Failed')
    expect(job.status?.conditions?.find((c) => c.type === 'Failed')?.reason).toBe(
      'PodFailurePolicy'
    )
  })
})
