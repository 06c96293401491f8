/**
 * @module test/k8s-real/control-plane
 *
 * Starts a real Kubernetes v1.20.2 control plane on loopback for Ferry's opt-in "real API server"
 * test tier (shared/notes/kubernetes.md §3d): etcd (Debian's `etcd-server`), `kube-apiserver`
 * and `kube-controller-manager` (built by `test/k8s-real/build.sh`). Token authentication with an
 * admin token (`system:masters`) and a bridge token for
 * `system:serviceaccount:<namespace>:ferry-bridge`, RBAC authorization, the TTLAfterFinished
 * gate, and the job, ttl-after-finished, garbagecollector, serviceaccount and namespace
 * controllers. There is no scheduler and no kubelet: pods the job controller creates stay
 * Pending unless a kubelet simulator binds them.
 *
 * Everything lives in one temp dir (etcd data, certs, token file, logs, kubeconfigs) on ephemeral
 * ports, so several control planes can run side by side; `stop()` kills the processes and removes
 * the dir.
 */
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { constants, createWriteStream, rmSync, writeFileSync } from 'node:fs'
import { access, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import http from 'node:http'
import https from 'node:https'
import net from 'node:net'
import type { AddressInfo } from 'node:net'
import { homedir, tmpdir } from 'node:os'
import { join } from 'node:path'

export const K8S_VERSION = '1.20.2'

export interface ControlPlaneOptions {
  /** Directory with kube-apiserver and kube-controller-manager (default: see `defaultBinDir`). */
  binDir?: string
  /** etcd binary (default `$FERRY_ETCD` or `/usr/bin/etcd`). */
  etcd?: string
  /** Namespace of the bridge's service-account user (default `ferry-sessions`). */
  bridgeNamespace?: string
  /** Controllers for kube-controller-manager (default job, ttl-after-finished, gc, sa, ns). */
  controllers?: string[]
  /** Bound on each wait (etcd health, apiserver /readyz, controllers), default 60 s. */
  timeoutMs?: number
  /** Progress lines (default: silent). */
  log?: (line: string) => void
  /**
   * An `audit.k8s.io/v1` Policy: when given, kube-apiserver writes every event it selects as one
   * JSON line to `auditLog` (blocking mode, no rotation), e.g. to see which requests a user made.
   */
  auditPolicy?: Record<string, unknown>
}

export interface ControlPlane {
  /** `https://127.0.0.1:<port>` */
  server: string
  /** The apiserver's self-signed serving certificate (+ its CA), to verify `server` with. */
  caFile: string
  /** Bearer token of `admin` (group `system:masters`). */
  adminToken: string
  /** Bearer token of `bridgeUser` (no permissions until a RoleBinding grants some). */
  bridgeToken: string
  /** `system:serviceaccount:<bridgeNamespace>:ferry-bridge` */
  bridgeUser: string
  /** Temp dir holding data, certs, logs (`*.log`) and kubeconfigs. */
  dir: string
  /** The JSON-lines audit log (`<dir>/audit.log`) when `auditPolicy` was given. */
  auditLog: string | undefined
  /** Milliseconds from start until etcd was healthy, /readyz answered ok, controllers worked. */
  timings: { etcdMs: number; apiserverReadyMs: number; controllersReadyMs: number; totalMs: number }
  /** Writes a kubeconfig for `user` with `namespace` as the context namespace; returns its path. */
  kubeconfigFor(user: 'admin' | 'bridge', namespace: string): string
  /** Kills etcd, apiserver and controller-manager and removes `dir`. Idempotent. */
  stop(): Promise<void>
}

/** `$FERRY_K8S_BIN`, else `${FERRY_K8S_CACHE:-~/.cache/ferry-k8s}/v1.20.2/bin` (as build.sh). */
export const defaultBinDir = (): string =>
  process.env.FERRY_K8S_BIN ||
  join(
    process.env.FERRY_K8S_CACHE || join(homedir(), '.cache', 'ferry-k8s'),
    `v${K8S_VERSION}`,
    'bin'
  )

const DEFAULT_CONTROLLERS = [
  'job',
  'ttl-after-finished',
  'garbagecollector',
  'serviceaccount',
  'namespace',
]
const FEATURE_GATES = '--feature-gates=TTLAfterFinished=true'

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

const isExecutable = async (path: string): Promise<boolean> => {
  try {
    await access(path, constants.X_OK)
    return true
  } catch {
    return false
  }
}

/** Distinct free loopback ports (held open together so they differ, then released). */
const freePorts = async (count: number): Promise<number[]> => {
  const servers = await Promise.all(
    Array.from({ length: count }, async () => {
      const server = net.createServer()
      server.listen(0, '127.0.0.1')
      await once(server, 'listening')
      return server
    })
  )
  const ports = servers.map((server) => (server.address() as AddressInfo).port)
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))))
  return ports
}

