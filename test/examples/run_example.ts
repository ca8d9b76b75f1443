// Runs an example program as a user does (`node examples/<name>/run.mjs ...`) and collects
// its exit code and everything it printed. A hang is a failure, reported with that output:
// the process is killed after `timeoutMs` (an example's child nodes exit with it).
import { spawn } from 'node:child_process';
import path from 'node:path';

export function runExample(name: string, args: string[], timeoutMs = 120_000): Promise<{ code: number | null; out: string }> {
  return runScript(path.join(__dirname, '../../examples', name, 'run.mjs'), args, timeoutMs);
}

/** The same for any script. */
export function runScript(script: string, args: string[], timeoutMs = 120_000): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}
