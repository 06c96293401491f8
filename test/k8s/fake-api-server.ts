/**
 * @module test/k8s/fake-api-server
 *
 * An in-process Kubernetes API server over real HTTP on 127.0.0.1, serving Jobs, Pods (with
 * `status`, `binding` and `log`), Events, Secrets and ConfigMaps with the real server's status
 * codes, `metav1.Status` bodies, watch protocol and deletion semantics, so the unmodified
 * `@kubernetes/client-node` code path can be tested against it. Faults are injected
 * programmatically (`failNext`, `delayNext`, `addHook`).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { type AdmissionOptions, admitCreate } from './admission.ts'
import {
  type FaultOptions,
  FaultInjector,
  type FaultResource,
  type RequestHook,
  type RequestInfo,
  type Verb,
} from './faults.ts'
import { type DeleteOptions, GarbageCollector, parseDeleteOptions } from './garbage-collector.ts'
import { listObjects } from './list-objects.ts'
import { applyPatch } from './patch.ts'
import { bindPod, type LogSource, podLog } from './pod-subresources.ts'
import { type Route, parsePath } from './routes.ts'
import { parseFieldSelector, parseLabelSelector } from './selectors.ts'
import { badRequest, methodNotAllowed, notFound, StatusError, unauthorized } from './status.ts'
import { ObjectStore } from './store.ts'
import { type KubeObject, type Resource, RESOURCES } from './types.ts'
import { checkResourceVersion, mergeUpdate } from './updates.ts'
import { serveWatch } from './watch-stream.ts'

export type { LogSource } from './pod-subresources.ts'

export interface FakeApiServerOptions {
  /** When set, every API call needs `Authorization: Bearer <token>` (401 otherwise); user `admin`. */
  token?: string
  /** More bearer tokens, each mapped to a user name (requests, faults and hooks see the user). */
  users?: Record<string, string>
  /** How many changes the watch history keeps before older versions answer 410 (default 1000). */
  historyLimit?: number
  /** BOOKMARK period for watches that allow them (default 5000 ms; the real server ≈ 60 s). */
  bookmarkIntervalMs?: number
  /** Pod Security level enforced in every namespace (default `restricted`). */
  podSecurity?: AdmissionOptions['podSecurity']
  /** 403 on the Job itself for a bad pod template (default true); false = real-cluster behaviour. */
  podSecurityRejectsJobs?: boolean
  logSource?: LogSource
}

export interface RecordedRequest {
  method: string
  path: string
  verb: Verb | undefined
  resource: Resource | undefined
  subresource: string | undefined
  namespace: string | undefined
  name: string | undefined
  query: Record<string, string>
  /** The authenticated user (`system:anonymous` when the server has no tokens). */
  user: string | undefined
  status: number
}

const NOT_FOUND = new StatusError(
  404,
  'NotFound',
  'the server could not find the requested resource'
)

const readBody = async (request: IncomingMessage): Promise<unknown> => {
  const chunks: Buffer[] = []
  for await (const chunk of request) chunks.push(chunk as Buffer)
  const text = Buffer.concat(chunks).toString('utf8').trim()
  if (!text) return undefined
  try {
    return JSON.parse(text)
  } catch (error) {
    throw badRequest(`couldn't get version/kind; json parse error: ${(error as Error).message}`)
  }
}

const sendJson = (
  response: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {}
) => {
  response.writeHead(status, { 'Content-Type': 'application/json', ...headers })
  response.end(JSON.stringify(body))
}

export class FakeApiServer {
  readonly store: ObjectStore
  readonly faults = new FaultInjector()
  readonly gc: GarbageCollector
  /** Every API request served, in order (tests assert on verbs, query parameters and retries). */
  readonly requests: RecordedRequest[] = []
  logSource: LogSource | undefined
  url = ''
  private readonly options: FakeApiServerOptions
  private readonly admission: AdmissionOptions
  private readonly watches = new Set<() => void>()
  private server: Server | undefined

  constructor(options: FakeApiServerOptions = {}) {
    this.options = options
    this.store = new ObjectStore(options.historyLimit ?? 1000)
    this.gc = new GarbageCollector(this.store)
    this.logSource = options.logSource
    this.admission = {
      podSecurity: options.podSecurity ?? 'restricted',
      podSecurityRejectsJobs: options.podSecurityRejectsJobs ?? true,
    }
  }

  async start(): Promise<{ url: string }> {
    this.gc.start()
    const server = createServer((request, response) => void this.handle(request, response))
    this.server = server
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    this.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    return { url: this.url }
  }

  async stop(): Promise<void> {
    this.gc.stop()
    for (const close of [...this.watches]) close()
    const server = this.server
    this.server = undefined
    if (!server) return
    await new Promise<void>((resolve) => {
      server.close(() => resolve())
      server.closeAllConnections()
    })
  }