const run = async (command: string, args: string[]): Promise<void> => {
  const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  const [code] = (await once(child, 'close')) as [number | null]
  if (code !== 0) throw new Error(`${command} ${args.join(' ')} exited ${code}: ${stderr.trim()}`)
}

/** GET with a bearer token; TLS is not verified (the serving cert may not exist yet, like curl -k). */
const probe = (url: string, token?: string): Promise<{ status: number; body: string }> =>
  new Promise((resolve, reject) => {
    const client = url.startsWith('https:') ? https : http
    const request = client.get(
      url,
      {
        headers: token ? { authorization: `Bearer ${token}` } : {},
        rejectUnauthorized: false,
        timeout: 2_000,
      },
      (response) => {
        let body = ''
        response.setEncoding('utf8')
        response.on('data', (chunk: string) => (body += chunk))
        response.on('end', () => resolve({ status: response.statusCode ?? 0, body }))
        response.on('error', reject)
      }
    )
    request.on('timeout', () => request.destroy(new Error('timeout')))
    request.on('error', reject)
  })

interface Managed {
  name: string
  child: ChildProcess
  logFile: string
  exited: boolean
  /** Resolves once the log file has everything the process wrote. */
  flushed: Promise<unknown>
}

const tail = async (file: string, lines = 25): Promise<string> => {
  try {
    return (await readFile(file, 'utf8')).trimEnd().split('\n').slice(-lines).join('\n')
  } catch {
    return '(no log)'
  }
}

const kill = async (proc: Managed, graceMs = 5_000): Promise<void> => {
  if (proc.exited) return
  const exited = new Promise((resolve) => proc.child.once('exit', resolve))
  proc.child.kill('SIGTERM')
  const timer = setTimeout(() => proc.child.kill('SIGKILL'), graceMs)
  await exited
  clearTimeout(timer)
}

/**
 * Starts etcd, kube-apiserver and kube-controller-manager; resolves once the apiserver's
 * /readyz is ok and the controller-manager has created the `default` service account.
 */
