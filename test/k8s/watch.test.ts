/**
 * @module test/k8s/watch.test
 *
 * The watch protocol of the fake API server as client-node's `Watch` and `makeInformer` see it:
 * ADDED/MODIFIED/DELETED with selectors, replay from a resourceVersion, 410 Expired once the
 * history is trimmed (and an informer relisting after it), BOOKMARKs and initial events.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import {
  CoreV1Api,
  KubeConfig,
  makeInformer,
  PatchStrategy,
  setHeaderOptions,
  type V1Pod,
  Watch,
} from '@kubernetes/client-node'
import { FakeApiServer } from './fake-api-server.ts'
import { waitFor } from './testing.ts'

const NS = 'watch'

let api: FakeApiServer
let kubeconfig: KubeConfig
let core: CoreV1Api
const cleanups: Array<() => unknown> = []

beforeEach(async () => {
  api = new FakeApiServer({ token: 't', bookmarkIntervalMs: 100 })
  const { url } = await api.start()
  kubeconfig = new KubeConfig()
  kubeconfig.loadFromClusterAndUser(
    { name: 'c', server: url, skipTLSVerify: true },
    { name: 'u', token: 't' }
  )
  core = kubeconfig.makeApiClient(CoreV1Api)
})

afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup()
  await api.stop()
})

const pod = (name: string, labels: Record<string, string> = { app: 'w' }): V1Pod => ({
  metadata: { name, labels },
  spec: {
    restartPolicy: 'Never',
    securityContext: { runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } },
    containers: [
      {
        name: 'main',
        image: 'busybox:1',
        securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } },
      },
    ],
  },
})

interface Seen {
  type: string
  name: string | undefined
  object: Record<string, unknown> & {
    metadata?: { name?: string; resourceVersion?: string; annotations?: Record<string, string> }
  }
}

const watchPods = async (query: Record<string, string | number | boolean | undefined>) => {
  const seen: Seen[] = []
  const done: { error?: unknown; called: boolean } = { called: false }
  const controller = await new Watch(kubeconfig).watch(
    `/api/v1/namespaces/${NS}/pods`,
    query,
    (type, object) => seen.push({ type, name: object?.metadata?.name, object }),
    (error) => Object.assign(done, { error, called: true })
  )
  cleanups.push(() => controller.abort())
  return { seen, done }
}

describe('watch', () => {
  it('streams ADDED, MODIFIED and DELETED, honouring the label selector', async () => {
    const { seen } = await watchPods({ labelSelector: 'app=w' })
    await core.createNamespacedPod({ namespace: NS, body: pod('a') })
    await core.createNamespacedPod({ namespace: NS, body: pod('other', { app: 'x' }) })
    await core.patchNamespacedPod(
      { name: 'a', namespace: NS, body: { metadata: { annotations: { touched: 'yes' } } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch)
    )
    await core.deleteNamespacedPod({ name: 'a', namespace: NS })
    await waitFor('three events', () => seen.length >= 3)
    expect(seen.map((event) => `${event.type}:${event.name}`)).toEqual([
      'ADDED:a',
      'MODIFIED:a',
      'DELETED:a',
    ])
  })

  it('reports an object leaving the selector as DELETED and entering it as ADDED', async () => {
    await core.createNamespacedPod({ namespace: NS, body: pod('mover', { app: 'x' }) })
    const { seen } = await watchPods({ labelSelector: 'app=w' })
    const relabel = (app: string) =>
      core.patchNamespacedPod(
        { name: 'mover', namespace: NS, body: { metadata: { labels: { app } } } },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch)
      )
    await relabel('w')
    await relabel('x')
    await waitFor('two events', () => seen.length >= 2)
    expect(seen.map((event) => event.type)).toEqual(['ADDED', 'DELETED'])
  })

  it('replays changes after ?resourceVersion=N and starts with the current state without it', async () => {
    await core.createNamespacedPod({ namespace: NS, body: pod('before') })
    const list = await core.listNamespacedPod({ namespace: NS })
    await core.createNamespacedPod({ namespace: NS, body: pod('after') })

    const replay = await watchPods({ resourceVersion: list.metadata!.resourceVersion })
    await waitFor('replayed event', () => replay.seen.length >= 1)
    expect(replay.seen.map((event) => `${event.type}:${event.name}`)).toEqual(['ADDED:after'])

    const fresh = await watchPods({})
    await waitFor('initial state', () => fresh.seen.length >= 2)
    expect(fresh.seen.map((event) => event.name).sort()).toEqual(['after', 'before'])
  })

  it('answers a resourceVersion older than the kept history with an ERROR 410 Expired event', async () => {
    await core.createNamespacedPod({ namespace: NS, body: pod('p1') })
    await core.createNamespacedPod({ namespace: NS, body: pod('p2') })
    api.compactHistory()
    const { seen, done } = await watchPods({ resourceVersion: '1' })
    await waitFor('the watch to end', () => done.called)
    expect(seen).toHaveLength(1)
    expect(seen[0]!.type).toBe('ERROR')
    expect(seen[0]!.object).toMatchObject({ kind: 'Status', code: 410, reason: 'Expired' })
    expect(done.error).toBeFalsy()
  })

  it('sends BOOKMARKs carrying the current resourceVersion when allowed', async () => {
    await core.createNamespacedPod({ namespace: NS, body: pod('b') })
    const { seen } = await watchPods({ allowWatchBookmarks: true })
    await waitFor('a bookmark', () => seen.some((event) => event.type === 'BOOKMARK'))
    const bookmark = seen.find((event) => event.type === 'BOOKMARK')!
    expect(bookmark.object.metadata?.resourceVersion).toBe(String(api.store.resourceVersion))
  })

  it('sends initial events then an initial-events-end bookmark for sendInitialEvents', async () => {
    await core.createNamespacedPod({ namespace: NS, body: pod('i') })
    const { seen } = await watchPods({
      sendInitialEvents: true,
      allowWatchBookmarks: true,
      resourceVersionMatch: 'NotOlderThan',
    })
    await waitFor('the end bookmark', () => seen.length >= 2)
    expect(seen[0]).toMatchObject({ type: 'ADDED', name: 'i' })
    expect(seen[1]!.type).toBe('BOOKMARK')
    expect(seen[1]!.object.metadata?.annotations).toEqual({ 'k8s.io/initial-events-end': 'true' })
  })

  it('fails the watch with statusCode 401 without credentials', async () => {
    const anonymous = new KubeConfig()
    anonymous.loadFromClusterAndUser(
      { name: 'c', server: api.url, skipTLSVerify: true },
      { name: 'u' }
    )
    const error = await new Promise<unknown>((resolve) => {
      void new Watch(anonymous).watch(`/api/v1/namespaces/${NS}/pods`, {}, () => {}, resolve)
    })
    expect((error as { statusCode?: number }).statusCode).toBe(401)
  })
})

describe('informer', () => {
  it('relists after a 410 and ends up with the current state', async () => {
    await core.createNamespacedPod({ namespace: NS, body: pod('old') })
    const informer = makeInformer<V1Pod>(kubeconfig, `/api/v1/namespaces/${NS}/pods`, () =>
      core.listNamespacedPod({ namespace: NS })
    )
    const errors: unknown[] = []
    const deleted: string[] = []
    informer.on('error', (error) => errors.push(error))
    informer.on('delete', (object) => deleted.push(object.metadata!.name!))
    await informer.start()
    cleanups.push(() => informer.stop())
    expect(informer.list(NS).map((p) => p.metadata?.name)).toEqual(['old'])
    const listsBefore = api.requests.filter((request) => request.verb === 'list').length

    // Hold the reconnect while the world changes and the history is trimmed past it.
    api.delayNext('watch', 'pods', 400)
    api.closeWatches()
    await core.createNamespacedPod({ namespace: NS, body: pod('new') })
    await core.deleteNamespacedPod({ name: 'old', namespace: NS })
    api.compactHistory()

    await waitFor('the informer to catch up', () =>
      informer
        .list(NS)
        .map((p) => p.metadata?.name)
        .join() === 'new'
        ? true
        : undefined
    )
    expect(deleted).toEqual(['old'])
    expect(api.requests.filter((request) => request.verb === 'list').length).toBeGreaterThan(
      listsBefore
    )
    expect(errors).toEqual([])
  })
})