  /** Answers the next `times` matching calls with `status` (see FaultInjector.failNext). */
  failNext(
    verb: Verb | '*',
    resource: FaultResource,
    status: number,
    times = 1,
    options: FaultOptions = {}
  ) {
    this.faults.failNext(verb, resource, status, times, options)
  }

  delayNext(
    verb: Verb | '*',
    resource: FaultResource,
    ms: number,
    times = 1,
    options: FaultOptions = {}
  ) {
    this.faults.delayNext(verb, resource, ms, times, options)
  }

  addHook(hook: RequestHook): () => void {
    return this.faults.addHook(hook)
  }

  /** Forgets watch history so that older resourceVersions answer 410 Expired. */
  compactHistory(keep = 0) {
    this.store.compact(keep)
  }

  /** Ends every open watch from the server side (as an API server restart or timeout would). */
  closeWatches() {
    for (const close of [...this.watches]) close()
  }

  /** Number of watch streams currently open. */
  get openWatches(): number {
    return this.watches.size
  }

  /** In-process create with full admission (the Job controller creates its pods this way). */
  createObject<T extends KubeObject>(resource: Resource, namespace: string, body: T): T {
    const { object } = admitCreate(resource, namespace, body, this.admission)
    return this.store.insert(resource, object as T)
  }

  /** In-process delete with the API's semantics (graceful pods, propagation policies). */
  deleteObject(
    resource: Resource,
    namespace: string,
    name: string,
    options: DeleteOptions = {}
  ): KubeObject {
    return this.gc.delete(resource, namespace, name, options)
  }

  /** The user behind a bearer token; 401 when tokens are configured and this one is not known. */
  private authenticate(header: string | undefined): string {
    const users: Record<string, string> = { ...this.options.users }
    if (this.options.token) users[this.options.token] = 'admin'
    if (Object.keys(users).length === 0) return 'system:anonymous'
    const token = /^Bearer (.+)$/.exec(header ?? '')?.[1]
    const user = token === undefined ? undefined : users[token]
    if (user === undefined) throw unauthorized()
    return user
  }

  private async handle(request: IncomingMessage, response: ServerResponse) {
    const method = request.method ?? 'GET'
    const url = new URL(request.url ?? '/', 'http://127.0.0.1')
    const parsed = parsePath(method, url.pathname, url.searchParams)
    const route = parsed.kind === 'resource' ? parsed.route : undefined
    const record: RecordedRequest = {
      method,
      path: url.pathname,
      verb: route?.verb,
      resource: route?.resource,
      subresource: route?.subresource,
      namespace: route?.namespace ?? (parsed.kind === 'namespace' ? parsed.name : undefined),
      name: route?.name,
      query: Object.fromEntries(url.searchParams),
      user: undefined,
      status: 200,
    }
    this.requests.push(record)
    response.once('finish', () => (record.status = response.statusCode))
    try {
      if (parsed.kind === 'info') return this.info(parsed.path, response)
      const user = this.authenticate(request.headers.authorization)
      record.user = user
      if (parsed.kind === 'namespace') {
        if (method !== 'GET') throw methodNotAllowed(method)
        return sendJson(response, 200, {
          kind: 'Namespace',
          apiVersion: 'v1',
          metadata: { name: parsed.name, labels: { 'kubernetes.io/metadata.name': parsed.name } },
          spec: { finalizers: ['kubernetes'] },
          status: { phase: 'Active' },
        })
      }
      if (!route) throw NOT_FOUND
      const body = ['POST', 'PUT', 'PATCH', 'DELETE'].includes(method)
        ? await readBody(request)
        : undefined
      const info: RequestInfo = {
        method,
        path: url.pathname,
        ...route,
        name: route.name ?? (body as KubeObject | undefined)?.metadata?.name,
        query: url.searchParams,
        headers: request.headers,
        user,
      }
      record.name = info.name
      const fault = await this.faults.check(info)
      if (fault) throw fault
      await this.serve(route, url.searchParams, body, request, response)
    } catch (error) {
      const status =
        error instanceof StatusError
          ? error
          : new StatusError(
              500,
              'InternalError',
              `Internal error occurred: ${(error as Error).message}`
            )
      if (!(error instanceof StatusError)) console.error('[k8s-sim] fake API server error', error)
      if (response.headersSent) return void response.end()
      sendJson(response, status.code, status.body, status.headers)
    }
  }

