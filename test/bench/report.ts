/** Turns benchmark results into `docs/benchmarks.md` and its SVG chart. */
import type { Memory, SessionStart, Throughput } from './measure.ts'
import type { KubernetesStart } from './kubernetes-start.ts'
import type { ProfileGraph } from './profiles.ts'
import type { ScaleResult } from './scale.ts'
import { type LatencySummary, type Spread, spread } from './stats.ts'

export interface Results {
  machine: Record<string, string>
  versions: Record<string, string>
  plan: Record<string, unknown>
  rounds: number
  latency: Record<string, LatencySummary[]>
  throughput: Record<number, Record<string, Throughput[]>>
  sessionStart: Record<string, SessionStart[]>
  memory: Record<string, Memory[]>
  scale?: ScaleResult[]
  kubernetes?: KubernetesStart
  /** Flame graphs written to `docs/profiles/`, and the calls they cover. */
  profiles?: { calls: number; graphs: ProfileGraph[] }
}

const ms = (value: number) => (value < 10 ? value.toFixed(3) : value.toFixed(1))
const fmt = (s: Spread, unit: (v: number) => string) =>
  s.min === s.max ? unit(s.median) : `${unit(s.median)} (${unit(s.min)}–${unit(s.max)})`
const mb = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MB`
const kb = (bytes: number) => `${(bytes / 1024).toFixed(1)} KB`

const of = <T>(runs: T[] | undefined, pick: (run: T) => number): Spread | undefined =>
  runs?.length ? spread(runs.map(pick)) : undefined

interface Target {
  name: string
  value: number
  target: string
  met: boolean
  shown: string
}

/** The median over rounds, NaN when not measured. */
const median = <T>(runs: T[] | undefined, pick: (run: T) => number) =>
  of(runs, pick)?.median ?? Number.NaN

export const targetsOf = (r: Results): Target[] => {
  const fP50 = median(r.latency.ferry, (l) => l.p50)
  const sP50 = median(r.latency.supergateway, (l) => l.p50)
  const fP99 = median(r.latency.ferry, (l) => l.p99)
  const sP99 = median(r.latency.supergateway, (l) => l.p99)
  const floor = median(r.latency.stdio, (l) => l.p50)
  const f16 = median(r.throughput[16]?.ferry, (t) => t.rps)
  const s16 = median(r.throughput[16]?.supergateway, (t) => t.rps)
  const fStart = median(r.sessionStart.ferry, (s) => s.latency.p50)
  const sStart = median(r.sessionStart.supergateway, (s) => s.latency.p50)
  const fMem = median(r.memory.ferry, (m) => m.perSessionPss)
  const sMem = median(r.memory.supergateway, (m) => m.perSessionPss)
  const idle = marginalBytesPerSession(r.scale ?? [])
  const ratio = (name: string, value: number, limit: number, atMost: boolean): Target => ({
    name,
    value,
    target: `${atMost ? '≤' : '≥'} ${limit}`,
    met: atMost ? value <= limit : value >= limit,
    shown: value.toFixed(2),
  })
  return [
    ratio('latency p50, Ferry / supergateway', fP50 / sP50, 0.8, true),
    ratio('latency p99, Ferry / supergateway', fP99 / sP99, 1, true),
    {
      ...ratio('latency p50 added over the stdio floor (ms)', fP50 - floor, 0.5, true),
      shown: (fP50 - floor).toFixed(3),
    },
    ratio('throughput at 16 in flight, Ferry / supergateway', f16 / s16, 1.3, false),
    ratio('session start p50, Ferry / supergateway', fStart / sStart, 1, true),
    ratio('memory per open session, Ferry / supergateway', fMem / sMem, 1, true),
    {
      ...ratio('bridge memory per idle open session (KB)', idle / 1024, 20, true),
      shown: (idle / 1024).toFixed(1),
    },
  ]
}

/** How Ferry's start gate shapes its session starts, when the ungated bridge was measured. */
const gateNote = (r: Results): string[] => {
  if (!r.sessionStart['ferry-ungated']) return []
  const p50 = (name: string) => median(r.sessionStart[name], (s) => s.latency.p50).toFixed(0)
  return [
    'Ferry lets one more local start boot at once than the machine has CPUs',
    '(`bridge.local.maxConcurrentStarts`, default `os.availableParallelism() + 1`) and queues the',
    'rest, so the first starts of a burst finish sooner instead of all sharing the CPU and',
    'finishing late together. **ferry, starts ungated** is the same bridge with the gate off',
    `(\`maxConcurrentStarts: 0\`), measured for session start only: p50 ${p50('ferry-ungated')} ms`,
    `against ${p50('ferry')} ms gated and ${p50('supergateway')} ms for supergateway, which starts`,
    'every server at once.',
    '',
  ]
}

