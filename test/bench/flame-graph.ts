/**
 * Renders a V8 CPU profile (`node --cpu-prof`) as a flame graph in SVG, drawn as an icicle: the
 * root on top, callees below their callers, each frame as wide as its share of the busy time.
 * Only the samples taken while the measured calls ran count, idle ones left out, and widths are
 * given in µs per call, so graphs of processes that served the same calls compare side by side.
 */

/** The parts of a `.cpuprofile` this reads. */
export interface CpuProfile {
  nodes: Array<{
    id: number
    callFrame: { functionName: string; url: string }
    children?: number[]
  }>
  /** Microseconds on the system's monotonic clock, as `process.hrtime` reads it. */
  startTime: number
  samples: number[]
  /** Microseconds before each sample. */
  timeDeltas: number[]
}

type Kind = 'ferry' | 'dependency' | 'node' | 'engine'

interface Frame {
  name: string
  kind: Kind
  /** Microseconds in this frame and its callees. */
  total: number
  children: Map<string, Frame>
}

const COLORS: Record<Kind, string> = {
  ferry: '#e45756',
  dependency: '#f2a541',
  node: '#72b7b2',
  engine: '#bab0ac',
}
const LEGEND: Record<Kind, string> = {
  ferry: 'Ferry',
  dependency: 'dependencies',
  node: 'Node.js',
  engine: 'V8 and native',
}

const kindOf = (url: string): Kind => {
  if (/\/(bridge|shared|sidecar)\/dist\//.test(url)) return 'ferry'
  if (url.includes('node_modules') || url.startsWith('file:')) return 'dependency'
  return url.startsWith('node:') ? 'node' : 'engine'
}

/** `function file` with the file shortened to its last two path segments. */
const labelOf = ({ functionName, url }: { functionName: string; url: string }) => {
  const file = url.split('/').slice(-2).join('/')
  return file ? `${functionName || '(anonymous)'} ${file}` : functionName || '(anonymous)'
}

/** The profile as a tree of frames merged by label, with the busy time in `window` only. */
const frameTree = (profile: CpuProfile, window: TimeWindow): Frame => {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]))
  const self = new Map<number, number>()
  let time = profile.startTime
  profile.samples.forEach((id, i) => {
    const delta = profile.timeDeltas[i] ?? 0
    time += delta
    if (time >= window.startUs && time <= window.endUs) self.set(id, (self.get(id) ?? 0) + delta)
  })
  const build = (id: number, into: Frame) => {
    const node = byId.get(id)!
    const { functionName, url } = node.callFrame
    if (functionName === '(idle)') return
    const name = labelOf(node.callFrame)
    let frame = into.children.get(name)
    if (!frame) {
      frame = { name, kind: kindOf(url), total: 0, children: new Map() }
      into.children.set(name, frame)
    }
    frame.total += self.get(id) ?? 0
    for (const child of node.children ?? []) build(child, frame)
  }
  const root: Frame = { name: 'all', kind: 'engine', total: 0, children: new Map() }
  const rootNode = profile.nodes[0]!
  for (const child of rootNode.children ?? []) build(child, root)
  const sum = (frame: Frame): number => {
    for (const child of frame.children.values()) frame.total += sum(child)
    return frame.total
  }
  sum(root)
  return root
}

const escape = (text: string) =>
  text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')

/** A stretch of the monotonic clock, in microseconds. */
export interface TimeWindow {
  startUs: number
  endUs: number
}

export interface FlameGraphOptions {
  title: string
  /** When the calls were made; samples outside it (start-up, warm-up, shutdown) are left out. */
  window: TimeWindow
  /** Calls made in the window: widths are labelled per call. */
  calls: number
  width?: number
}

/** The flame graph of `profile` as an SVG document, and the busy microseconds it shows. */
export const renderFlameGraph = (
  profile: CpuProfile,
  options: FlameGraphOptions
): { svg: string; busyUs: number } => {
  const width = options.width ?? 1200
  const row = 17
  const top = 44
  const root = frameTree(profile, options.window)
  const perCall = (us: number) => `${(us / options.calls).toFixed(1)} µs per call`
  const rects: string[] = []
  let depth = 0
  const draw = (frame: Frame, x: number, level: number) => {
    const w = (frame.total / root.total) * width
    if (w < 0.3) return
    depth = Math.max(depth, level)
    const y = top + level * row
    const share = ((frame.total / root.total) * 100).toFixed(1)
    const chars = Math.floor((w - 6) / 6.6)
    const text =
      chars >= 3
        ? `<text x="${(x + 3).toFixed(1)}" y="${y + 12}">${escape(
            frame.name.length > chars ? `${frame.name.slice(0, chars - 1)}…` : frame.name
          )}</text>`
        : ''
    rects.push(
      `<g><title>${escape(frame.name)}: ${perCall(frame.total)} (${share}%)</title>` +
        `<rect x="${x.toFixed(1)}" y="${y}" width="${w.toFixed(1)}" height="${row - 1}" fill="${COLORS[frame.kind]}"/>${text}</g>`
    )
    let offset = x
    for (const child of [...frame.children.values()].sort((a, b) => b.total - a.total)) {
      draw(child, offset, level + 1)
      offset += (child.total / root.total) * width
    }
  }
  draw(root, 0, 0)
  const legendY = top + (depth + 1) * row + 18
  const legend = (Object.keys(COLORS) as Kind[])
    .map(
      (kind, i) =>
        `<rect x="${i * 150}" y="${legendY - 11}" width="12" height="12" fill="${COLORS[kind]}"/>` +
        `<text x="${i * 150 + 17}" y="${legendY}">${LEGEND[kind]}</text>`
    )
    .join('')
  const svg = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${legendY + 10}" font-family="monospace" font-size="11">`,
    '<rect width="100%" height="100%" fill="#ffffff"/>',
    `<text x="0" y="16" font-size="14">${escape(options.title)}</text>`,
    `<text x="0" y="34">busy ${perCall(root.total)}, over ${options.calls} calls; idle time left out; hover a frame for its figure</text>`,
    ...rects,
    legend,
    '</svg>',
    '',
  ].join('\n')
  return { svg, busyUs: root.total }
}
