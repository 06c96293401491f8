#!/usr/bin/env -S node --max-semi-space-size=4
/**
 * @module
 * Process entry of the `ferry` command. A 4 MiB young generation (instead of
 * V8's 16 MiB) keeps the heap from ballooning after bursts of session starts:
 * bridge memory per idle session drops about threefold (see docs/benchmarks.md).
 */
import { main } from './cli.ts'

await main(process.argv.slice(2))
