/**
 * Static checks of the Dockerfiles (no Docker engine runs here, so nothing is built): pinned
 * base images, non-root numeric users in every image that ships, the documented entry points,
 * and build contexts that hold what the builds copy.
 */
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { repoRoot } from './k8s.ts'

interface Instruction {
  keyword: string
  args: string
}

interface Stage {
  image: string
  name?: string
  instructions: Instruction[]
}

/** Splits a Dockerfile into stages of instructions (comments dropped, continuations joined). */
function parseDockerfile(text: string): Stage[] {
  const logical: string[] = []
  let current = ''
  for (const raw of text.split('\n')) {
    const line = raw.trimEnd()
    if (/^\s*#/.test(line)) continue
    if (line.endsWith('\\')) {
      current += `${line.slice(0, -1)} `
      continue
    }
    current += line
    if (current.trim()) logical.push(current.trim().replace(/\s+/g, ' '))
    current = ''
  }
  const stages: Stage[] = []
  for (const line of logical) {
    const [keyword = '', ...rest] = line.split(' ')
    const args = rest.join(' ')
    if (keyword.toUpperCase() === 'FROM') {
      const match = /^(?:--platform=\S+ )?(\S+)(?: AS (\S+))?$/i.exec(args)
      expect(match, `FROM ${args}`).not.toBeNull()
      stages.push({ image: match![1]!, name: match![2], instructions: [] })
    } else if (keyword.toUpperCase() !== 'ARG' || stages.length > 0) {
      stages.at(-1)?.instructions.push({ keyword: keyword.toUpperCase(), args })
    }
  }
  return stages
}

const read = (path: string) => readFileSync(join(repoRoot, path), 'utf8')
const stage = (stages: Stage[], name: string): Stage => {
  const found = stages.find((s) => s.name === name)
  expect(found, `stage ${name}`).toBeDefined()
  return found!
}
const all = (s: Stage, keyword: string) =>
  s.instructions.filter((i) => i.keyword === keyword).map((i) => i.args)
const last = (s: Stage, keyword: string) => all(s, keyword).at(-1)
const execForm = (args: string | undefined): unknown => (args ? JSON.parse(args) : undefined)

/** External images a Dockerfile pulls: FROM images and `COPY --from=<image>`, minus stages. */
function externalImages(stages: Stage[]): string[] {
  const names = new Set(stages.map((s) => s.name).filter(Boolean))
  const copied = stages.flatMap((s) =>
    all(s, 'COPY').flatMap((args) => /--from=(\S+)/.exec(args)?.[1] ?? [])
  )
  return [...stages.map((s) => s.image), ...copied].filter((image) => !names.has(image))
}

/** Tag and digest of an image reference (a registry port is not a tag). */
function imageVersion(image: string): { tag?: string; digest?: string } {
  const [ref = '', digest] = image.split('@')
  const lastPart = ref.split('/').at(-1) ?? ''
  const tag = lastPart.includes(':') ? lastPart.split(':')[1] : undefined
  return { tag, digest }
}

/** The user of an image: its last USER, which must be a numeric, non-root uid[:gid]. */
function expectNonRootUser(s: Stage) {
  const user = last(s, 'USER')
  expect(user, `stage ${s.name} sets USER`).toBeDefined()
  // Numeric, so the kubelet can check `runAsNonRoot` without reading /etc/passwd.
  expect(user, `stage ${s.name}`).toMatch(/^\d+(:\d+)?$/)
  expect(Number(user!.split(':')[0]), `stage ${s.name}`).toBeGreaterThan(0)
  expect(Number(user!.split(':')[0]), `stage ${s.name}`).toBe(10001)
}

const DOCKERFILES = ['sidecar/Dockerfile', 'bridge/Dockerfile']
const workspaces = (JSON.parse(read('package.json')) as { workspaces: string[] }).workspaces

describe.each(DOCKERFILES)('%s', (path) => {
  const stages = parseDockerfile(read(path))

  it('pins every base image', () => {
    for (const image of externalImages(stages)) {
      const { tag, digest } = imageVersion(image)
      if (image.startsWith('node:')) {
        expect(image, 'Node images are node:24-bookworm-slim').toMatch(
          /^node:24-bookworm-slim(@sha256:[0-9a-f]{64})?$/
        )
      }
      expect(tag ?? digest, `${image} has a tag or digest`).toBeTruthy()
      expect(tag, `${image} is not :latest`).not.toBe('latest')
      if (digest) expect(digest).toMatch(/^sha256:[0-9a-f]{64}$/)
    }
    expect(stages.filter((s) => s.image.startsWith('node:')).length).toBeGreaterThan(0)
  })

  it('ships a non-root runtime stage as the default target', () => {
    const runtime = stages.at(-1)!
    expect(runtime.name).toBe('runtime')
    expect(runtime.image).toMatch(/^node:24-bookworm-slim/)
    expectNonRootUser(runtime)
    expect(all(runtime, 'EXPOSE')).toEqual(['8080'])
  })

  it('copies every workspace manifest before `npm ci`, and builds from the repository root', () => {
    // `npm ci` refuses a lockfile that does not match every workspace's package.json.
    const copied = stages.flatMap((s) => all(s, 'COPY')).join('\n')
    for (const workspace of workspaces) {
      expect(copied, workspace).toContain(`${workspace}/package.json`)
    }
    for (const s of stages) {
      for (const args of all(s, 'COPY').filter((a) => !a.includes('--from='))) {
        for (const source of args.split(' ').slice(0, -1)) {
          expect(existsSync(join(repoRoot, source)), `${path} copies ${source}`).toBe(true)
        }
      }
    }
  })
})

describe('sidecar/Dockerfile', () => {
  const stages = parseDockerfile(read('sidecar/Dockerfile'))

  it('builds the shared and sidecar workspaces', () => {
    const build = stage(stages, 'build')
    expect(build.image).toBe('node:24-bookworm-slim')
    const runs = all(build, 'RUN').join('\n')
    expect(runs).toMatch(/npm ci\b/)
    expect(runs).toMatch(/npm run build -w @ferry\/shared -w @ferry\/sidecar/)
  })

  it('runs `node /ferry/sidecar.mjs` as uid 10001 with npx and uvx available', () => {
    const runtime = stage(stages, 'runtime')
    expect(execForm(last(runtime, 'ENTRYPOINT'))).toEqual(['node', '/ferry/sidecar.mjs'])
    expect(last(runtime, 'CMD')).toBeUndefined()
    expect(last(runtime, 'WORKDIR')).toBe('/home/ferry')
    expect(all(runtime, 'COPY')).toContain(
      '--from=build /src/sidecar/dist/sidecar.mjs /ferry/sidecar.mjs'
    )
    expect(
      all(runtime, 'COPY').some((c) => /^--from=ghcr\.io\/astral-sh\/uv:\S+ \/uv \/uvx /.test(c))
    ).toBe(true)
    const env = all(runtime, 'ENV').join(' ')
    for (const setting of [
      'HOME=/home/ferry',
      'NPM_CONFIG_CACHE=/tmp/.npm',
      'UV_CACHE_DIR=/tmp/.uv',
    ]) {
      expect(env).toContain(setting)
    }
    expectNonRootUser(runtime)
  })

  it('has an `inject` target holding only the bundle and a cp', () => {
    const inject = stage(stages, 'inject')
    expect(inject.image).toMatch(/^busybox:/)
    expect(all(inject, 'COPY')).toEqual([
      '--from=build /src/sidecar/dist/sidecar.mjs /ferry/sidecar.mjs',
    ])
    expect(execForm(last(inject, 'ENTRYPOINT'))).toEqual(['cp', '/ferry/sidecar.mjs'])
    expectNonRootUser(inject)
  })
})

describe('bridge/Dockerfile', () => {
  const stages = parseDockerfile(read('bridge/Dockerfile'))

  it('runs `ferry serve` with production dependencies only', () => {
    const runtime = stage(stages, 'runtime')
    expect(execForm(last(runtime, 'CMD'))).toEqual([
      'node',
      '--max-semi-space-size=4',
      'bridge/dist/bin.js',
      'serve',
    ])
    expect(last(runtime, 'ENTRYPOINT')).toBeUndefined()
    // node_modules come from the stage that installed with --omit=dev, not from the build.
    const modules = all(runtime, 'COPY').filter((c) => /\bnode_modules\b/.test(c))
    expect(modules.length).toBeGreaterThan(0)
    for (const copy of modules) {
      const from = /--from=(\S+)/.exec(copy)?.[1]
      expect(from).toBeDefined()
      expect(all(stage(stages, from!), 'RUN').join('\n')).toMatch(
        /npm ci (--ignore-scripts )?--omit=dev/
      )
    }
  })
})

describe('.dockerignore', () => {
  const lines = read('.dockerignore')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))

  it('keeps host dependencies and build output out of the context, but not what builds need', () => {
    expect(lines).toEqual(expect.arrayContaining(['**/node_modules', '**/dist', '.git']))
    // The test workspace's manifest is needed by `npm ci`.
    expect(lines).toContain('!test/package.json')
    for (const needed of [
      'package.json',
      'package-lock.json',
      'tsconfig.json',
      'shared',
      'sidecar',
      'bridge',
    ]) {
      expect(lines, needed).not.toContain(needed)
    }
  })
})
