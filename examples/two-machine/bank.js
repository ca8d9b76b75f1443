#!/usr/bin/env node
// The two-machine demo: a master and a slave share an array of bank accounts and a
// transfer counter. Both move money between random accounts at the same time, for a while,
// then both check that no money appeared or vanished and that the counter is exact.
//
//   master:  node bank.js --role master --listen 0.0.0.0:7400 --secret S
//   slave:   node bank.js --role slave  --listen 0.0.0.0:7401 --connect MASTER:7400 --secret S
'use strict';
const { parseArgs } = require('node:util');
const { createNode } = require('../..'); // in your own project: require('node-dsm')

const OPTIONS = {
  role: { type: 'string', default: 'master' },
  listen: { type: 'string', default: '127.0.0.1:0' },
  connect: { type: 'string' },
  secret: { type: 'string', default: process.env.DSM_SECRET },
  duration: { type: 'string', default: '10' },
  accounts: { type: 'string', default: '1000' },
  // How long to wait for the other machine (to join, to create the bank, to finish) before
  // giving up: a machine whose partner never comes says so instead of hanging.
  wait: { type: 'string', default: '60' },
  'region-size': { type: 'string', default: String(64 << 20) },
  // 'replicated' (the default): a transfer is acknowledged once the other machine holds it.
  durability: { type: 'string', default: 'replicated' },
  help: { type: 'boolean', short: 'h', default: false },
};
const USAGE = 'usage: node bank.js --role master|slave --secret S [--listen HOST:PORT] [--connect MASTER:PORT] [--duration S] [--accounts N] [--wait S] [--region-size BYTES] [--durability replicated|none]';
/** Bad options end the program before it starts, with what to pass instead. */
function refuse(why) {
  console.error(`bank: ${why}\n${USAGE}`);
  process.exit(2);
}
const parsed = (() => {
  try {
    return parseArgs({ options: OPTIONS });
  } catch (e) {
    return refuse(e.message);
  }
})();
const a = parsed.values;
if (a.help) {
  console.log(USAGE);
  process.exit(0);
}
if (!a.secret) refuse('pass --secret S (the same on both machines) or set DSM_SECRET');
if (a.role !== 'master' && a.role !== 'slave') refuse(`--role must be master or slave, got "${a.role}"`);
if (a.role === 'slave' && !a.connect) refuse('the slave needs --connect MASTER_HOST:PORT');
if (!(Number(a.wait) > 0)) refuse(`--wait must be a positive number of seconds, got "${a.wait}"`);

// The bank is one object in the shared heap, named by the root "bank" (the same address on
// every machine), in f64 slots: integer amounts stay exact up to 2^53.
const MAX_NODES = 64;
const COUNTER = 0;
const N_ACCOUNTS = 1;
const PER_NODE = 2; // transfers committed by each node
const DONE = PER_NODE + MAX_NODES; // each node's "finished" flag
const ACCOUNTS = DONE + MAX_NODES;
const INITIAL = 1000;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const say = (...m) => console.log(`[${a.role}]`, ...m);

