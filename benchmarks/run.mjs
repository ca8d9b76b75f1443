#!/usr/bin/env zx
// Runs every benchmark suite several times and prints one table of medians, with each
// figure's ratio to its baseline measured in the same run, and writes JSON to
// benchmarks/results/latest.json (and a dated copy).
//
//   npm run bench                   all suites, 5 runs each
//   npm run bench -- core --runs 3  suites whose name contains "core"
//
// Suite contract: benchmarks/suites/<name>.mjs is a standalone node script (its own
// process, so its own DSM node) whose LAST stdout line is one JSON object:
//   { "suite": "...", "rows": [ { "name", "value", "unit", "baseline", "baselineValue",
//                                 "ratio", "target": "<= 1.3" | ">= 0.95" | "<= 10 us" | null } ] }
// A suite that cannot run here prints { "suite", "rows": [], "skipped": "why" } and exits 0.
// The runner takes, per row name, the median value, baseline and ratio across runs.
import { readdirSync, writeFileSync, mkdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

$.verbose = false;
const here = path.dirname(new URL(import.meta.url).pathname);
const runs = Number(argv.runs ?? 5);
const filter = argv._.join(' ');
const all = readdirSync(path.join(here, 'suites')).filter((f) => f.endsWith('.mjs'));
const suites = all.filter((f) => f.includes(filter));
// Refused before anything runs or is written: a typo must not print an empty table and
// rewrite the results files with nothing.
const usage = `usage: dsm bench [suite] [--runs N]; suites: ${all.map((f) => f.replace(/\.mjs$/, '')).join(', ')}`;
if (argv.help || argv.h) {
  console.log(usage);
  process.exit(0);
}
if (!Number.isInteger(runs) || runs < 1) {
  console.error(`--runs must be a whole number of runs, 1 or more, got ${argv.runs}\n${usage}`);
  process.exit(2);
}
if (suites.length === 0) {
  console.error(`no benchmark suite matches "${filter}"\n${usage}`);
  process.exit(2);
}
const median = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];

const cpu = readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/)?.[1] ?? os.cpus()[0]?.model;
const machine = { cpu, cores: os.cpus().length, memoryGiB: Math.round(os.totalmem() / 2 ** 30), kernel: os.release(), node: process.version, date: new Date().toISOString() };

const results = [];
for (const file of suites) {
  const perRun = [];
  for (let r = 1; r <= runs; r++) {
    process.stderr.write(`${file}: run ${r}/${runs}...\r`);
    const out = await $`node ${path.join(here, 'suites', file)}`.nothrow();
    if (out.exitCode !== 0) {
      console.error(`\n${file} failed (exit ${out.exitCode}):\n${out.stderr}`);
      process.exitCode = 1;
      break;
    }
    const res = JSON.parse(out.stdout.trim().split('\n').pop());
    if (res.skipped) {
      console.error(`\n${file} skipped: ${res.skipped}`);
      break;
    }
    perRun.push(res);
  }
  process.stderr.write('\n');
  if (perRun.length === 0) continue;
  for (const row of perRun[0].rows) {
    const same = perRun.map((p) => p.rows.find((x) => x.name === row.name)).filter(Boolean);
    const value = median(same.map((x) => x.value));
    const baselineValue = row.baselineValue == null ? null : median(same.map((x) => x.baselineValue));
    const ratio = row.ratio == null ? null : median(same.map((x) => x.ratio));
    results.push({ suite: perRun[0].suite, name: row.name, value, unit: row.unit, baseline: row.baseline, baselineValue, ratio, target: row.target, runs: same.length, met: met(row.target, value, ratio, row.unit) });
  }
}

function met(target, value, ratio, unit) {
  if (!target) return null;
  const m = /^(<=|>=)\s*([\d.]+)\s*(\S+)?$/.exec(target);
  if (!m) return null;
  const x = m[3] ? value : ratio;
  return m[1] === '<=' ? x <= Number(m[2]) : x >= Number(m[2]);
}

const fmt = (v) => (v == null ? '' : Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(2));
const table = [['suite', 'figure', 'median', 'unit', 'baseline', 'baseline value', 'ratio', 'target', 'met']];
for (const r of results) table.push([r.suite, r.name, fmt(r.value), r.unit, r.baseline ?? '', fmt(r.baselineValue), fmt(r.ratio), r.target ?? '', r.met == null ? '' : r.met ? 'yes' : 'NO']);
const widths = table[0].map((_, i) => Math.max(...table.map((row) => String(row[i]).length)));
console.log(`machine: ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB, Linux ${machine.kernel}, Node ${machine.node}; medians of ${runs} runs`);
for (const row of table) console.log(row.map((c, i) => String(c).padEnd(widths[i])).join(' | '));

// A run of some suites replaces their rows in the files and keeps the other suites' rows
// (each row says how many runs its median is of, and when: the machine line of its run).
// A run that measured nothing (every suite failed or skipped) leaves them as they were.
if (results.length === 0) process.exit(process.exitCode ?? 0);
mkdirSync(path.join(here, 'results'), { recursive: true });
const ran = new Set(results.map((r) => r.suite));
for (const file of ['latest.json', `${machine.date.slice(0, 10)}.json`]) {
  const at = path.join(here, 'results', file);
  let kept = [];
  try {
    kept = JSON.parse(readFileSync(at, 'utf8')).results.filter((r) => !ran.has(r.suite));
  } catch {
    // No earlier results (or not ours): this run's alone.
  }
  const dated = results.map((r) => ({ ...r, date: machine.date }));
  writeFileSync(at, JSON.stringify({ machine, runs, results: [...kept, ...dated] }, null, 2));
}