export const startControlPlane = async (
  options: ControlPlaneOptions = {}
): Promise<ControlPlane> => {
  const started = Date.now()
  const log = options.log ?? (() => {})
  const timeoutMs = options.timeoutMs ?? 60_000
  const binDir = options.binDir ?? defaultBinDir()
  const apiserverBin = join(binDir, 'kube-apiserver')
  const controllerManagerBin = join(binDir, 'kube-controller-manager')
  const etcdBin = options.etcd ?? (process.env.FERRY_ETCD || '/usr/bin/etcd')
  for (const binary of [apiserverBin, controllerManagerBin]) {
    if (!(await isExecutable(binary))) {
      throw new Error(
        `${binary} not found: ` +
          (options.binDir || process.env.FERRY_K8S_BIN
            ? `${binDir} (FERRY_K8S_BIN or binDir) lacks it; build it with test/k8s-real/build.sh`
            : `run test/k8s-real/build.sh first (builds Kubernetes v${K8S_VERSION} into ${binDir})`)
      )
    }
  }
  if (!(await isExecutable(etcdBin))) {
    throw new Error(`${etcdBin} not found: run test/k8s-real/build.sh (installs etcd-server)`)
  }
  if (!(await isExecutable('/usr/bin/openssl'))) {
    throw new Error('/usr/bin/openssl not found: run test/k8s-real/build.sh (installs openssl)')
  }

  const bridgeNamespace = options.bridgeNamespace ?? 'ferry-sessions'
  const bridgeUser = `system:serviceaccount:${bridgeNamespace}:ferry-bridge`
  const adminToken = randomBytes(24).toString('hex')
  const bridgeToken = randomBytes(24).toString('hex')
  const dir = await mkdtemp(join(tmpdir(), 'ferry-k8s-'))
  const certDir = join(dir, 'certs')
  const etcdDir = join(dir, 'etcd')
  await mkdir(certDir, { mode: 0o700 })
  await mkdir(etcdDir, { mode: 0o700 })

  const processes: Managed[] = []
  // Last resort when the process exits without stop() (e.g. process.exit() in a signal handler).
  const killAllSync = () => {
    for (const proc of processes) if (!proc.exited) proc.child.kill('SIGKILL')
    rmSync(dir, { recursive: true, force: true })
  }
  process.once('exit', killAllSync)
  let stopped = false
  const stop = async () => {
    if (stopped) return
    stopped = true
    process.removeListener('exit', killAllSync)
    for (const proc of [...processes].reverse()) await kill(proc)
    await rm(dir, { recursive: true, force: true })
  }

  const launch = (name: string, command: string, args: string[]): Managed => {
    const logFile = join(dir, `${name}.log`)
    const out = createWriteStream(logFile)
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    child.stdout?.pipe(out, { end: false })
    child.stderr?.pipe(out, { end: false })
    const flushed = once(out, 'close')
    const proc: Managed = { name, child, logFile, exited: false, flushed }
    child.on('error', (error) => {
      proc.exited = true
      out.end(`spawn error: ${error.message}\n`)
    })
    child.on('exit', () => (proc.exited = true))
    child.on('close', () => out.end())
    processes.push(proc)
    log(`started ${name} (pid ${child.pid})`)
    return proc
  }

  /** Polls `check` until it returns true; fails early if `proc` exits, with its last log lines. */
  const waitFor = async (what: string, proc: Managed, check: () => Promise<boolean>) => {
    const deadline = Date.now() + timeoutMs
    let lastError = ''
    for (;;) {
      if (proc.exited) {
        await Promise.race([proc.flushed, sleep(1_000)])
        throw new Error(
          `${proc.name} exited (code ${proc.child.exitCode}, signal ${proc.child.signalCode}) ` +
            `while waiting for ${what}; last lines of ${proc.name}.log:\n${await tail(proc.logFile)}`
        )
      }
      try {
        if (await check()) return
      } catch (error) {
        lastError = error instanceof Error ? error.message : String(error)
      }
      if (Date.now() >= deadline) {
        throw new Error(
          `timed out after ${timeoutMs} ms waiting for ${what}` +
            (lastError ? ` (last error: ${lastError})` : '') +
            `; last lines of ${proc.name}.log:\n${await tail(proc.logFile)}`
        )
      }
      await sleep(100)
    }
  }

  try {
    // Service-account signing keys and the static token file.
    const saKey = join(certDir, 'sa.key')
    const saPub = join(certDir, 'sa.pub')
    await run('/usr/bin/openssl', ['genrsa', '-out', saKey, '2048'])
    await run('/usr/bin/openssl', ['rsa', '-in', saKey, '-pubout', '-out', saPub])
    const tokenFile = join(certDir, 'tokens.csv')
    await writeFile(
      tokenFile,
      `${adminToken},admin,admin-uid,system:masters\n` +
        `${bridgeToken},${bridgeUser},ferry-bridge-uid,` +
        `"system:serviceaccounts,system:serviceaccounts:${bridgeNamespace}"\n`,
      { mode: 0o600 }
    )

    const [etcdClientPort, etcdPeerPort, apiserverPort] = (await freePorts(3)) as [
      number,
      number,
      number,
    ]
    const etcdUrl = `http://127.0.0.1:${etcdClientPort}`
    const peerUrl = `http://127.0.0.1:${etcdPeerPort}`
    const etcd = launch('etcd', etcdBin, [
      '--name=ferry',
      `--data-dir=${etcdDir}`,
      `--listen-client-urls=${etcdUrl}`,
      `--advertise-client-urls=${etcdUrl}`,
      `--listen-peer-urls=${peerUrl}`,
      `--initial-advertise-peer-urls=${peerUrl}`,
      `--initial-cluster=ferry=${peerUrl}`,
      '--listen-metrics-urls=',
      '--log-level=warn',
      '--logger=zap',
    ])
    await waitFor(
      'etcd /health',
      etcd,
      async () => (await probe(`${etcdUrl}/health`)).status === 200
    )
    const etcdMs = Date.now() - started
    log(`etcd healthy on ${etcdUrl} after ${etcdMs} ms`)

    const server = `https://127.0.0.1:${apiserverPort}`
    let auditLog: string | undefined
    const auditArgs: string[] = []
    if (options.auditPolicy) {
      // JSON is valid YAML, which is what the apiserver reads.
      const policyFile = join(dir, 'audit-policy.json')
      await writeFile(policyFile, `${JSON.stringify(options.auditPolicy, null, 2)}\n`)
      auditLog = join(dir, 'audit.log')
      auditArgs.push(
        `--audit-policy-file=${policyFile}`,
        `--audit-log-path=${auditLog}`,
        '--audit-log-format=json',
        '--audit-log-mode=blocking'
      )
    }
    const apiserverStarted = Date.now()
    const apiserver = launch('kube-apiserver', apiserverBin, [
      `--etcd-servers=${etcdUrl}`,
      '--bind-address=127.0.0.1',
      // Keep the `kubernetes` Service off the host's interfaces; a loopback IP is not a valid
      // endpoint, so do not reconcile endpoints at all.
      '--advertise-address=127.0.0.1',
      '--endpoint-reconciler-type=none',
      `--secure-port=${apiserverPort}`,
      `--cert-dir=${certDir}`,
      `--token-auth-file=${tokenFile}`,
      '--authorization-mode=RBAC',
      `--service-account-key-file=${saPub}`,
      `--service-account-signing-key-file=${saKey}`,
      '--service-account-issuer=https://kubernetes.default.svc',
      '--service-cluster-ip-range=10.96.0.0/16',
      FEATURE_GATES,
      ...auditArgs,
    ])
    await waitFor('kube-apiserver /readyz', apiserver, async () => {
      const { status, body } = await probe(`${server}/readyz`, adminToken)
      if (status !== 200) throw new Error(`/readyz ${status}: ${body.trim().slice(-200)}`)
      return true
    })
    const apiserverReadyMs = Date.now() - apiserverStarted
    log(`kube-apiserver ready on ${server} after ${apiserverReadyMs} ms`)

    const caFile = join(certDir, 'apiserver.crt')
    await access(caFile)
    const kubeconfigFor = (user: 'admin' | 'bridge', namespace: string): string => {
      const token = user === 'admin' ? adminToken : user === 'bridge' ? bridgeToken : undefined
      if (!token) throw new Error(`unknown user ${String(user)}: use 'admin' or 'bridge'`)
      const path = join(dir, `${user}-${namespace}.kubeconfig`)
      // JSON is valid YAML, so kubectl and client-node read it. Synchronous: the API returns a path.
      const config = {
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [{ name: 'ferry-real', cluster: { server, 'certificate-authority': caFile } }],
        users: [{ name: user, user: { token } }],
        contexts: [{ name: user, context: { cluster: 'ferry-real', user, namespace } }],
        'current-context': user,
      }
      writeFileSync(path, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 })
      return path
    }

    const controllersStarted = Date.now()
    const controllerManager = launch('kube-controller-manager', controllerManagerBin, [
      `--kubeconfig=${kubeconfigFor('admin', 'default')}`,
      '--leader-elect=false',
      '--port=0',
      '--secure-port=0',
      '--bind-address=127.0.0.1',
      `--controllers=${(options.controllers ?? DEFAULT_CONTROLLERS).join(',')}`,
      FEATURE_GATES,
    ])
    // The serviceaccount controller creating `default/default` shows the controllers are running
    // (and pods need a namespace's default service account to be admitted).
    await waitFor(
      'the controller-manager (service account default/default)',
      controllerManager,
      async () => {
        const { status } = await probe(
          `${server}/api/v1/namespaces/default/serviceaccounts/default`,
          adminToken
        )
        return status === 200
      }
    )
    const controllersReadyMs = Date.now() - controllersStarted
    const totalMs = Date.now() - started
    log(`kube-controller-manager working after ${controllersReadyMs} ms (total ${totalMs} ms)`)

    return {
      server,
      caFile,
      adminToken,
      bridgeToken,
      bridgeUser,
      dir,
      auditLog,
      timings: { etcdMs, apiserverReadyMs, controllersReadyMs, totalMs },
      kubeconfigFor,
      stop,
    }
  } catch (error) {
    await stop()
    throw error
  }
}