async function main() {
  const dsm = await createNode({
    listen: a.listen,
    peers: a.connect ? [a.connect] : [],
    secret: a.secret,
    regionSize: Number(a['region-size']),
    durability: a.durability,
  });
  say(`node ${dsm.nodeId} up at ${dsm.address}`);
  const f64 = dsm.f64;
  let bank; // index of the bank's first f64 slot
  if (a.role === 'master') {
    const n = Number(a.accounts);
    bank = await dsm.transaction((tx) => {
      const at = tx.alloc((ACCOUNTS + n) * 8) / 8; // zeroed; page-aligned when over 4 KiB
      for (let i = 0; i < n; i++) f64[at + ACCOUNTS + i] = INITIAL;
      f64[at + N_ACCOUNTS] = n;
      tx.setRoot('bank', at * 8); // in the same transaction: the slave sees all or nothing
      return at;
    });
    say(`created ${n} accounts of ${INITIAL} at offset ${bank * 8}; waiting for the slave`);
    // Asked of the membership, not awaited as a 'peer-join' event: a slave that connects
    // while createNode() is still opening the heap joins before this line could listen, and
    // the master waited for ever (2 of 100 loaded runs; the slave then ran alone).
    await waitUntil(async () => (await dsm.clusterStats()).members.length >= 2, 'no slave joined (is one started with --connect to this address and the same --secret?)');
  } else {
    await waitFor(dsm, () => dsm.root('bank') !== undefined, 'the master created no bank');
    bank = dsm.root('bank') / 8;
    say(`found the bank at offset ${bank * 8}: ${f64[bank + N_ACCOUNTS]} accounts`);
  }
  const n = f64[bank + N_ACCOUNTS];
  const me = dsm.nodeId;
  const until = Date.now() + Number(a.duration) * 1000;
  let transfers = 0;
  let aborts = 0;
  dsm.on('abort', () => aborts++);
  const t0 = Date.now();
  let lastShow = 0;
  while (Date.now() < until) {
    const from = Math.floor(Math.random() * n);
    const to = Math.floor(Math.random() * n);
    const amount = 1 + Math.floor(Math.random() * 50);
    await dsm.transaction(() => {
      if (f64[bank + ACCOUNTS + from] < amount || from === to) return;
      f64[bank + ACCOUNTS + from] -= amount;
      f64[bank + ACCOUNTS + to] += amount;
      f64[bank + COUNTER] += 1;
      f64[bank + PER_NODE + me] += 1;
    });
    transfers++;
    if (Date.now() - lastShow > 500) {
      lastShow = Date.now();
      show(dsm, transfers, aborts, t0);
    }
  }
  show(dsm, transfers, aborts, t0);
  await dsm.transaction(() => {
    f64[bank + DONE + me] = 1;
  });
  say('finished; waiting for the other machine');
  await waitFor(dsm, () => f64[bank + DONE + 0] >= 1 && f64[bank + DONE + 1] >= 1, 'the other machine did not finish its transfers');
  const check = await dsm.transaction(() => {
    let total = 0;
    for (let i = 0; i < n; i++) total += f64[bank + ACCOUNTS + i];
    let perNode = 0;
    for (let i = 0; i < MAX_NODES; i++) perNode += f64[bank + PER_NODE + i];
    return { total, counter: f64[bank + COUNTER], perNode };
  });
  const ok = check.total === n * INITIAL && check.counter === check.perNode;
  say(`total ${check.total} (expected ${n * INITIAL}), counter ${check.counter} (transfers by all nodes ${check.perNode}): ${ok ? 'OK' : 'MISMATCH'}`);
  // The master leaves last, once the slave has checked and gone (a closing node hands its
  // pages over, but the slave must not read while the master is leaving).
  await dsm.transaction(() => {
    f64[bank + DONE + me] = 2;
  });
  await waitFor(dsm, () => f64[bank + DONE + 0] === 2 && f64[bank + DONE + 1] === 2, 'the other machine did not check the bank');
  if (a.role === 'master') await waitUntil(async () => (await dsm.clusterStats()).members.length === 1, 'the slave did not leave');
  await dsm.close();
  process.exitCode = ok ? 0 : 1;
}

function show(dsm, transfers, aborts, t0) {
  const s = dsm.stats();
  const secs = (Date.now() - t0) / 1000;
  say(
    `transfers ${transfers} (${(transfers / secs).toFixed(0)}/s)  commits ${s.transactions.committed}  aborts ${aborts}  ` +
      `faults read ${s.faults.read} write ${s.faults.write} remote ${s.faults.service}  time ${s.globalTime}`,
  );
}

/** Polls `cond` in read-only transactions (each sees a consistent state), as `waitUntil` does. */
function waitFor(dsm, cond, what) {
  return waitUntil(() => dsm.transaction(() => cond()), what);
}

/** Polls `check` until it is true; after --wait seconds, says `what` did not happen and exits. */
async function waitUntil(check, what) {
  const end = Date.now() + Number(a.wait) * 1000;
  for (;;) {
    if (await check()) return;
    if (Date.now() > end) {
      console.error(`[${a.role}] gave up after ${a.wait} s (--wait): ${what}`);
      process.exit(1);
    }
    await sleep(50);
  }
}

process.on('unhandledRejection', (e) => {
  // A node-dsm error says what to do; anything else is a bug worth its stack.
  console.error(`[${a.role}]`, e?.code?.startsWith('ERR_DSM_') ? `${e.code}: ${e.message}` : e);
  process.exit(1);
});
main();
