/**
 * @module test/k8s/cluster.test
 *
 * `startSimulatedCluster` as a whole: the kubeconfig it hands out (also as file text) works and
 * carries the token, `orphans()` reports what is left, the kubelet can be limited to some
 * namespaces, and `stop()` leaves no process behind, grandchildren included.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { BatchV1Api, CoreV1Api, KubeConfig, type V1Pod } from '@kubernetes/client-node'
import { descendantsOf, isAlive, waitGone } from '../helpers/processes.ts'
import { startSimulatedCluster, type SimulatedCluster } from './cluster.ts'
import type { Pod } from './types.ts'
import { apiFailure, downwardEnv, jobBody, randomPort, TCP_SERVER, waitFor } from './testing.ts'

let cluster: SimulatedCluster | undefined

afterEach(async () => {
  await cluster?.stop()
  cluster = undefined
})

const server = (port: number) => ({
  name: 'main',
  image: 'ferry/sidecar:1',
  command: ['node', '-e', TCP_SERVER],
  env: [...downwardEnv, { name: 'PORT', value: String(port) }],
  readinessProbe: { tcpSocket: { port: port } },
})

const ready = (pod: V1Pod) =>
  pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')

describe('startSimulatedCluster', () => {
  it('hands out a kubeconfig (object and file text) with the namespace and token', async () => {
    cluster = await startSimulatedCluster({ namespace: 'team', kubelet: { ipPrefix: '127.0.32.' } })
    const fromText = new KubeConfig()
    fromText.loadFromString(cluster.kubeconfigText)
    expect(fromText.getContextObject(fromText.getCurrentContext())?.namespace).toBe('team')
    const batch = fromText.makeApiClient(BatchV1Api)
    await batch.createNamespacedJob({
      namespace: 'team',
      body: jobBody({ name: 'hello', container: server(randomPort()) }),
    })
    expect((await batch.listNamespacedJob({ namespace: 'team' })).items).toHaveLength(1)

    const anonymous = new KubeConfig()
    anonymous.loadFromClusterAndUser(
      { name: 'c', server: cluster.url, skipTLSVerify: true },
      { name: 'u' }
    )
    expect(
      (
        await apiFailure(
          anonymous.makeApiClient(BatchV1Api).listNamespacedJob({ namespace: 'team' })
        )
      ).code
    ).toBe(401)
  })

  it('stop() kills every pod process and its children; orphans() lists what was left', async () => {
    cluster = await startSimulatedCluster({ kubelet: { ipPrefix: '127.0.32.', stopGraceMs: 500 } })
    const batch = cluster.kubeconfig.makeApiClient(BatchV1Api)
    const core = cluster.kubeconfig.makeApiClient(CoreV1Api)
    const ns = cluster.namespace
    const parent = {
      name: 'main',
      image: 'node:24',
      command: [
        'node',
        '-e',
        "require('node:child_process').spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' }); process.on('SIGTERM', () => {}); setInterval(() => {}, 1000)",
      ],
    }
    await batch.createNamespacedJob({
      namespace: ns,
      body: jobBody({ name: 'tree', container: parent }),
    })
    await batch.createNamespacedJob({
      namespace: ns,
      body: jobBody({ name: 'srv', container: server(randomPort()) }),
    })
    await waitFor('both pods running', async () => {
      const pods = (await core.listNamespacedPod({ namespace: ns })).items
      return (
        pods.length === 2 &&
        pods.every((pod) => pod.status?.phase === 'Running') &&
        pods.some(ready)
      )
    })
    const processes = cluster.kubelet.processes()
    expect(processes).toHaveLength(2)
    const tree = processes.find((p) => p.name.startsWith('tree-'))!
    const children = await waitFor('the grandchild', () => {
      const found = descendantsOf(tree.pid)
      return found.length ? found : undefined
    })
    const orphans = cluster.orphans()
    expect(orphans.jobs.sort()).toEqual([`${ns}/srv`, `${ns}/tree`])
    expect(orphans.pods).toHaveLength(2)

    await cluster.stop()
    expect(cluster.orphans().processes).toEqual([])
    const all = [...processes.map((p) => p.pid), ...children]
    expect(await waitGone(all, 3000)).toEqual([])
    expect(all.filter(isAlive)).toEqual([])
  })

  it('uses 127.0.0.N pod IPs by default and serves only the namespaces it is given', async () => {
    cluster = await startSimulatedCluster({
      namespace: 'served',
      kubelet: { namespaces: ['served'] },
    })
    const batch = cluster.kubeconfig.makeApiClient(BatchV1Api)
    const core = cluster.kubeconfig.makeApiClient(CoreV1Api)
    await batch.createNamespacedJob({
      namespace: 'served',
      body: jobBody({ name: 'in', container: server(randomPort()) }),
    })
    await batch.createNamespacedJob({
      namespace: 'ignored',
      body: jobBody({ name: 'out', container: server(randomPort()) }),
    })
    const pod = await waitFor('the served pod Ready', async () =>
      (await core.listNamespacedPod({ namespace: 'served' })).items.find(ready)
    )
    expect(pod.status?.podIP).toMatch(/^127\.0\.0\.\d+$/)
    const ignored = (await core.listNamespacedPod({ namespace: 'ignored' })).items
    expect(ignored).toHaveLength(1)
    expect(ignored[0]!.spec?.nodeName).toBeUndefined()
  })
})

describe('identities', () => {
  it('aims faults at the code under test while the kubelet keeps working', async () => {
    cluster = await startSimulatedCluster({ kubelet: { ipPrefix: '127.0.32.' } })
    const batch = cluster.kubeconfig.makeApiClient(BatchV1Api)
    const core = cluster.kubeconfig.makeApiClient(CoreV1Api)
    await batch.createNamespacedJob({
      namespace: cluster.namespace,
      body: jobBody({ name: 'busy', container: server(randomPort()) }),
    })
    cluster.api.failNext('*', '*', 403, 1000, { user: cluster.user })
    const denied = await apiFailure(core.listNamespacedPod({ namespace: cluster.namespace }))
    expect(denied.code).toBe(403)
    expect(denied.status?.message).toBe(
      `pods is forbidden: User "ferry-bridge" cannot list resource "pods" in API group "" in the namespace "${cluster.namespace}"`
    )
    await waitFor('the pod Ready anyway', () =>
      cluster!.api.store
        .list<Pod>('pods')
        .some((pod) =>
          pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')
        )
    )
    const users = new Set(cluster.api.requests.map((request) => request.user))
    expect(users).toEqual(new Set(['ferry-bridge', cluster.kubeletUser]))
    cluster.api.faults.clear()
  })
})