  private info(path: string, response: ServerResponse) {
    if (path === '/version') {
      return sendJson(response, 200, {
        major: '1',
        minor: '36',
        gitVersion: 'v1.36.0-ferry-sim',
        gitCommit: 'simulated',
        gitTreeState: 'clean',
        buildDate: '2026-01-01T00:00:00Z',
        goVersion: 'go1.25',
        compiler: 'gc',
        platform: 'linux/amd64',
      })
    }
    if (path === '/api') return sendJson(response, 200, { kind: 'APIVersions', versions: ['v1'] })
    if (path === '/apis') {
      const version = { groupVersion: 'batch/v1', version: 'v1' }
      return sendJson(response, 200, {
        kind: 'APIGroupList',
        apiVersion: 'v1',
        groups: [{ name: 'batch', versions: [version], preferredVersion: version }],
      })
    }
    if (path === '/api/v1' || path === '/apis/batch/v1') {
      const group = path === '/api/v1' ? '' : 'batch'
      const resources = (Object.keys(RESOURCES) as Resource[])
        .filter((resource) => RESOURCES[resource].group === group)
        .map((resource) => ({ name: resource, namespaced: true, kind: RESOURCES[resource].kind }))
      return sendJson(response, 200, {
        kind: 'APIResourceList',
        groupVersion: group ? 'batch/v1' : 'v1',
        resources,
      })
    }
    response.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8' })
    response.end('ok')
  }

  private async serve(
    route: Route,
    query: URLSearchParams,
    body: unknown,
    request: IncomingMessage,
    response: ServerResponse
  ) {
    const { resource, namespace, name, subresource } = route
    const dryRun = query.getAll('dryRun').includes('All')
    switch (route.verb) {
      case 'create': {
        if (!namespace) throw methodNotAllowed('POST')
        if (subresource === 'binding')
          return sendJson(response, 201, bindPod(this.store, namespace, name!, body))
        if (subresource || name) throw methodNotAllowed('POST')
        const { object, warnings } = admitCreate(
          resource,
          namespace,
          body as KubeObject,
          this.admission
        )
        const stored = dryRun ? object : this.store.insert(resource, object)
        const headers: Record<string, string> = warnings.length
          ? { Warning: warnings.map((text) => `299 - ${JSON.stringify(text)}`).join(', ') }
          : {}
        return sendJson(response, 201, stored, headers)
      }
      case 'get': {
        if (subresource === 'log') {
          const text = podLog(this.store, namespace!, name!, query, this.logSource)
          response.writeHead(200, { 'Content-Type': 'text/plain' })
          return void response.end(text)
        }
        if (subresource === 'binding') throw methodNotAllowed('GET')
        const found = this.store.get(resource, namespace, name!)
        if (!found) throw notFound(resource, name!)
        return sendJson(response, 200, found)
      }
      case 'list':
        return sendJson(response, 200, listObjects(this.store, resource, namespace, query))
      case 'watch': {
        const fieldSelector = [
          query.get('fieldSelector'),
          name ? `metadata.name=${name}` : undefined,
        ]
          .filter(Boolean)
          .join(',')
        const close = serveWatch(
          this.store,
          {
            resource,
            namespace,
            labels: parseLabelSelector(query.get('labelSelector')),
            fields: parseFieldSelector(fieldSelector, resource),
            resourceVersion: query.get('resourceVersion') ?? undefined,
            allowWatchBookmarks: query.get('allowWatchBookmarks') === 'true',
            sendInitialEvents: query.get('sendInitialEvents') === 'true',
            timeoutSeconds: query.has('timeoutSeconds')
              ? Number(query.get('timeoutSeconds'))
              : undefined,
          },
          response,
          { bookmarkIntervalMs: this.options.bookmarkIntervalMs ?? 5000 }
        )
        this.watches.add(close)
        response.on('close', () => this.watches.delete(close))
        return
      }
      case 'update':
      case 'patch': {
        if (subresource && subresource !== 'status') throw methodNotAllowed(request.method ?? 'PUT')
        const current = this.store.get(resource, namespace, name!)
        if (!current) throw notFound(resource, name!)
        const next =
          route.verb === 'patch'
            ? (applyPatch(current, body, request.headers['content-type'] ?? '') as KubeObject)
            : (body as KubeObject)
        checkResourceVersion(resource, name!, current, next, route.verb === 'update')
        const merged = mergeUpdate(resource, current, next, subresource === 'status')
        return sendJson(response, 200, dryRun ? merged : this.store.replace(resource, merged))
      }
      case 'delete':
        if (subresource) throw methodNotAllowed('DELETE')
        return sendJson(
          response,
          200,
          this.gc.delete(resource, namespace!, name!, parseDeleteOptions(query, body))
        )
      case 'deletecollection': {
        const list = listObjects(this.store, resource, namespace, query)
        const options = parseDeleteOptions(query, body)
        const items = list.items.map((item) =>
          this.gc.delete(resource, item.metadata!.namespace!, item.metadata!.name!, options)
        )
        return sendJson(response, 200, { ...list, items })
      }
    }
  }
}