/**
 * Where Ferry's latency goes, from the floors measured beside it: the architecture's own floor,
 * the same floor served through Hono (as Ferry's bridge is), and what Ferry adds on top of that.
 */
const floorNote = (r: Results): string[] => {
  const p50 = (name: string) => median(r.latency[name], (l) => l.p50)
  const [floor, hono, ferry, sg] = ['floor', 'hono-floor', 'ferry', 'supergateway'].map(p50)
  if ([floor, hono, ferry, sg].some(Number.isNaN)) return []
  const share = (value: number) => `${(value / sg!).toFixed(2)} × supergateway's`
  const step = (ms: number) => `${ms < 0 ? '−' : '+'}${Math.abs(Math.round(ms * 1000))} µs`
  return [
    "The two-hop floor is Ferry's process layout with nothing but the relaying: a `node:http`",
    'server that forwards each body over one `ws` connection on a Unix socket to a relay that',
    "writes it to the same server's stdin and routes the response back by id",
    '(test/bench/floor-bridge.ts, floor-relay.ts), with no sessions, checks, auth, limits, logs or',
    'SSE. Whatever implements this architecture pays at least its latency here. The same floor',
    'served through Hono and @hono/node-server (web-standard Request/Response, as the design',
    "asks of the bridge) shows what that layer costs. Ferry's p50 over those floors, in this run:",
    '',
    table(
      ['p50', 'ms', 'share of supergateway', 'step'],
      [
        ['two-hop floor', floor!.toFixed(3), share(floor!), '—'],
        ['two-hop floor on Hono', hono!.toFixed(3), share(hono!), step(hono! - floor!)],
        ['Ferry', ferry!.toFixed(3), share(ferry!), step(ferry! - hono!)],
      ]
    ),
    '',
    "The last step is Ferry's own work per relayed call on both hops: in the bridge, the",
    'Host/Origin, Accept, Content-Type and protocol checks, authentication, opening the session',
    'id, the ownership check, the in-flight limit, cancellation on client disconnect, the',
    "operation's metrics and the standard response headers; in the sidecar, the request's",
    'stream, the duplicate-id check and the resumable event log.',
    '',
  ]
}

/**
 * What one more idle open session costs the bridge: the RSS step between the smallest and the
 * largest count of one growing bridge, per session added (the growth per session at a single
 * count also carries the heap's one-time growth steps). With one count, that count's growth.
 */
export const marginalBytesPerSession = (scale: ScaleResult[]): number => {
  if (scale.length === 0) return NaN
  const first = scale[0]!
  const last = scale.at(-1)!
  if (last.sessions === first.sessions) return first.bridgeBytesPerSession
  return (last.bridgeRss - first.bridgeRss) / (last.sessions - first.sessions)
}

const table = (header: string[], rows: string[][]) =>
  [
    `| ${header.join(' | ')} |`,
    `|${header.map(() => '---').join('|')}|`,
    ...rows.map((r) => `| ${r.join(' | ')} |`),
  ].join('\n')

