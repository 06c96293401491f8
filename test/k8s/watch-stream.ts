/**
 * @module test/k8s/watch-stream
 *
 * One `?watch=true` response: newline-delimited `{"type","object"}` events, replay from
 * `resourceVersion`, an `ERROR` event with a 410 Status when that version is no longer kept
 * (what makes informers relist), `BOOKMARK`s when asked for, and objects entering or leaving the
 * selector reported as ADDED/DELETED like the real watch cache does.
 */
import type { ServerResponse } from 'node:http'
import type { Matcher } from './selectors.ts'
import { expired } from './status.ts'
import type { ObjectStore, StoreEvent } from './store.ts'
import { type KubeObject, type Resource, apiVersionOf, RESOURCES } from './types.ts'

export interface WatchQuery {
  resource: Resource
  namespace: string | undefined
  labels: Matcher
  fields: Matcher
  resourceVersion: string | undefined
  allowWatchBookmarks: boolean
  sendInitialEvents: boolean
  timeoutSeconds: number | undefined
}

export interface WatchSettings {
  bookmarkIntervalMs: number
}

type OutType = 'ADDED' | 'MODIFIED' | 'DELETED'

/** Starts streaming; returns a function that ends the stream (the server calls it on stop). */
export const serveWatch = (
  store: ObjectStore,
  query: WatchQuery,
  response: ServerResponse,
  settings: WatchSettings
): (() => void) => {
  const visible = (object: KubeObject | undefined) =>
    object !== undefined &&
    (query.namespace === undefined || object.metadata?.namespace === query.namespace) &&
    query.labels(object) &&
    query.fields(object)

  const send = (type: string, object: unknown) => {
    if (!response.writableEnded) response.write(`${JSON.stringify({ type, object })}\n`)
  }

  const translate = (event: StoreEvent): OutType | undefined => {
    if (event.resource !== query.resource) return undefined
    const now = visible(event.object)
    if (event.type !== 'MODIFIED') return now ? event.type : undefined
    const before = visible(event.previous)
    if (now) return before ? 'MODIFIED' : 'ADDED'
    return before ? 'DELETED' : undefined
  }

  const deliver = (event: StoreEvent) => {
    const type = translate(event)
    if (type) send(type, event.object)
  }

  response.writeHead(200, {
    'Content-Type': 'application/json',
    'Cache-Control': 'no-cache, private',
    'Transfer-Encoding': 'chunked',
  })
  response.flushHeaders()

  const bookmark = (annotations?: Record<string, string>) =>
    send('BOOKMARK', {
      kind: RESOURCES[query.resource].kind,
      apiVersion: apiVersionOf(query.resource),
      metadata: {
        resourceVersion: String(store.resourceVersion),
        ...(annotations ? { annotations } : {}),
      },
    })

  const requested = query.resourceVersion
  const fromState =
    requested === undefined || requested === '' || requested === '0' || query.sendInitialEvents
  if (fromState) {
    for (const object of store.list(query.resource, query.namespace)) {
      if (visible(object)) send('ADDED', object)
    }
    if (query.sendInitialEvents && query.allowWatchBookmarks) {
      bookmark({ 'k8s.io/initial-events-end': 'true' })
    }
  } else {
    const since = Number(requested)
    const replay = Number.isFinite(since) ? store.eventsSince(since) : undefined
    if (!replay) {
      // The real server answers 200 and then a single ERROR event carrying the 410 Status.
      send('ERROR', expired(since, store.oldestWatchable + 1).body)
      response.end()
      return () => {}
    }
    for (const event of replay) deliver(event)
  }

  const unsubscribe = store.subscribe(deliver)
  const timers: NodeJS.Timeout[] = []
  if (query.allowWatchBookmarks) {
    timers.push(setInterval(() => bookmark(), settings.bookmarkIntervalMs))
  }
  let closed = false
  const close = () => {
    if (closed) return
    closed = true
    unsubscribe()
    for (const timer of timers) clearInterval(timer)
    if (!response.writableEnded) response.end()
  }
  if (query.timeoutSeconds !== undefined)
    timers.push(setTimeout(close, query.timeoutSeconds * 1000))
  response.on('close', close)
  return close
}
