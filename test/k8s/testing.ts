/**
 * @module test/k8s/testing
 *
 * Small helpers for tests that run against the simulated cluster: polling with a deadline,
 * turning a client-node `ApiException` into its `metav1.Status`, Pod-Security-compliant Job
 * bodies, and tiny `node -e` servers to run as pod processes.
 */
import { ApiException, type V1Container, type V1Job } from '@kubernetes/client-node'

/** Polls `check` until it returns something truthy; fails with `what` after `timeoutMs`. */
export const waitFor = async <T>(
  what: string,
  check: () => T | undefined | null | false | Promise<T | undefined | null | false>,
  timeoutMs = 10_000,
  intervalMs = 25
): Promise<T> => {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  for (;;) {
    try {
      const value = await check()
      if (value) return value
    } catch (error) {
      last = error
    }
    if (Date.now() >= deadline) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${String(last)})` : ''}`
      )
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs))
  }
}

export interface ApiFailure {
  code: number
  headers: Record<string, string>
  status:
    | { reason?: string; message?: string; details?: { causes?: Array<{ field: string }> } }
    | undefined
}

/** Awaits a call that must fail with an ApiException; returns code, headers and parsed Status. */
export const apiFailure = async (call: Promise<unknown>): Promise<ApiFailure> => {
  try {
    await call
  } catch (error) {
    if (!(error instanceof ApiException)) throw error
    const body = (error as ApiException<unknown>).body
    return {
      code: error.code,
      headers: error.headers,
      status: typeof body === 'string' && body ? JSON.parse(body) : undefined,
    }
  }
  throw new Error('expected the call to fail')
}

/** A random port in a range nothing else in the repository uses. */
export const randomPort = () => 20_000 + Math.floor(Math.random() * 30_000)

/** Container security settings that pass Pod Security "restricted". */
export const restrictedContainer = (container: V1Container): V1Container => ({
  ...container,
  securityContext: {
    allowPrivilegeEscalation: false,
    capabilities: { drop: ['ALL'] },
    ...container.securityContext,
  },
})

export interface JobBodyOptions {
  name: string
  container: V1Container
  backoffLimit?: number
  activeDeadlineSeconds?: number
  ttlSecondsAfterFinished?: number
  labels?: Record<string, string>
  annotations?: Record<string, string>
  terminationGracePeriodSeconds?: number
  podFailurePolicy?: NonNullable<V1Job['spec']>['podFailurePolicy']
}

/** A Job like Ferry's (backoffLimit 0, restartPolicy Never, restricted security). */
export const jobBody = (options: JobBodyOptions): V1Job => ({
  metadata: { name: options.name, labels: options.labels ?? { app: 'k8s-sim-test' } },
  spec: {
    backoffLimit: options.backoffLimit ?? 0,
    ...(options.activeDeadlineSeconds !== undefined
      ? { activeDeadlineSeconds: options.activeDeadlineSeconds }
      : {}),
    ...(options.ttlSecondsAfterFinished !== undefined
      ? { ttlSecondsAfterFinished: options.ttlSecondsAfterFinished }
      : {}),
    ...(options.podFailurePolicy ? { podFailurePolicy: options.podFailurePolicy } : {}),
    template: {
      metadata: {
        labels: options.labels ?? { app: 'k8s-sim-test' },
        ...(options.annotations ? { annotations: options.annotations } : {}),
      },
      spec: {
        restartPolicy: 'Never',
        automountServiceAccountToken: false,
        terminationGracePeriodSeconds: options.terminationGracePeriodSeconds ?? 5,
        securityContext: {
          runAsNonRoot: true,
          runAsUser: 10001,
          seccompProfile: { type: 'RuntimeDefault' },
        },
        containers: [restrictedContainer(options.container)],
      },
    },
  },
})

/** Env entries for the downward API, the way Ferry's pod template passes the pod IP. */
export const downwardEnv = [
  { name: 'POD_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
  { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
  { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
]

/**
 * `node -e` source of a TCP server that starts listening on `$POD_IP:$PORT` only after
 * `$LISTEN_DELAY_MS`, answers each connection with `<ip> <name> <namespace>`, and exits 0 on
 * SIGTERM (or ignores it when `$IGNORE_TERM` is set).
 */
export const TCP_SERVER = `
const net = require('node:net')
const env = process.env
// Probes connect and hang up at once, so writes may hit ECONNRESET: ignore socket errors.
const server = net.createServer((socket) => {
  socket.on('error', () => {})
  socket.end(env.POD_IP + ' ' + env.POD_NAME + ' ' + env.POD_NAMESPACE)
})
process.on('SIGTERM', () => { if (env.IGNORE_TERM) { console.log('ignoring SIGTERM') } else { console.log('got SIGTERM'); process.exit(0) } })
setTimeout(() => server.listen(Number(env.PORT), env.POD_IP, () => console.log('listening on ' + env.POD_IP + ':' + env.PORT)), Number(env.LISTEN_DELAY_MS || 0))
`

/** `node -e` source of an HTTP server answering `/healthz` 503 until `$READY_AFTER_MS`, then 200. */
export const HTTP_SERVER = `
const http = require('node:http')
const env = process.env
const started = Date.now()
http.createServer((req, res) => {
  const ready = Date.now() - started >= Number(env.READY_AFTER_MS || 0)
  res.writeHead(req.url === '/healthz' && ready ? 200 : 503).end()
}).listen(Number(env.PORT), env.POD_IP, () => console.log('http up'))
process.on('SIGTERM', () => process.exit(0))
`