const NAMES = ['ferry', 'ferry-ungated', 'supergateway', 'stdio', 'floor', 'hono-floor']
const LABELS: Record<string, string> = {
  floor: 'two-hop floor',
  'hono-floor': 'two-hop floor on Hono',
  'ferry-ungated': 'ferry, starts ungated',
}
const label = (name: string) => LABELS[name] ?? name

export const renderReport = (r: Results): { markdown: string; svg: string } => {
  const lines: string[] = []
  const add = (...text: string[]) => lines.push(...text)
  add(
    '# Benchmarks',
    '',
    '_Generated by `npm run bench` (test/bench/run.ts); do not edit by hand._',
    '',
    'Ferry (bridge + local runtime: one shared sidecar host process, and one server process per',
    'session),',
    'supergateway 4.0.0 `--stateful` (one gateway process, one server process per session) and',
    'direct stdio (the client talks NDJSON to the server: the floor), all fronting the same',
    '`@modelcontextprotocol/server-everything` stdio server and its `echo` tool, protocol',
    '2025-06-18. The client is `node:http` with a keep-alive agent (no SDK), in the benchmark',
    'process. Contenders are started fresh for each round and measured interleaved, the order',
    `rotating per round; every figure is the median of ${r.rounds} rounds with the min–max range in`,
    'brackets. Latency, throughput and session start run their contenders at once and take their',
    'calls in blocks, time windows or batches of sessions, in turn across the contenders, so a slow',
    'spell of the machine falls on all of them alike; memory is measured one contender at a time.',
    'Everything runs on loopback.',
    '',
    '![Latency percentiles and throughput by concurrency](benchmarks.svg)',
    '',
    '## Machine and versions',
    '',
    table(
      ['', ''],
      [...Object.entries(r.machine), ...Object.entries(r.versions)].map(([k, v]) => [k, v])
    ),
    '',
    '## Targets (same run)',
    '',
    table(
      ['measure', 'value', 'target', 'met'],
      targetsOf(r).map((t) => [t.name, t.shown, t.target, t.met ? 'yes' : '**no**'])
    ),
    '',
    `## Latency: one session each, ${String(r.plan.latencyCalls)} sequential \`tools/call echo\` in ${String(r.plan.latencyBlocks)} blocks taken in turn, after ${String(r.plan.warmup)} warm-up calls (ms)`,
    '',
    table(
      ['contender', 'p50', 'p90', 'p99', 'max'],
      NAMES.filter((n) => r.latency[n]).map((n) => [
        label(n),
        ...(['p50', 'p90', 'p99', 'max'] as const).map((k) =>
          fmt(
            of(r.latency[n], (l) => l[k])!,
            ms
          )
        ),
      ])
    ),
    '',
    ...floorNote(r),
    `## Throughput: 4 sessions, requests in flight held constant for ${Number(r.plan.throughputMs) / 1000} s per contender, in ${String(r.plan.throughputWindows)} windows taken in turn`,
    '',
    table(
      [
        'in flight',
        'contender',
        'req/s',
        'p99 (ms)',
        'client CPU (share of a core)',
        'Ferry / supergateway req/s',
      ],
      Object.entries(r.throughput).flatMap(([inFlight, byName]) =>
        ['ferry', 'supergateway'].map((n) => {
          const rps = of(byName[n], (t) => t.rps)!
          const other = of(byName.supergateway, (t) => t.rps)!
          return [
            inFlight,
            n,
            fmt(rps, (v) => v.toFixed(0)),
            fmt(
              of(byName[n], (t) => t.latency.p99)!,
              ms
            ),
            fmt(
              of(byName[n], (t) => t.clientCpu)!,
              (v) => v.toFixed(2)
            ),
            n === 'ferry' ? (rps.median / other.median).toFixed(2) : '',
          ]
        })
      )
    ),
    '',
    `## Session start: ${String(r.plan.startSessions)} sessions each, created 5 at a time, the batches taken in turn (initialize → initialized → first \`tools/list\`)`,
    '',
    table(
      ['contender', 'sessions/s', 'p50 (ms)', 'p99 (ms)'],
      NAMES.filter((n) => r.sessionStart[n]).map((n) => [
        label(n),
        fmt(
          of(r.sessionStart[n], (s) => s.perSecond)!,
          (v) => v.toFixed(2)
        ),
        fmt(
          of(r.sessionStart[n], (s) => s.latency.p50)!,
          (v) => v.toFixed(0)
        ),
        fmt(
          of(r.sessionStart[n], (s) => s.latency.p99)!,
          (v) => v.toFixed(0)
        ),
      ])
    ),
    '',
    ...gateNote(r),
    `## Memory: PSS of everything a contender runs, with ${String(r.plan.memorySessions)} sessions open`,
    '',
    table(
      ['contender', 'per open session', 'total', 'with no session', 'processes'],
      NAMES.filter((n) => r.memory[n]).map((n) => [
        n,
        fmt(
          of(r.memory[n], (m) => m.perSessionPss)!,
          mb
        ),
        fmt(
          of(r.memory[n], (m) => m.totalPss)!,
          mb
        ),
        fmt(
          of(r.memory[n], (m) => m.idlePss)!,
          mb
        ),
        String(r.memory[n]![0]!.processes),
      ])
    ),
    ''
  )
  if (r.scale?.length) {
    add(
      '## Scale: many open sessions on one bridge',
      '',
      'Ten thousand server processes do not fit on this machine, so this part hosts the sessions in',
      'one process: the real sidecar code (`SidecarSession`, `EventLog`, `SidecarServer` frames) for',
      'every session, each behind its own WebSocket, with a trivial in-process echo server instead',
      'of a child process. The bridge is the real one, in its own process, with one pooled',
      'connection per session kept open; one bridge grows through every count. "Growth per',
      'session" is its RSS growth (after a full GC) over a baseline taken once 200 sessions were',
      'opened, used and closed, divided by the open sessions; the target is judged on the',
      `marginal cost, the RSS step from ${r.scale[0]!.sessions} to ${r.scale.at(-1)!.sessions} sessions per session added:`,
      `**${kb(marginalBytesPerSession(r.scale))}**. Latency is \`tools/call\` on random sessions while all are open.`,
      '',
      table(
        ['open sessions', 'bridge RSS', 'growth per session', 'p50 (ms)', 'p99 (ms)'],
        r.scale.map((s) => [
          String(s.sessions),
          mb(s.bridgeRss),
          kb(s.bridgeBytesPerSession),
          ms(s.latency.p50),
          ms(s.latency.p99),
        ])
      ),
      ''
    )
  }
  if (r.kubernetes) {
    add(
      '## Kubernetes runtime on the simulated cluster',
      '',
      'Session start through the bridge with the Kubernetes runtime against the simulated cluster',
      '(test/k8s: a fake API server, Job controller and kubelet simulator that runs each pod as real',
      'local processes — the sidecar and server-everything): create the Job → pod Ready → sidecar',
      `dialled → \`initialize\` answered, ${r.kubernetes.sessions} sessions one after another (ms).`,
      '',
      table(
        ['p50', 'p90', 'p99', 'max'],
        [
          [
            ms(r.kubernetes.latency.p50),
            ms(r.kubernetes.latency.p90),
            ms(r.kubernetes.latency.p99),
            ms(r.kubernetes.latency.max),
          ],
        ]
      ),
      ''
    )
  }
  if (r.profiles) {
    const { calls, graphs } = r.profiles
    add(
      '## Where the time goes: flame graphs',
      '',
      'After the measurements above, Ferry and the two-hop floor on Hono each served one session',
      `${calls} more sequential \`tools/call echo\` calls with every process under \`node --cpu-prof\``,
      '(a sample every 250 µs). Each graph counts the samples taken while those calls ran, idle',
      'ones left out, in µs per call (hover a frame, in the SVG itself, for its figure). The',
      'profiler slows what it watches, so compare the graphs with each other rather than with the',
      'CPU figures above. A wide `writev` or `writeUtf8String` is a write to the next process in the',
      'chain: on two cores the writer is often descheduled right there in favour of the process it',
      'woke, and that wait is counted as the write.',
      '',
      table(
        ['process', 'not idle, per call'],
        graphs.map((g) => [`[${g.title}](profiles/${g.file})`, `${g.busyUsPerCall.toFixed(0)} µs`])
      ),
      '',
      ...graphs.flatMap((g) => [`![${g.title}](profiles/${g.file})`, ''])
    )
  }
  add(
    '## Commands',
    '',
    '```sh',
    'npm run bench               # 3 rounds, writes this page, benchmarks.svg and profiles/',
    'npm run bench -- --quick    # short smoke run',
    '```',
    ''
  )
  return { markdown: lines.join('\n'), svg: renderChart(r) }
}

/** Two panels: latency percentiles per contender, throughput by concurrency. */
const renderChart = (r: Results): string => {
  const width = 900
  const height = 360
  const colors: Record<string, string> = {
    ferry: '#2563eb',
    supergateway: '#f97316',
    stdio: '#6b7280',
    floor: '#a3a3a3',
    'hono-floor': '#d4d4d4',
  }
  const parts: string[] = []
  const text = (x: number, y: number, body: string, extra = '', size = 12) =>
    parts.push(
      `<text x="${x}" y="${y}" font-family="sans-serif" font-size="${size}" ${extra}>${body}</text>`
    )
  /** One panel of bars: a group per `groups` entry, a bar per series, a baseline under them. */
  const barPanel = (
    panel: { x: number; y: number; w: number; h: number },
    title: string,
    groups: string[],
    series: string[],
    value: (group: string, name: string) => number,
    shown: (v: number) => string
  ) => {
    const max = Math.max(...groups.flatMap((g) => series.map((n) => value(g, n)))) * 1.1
    text(panel.x, 24, title, 'font-weight="bold"')
    const group = panel.w / Math.max(1, groups.length)
    groups.forEach((g, gi) => {
      series.forEach((n, ni) => {
        const barW = (group - 20) / series.length
        const v = value(g, n)
        const h = (v / max) * panel.h
        const x = panel.x + gi * group + 10 + ni * barW
        parts.push(
          `<rect x="${x}" y="${panel.y + panel.h - h}" width="${barW - 2}" height="${h}" fill="${colors[n]}"/>`
        )
        text(x, panel.y + panel.h - h - 4, shown(v), '', 10)
      })
      text(panel.x + gi * group + group / 2 - 10, panel.y + panel.h + 16, g)
    })
    parts.push(
      `<line x1="${panel.x}" y1="${panel.y + panel.h}" x2="${panel.x + panel.w}" y2="${panel.y + panel.h}" stroke="#000"/>`
    )
  }
  // Left: latency percentiles per contender; right: throughput by requests in flight.
  const names = NAMES.filter((n) => r.latency[n])
  barPanel(
    { x: 60, y: 40, w: 360, h: 260 },
    'tools/call latency, one session (ms)',
    ['p50', 'p90', 'p99'],
    names,
    (k, n) => of(r.latency[n], (l) => l[k as 'p50' | 'p90' | 'p99'])!.median,
    (v) => v.toFixed(2)
  )
  barPanel(
    { x: 500, y: 40, w: 360, h: 260 },
    'throughput, 4 sessions (req/s) by requests in flight',
    Object.keys(r.throughput),
    ['ferry', 'supergateway'],
    (level, n) => of(r.throughput[Number(level)]?.[n], (t) => t.rps)?.median ?? 0,
    (v) => v.toFixed(0)
  )
  names.forEach((n, i) => {
    parts.push(
      `<rect x="${60 + i * 140}" y="${height - 22}" width="12" height="12" fill="${colors[n]}"/>`
    )
    text(78 + i * 140, height - 12, label(n))
  })
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}"><rect width="100%" height="100%" fill="#fff"/>${parts.join('')}</svg>\n`
}
