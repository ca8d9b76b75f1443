// The sanitizer build and the native tests: configures and builds with cmake-js (ASan +
// UBSan) into build-asan/, then runs the native test executable. Exit code: the tests'.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const run = (cmd, args, env = {}) => {
  console.log(`$ ${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', env: { ...process.env, ...env } });
  if (r.status !== 0) process.exit(r.status ?? 1);
};
const cmakeJs = path.join(root, 'node_modules/cmake-js/bin/cmake-js');
run(process.execPath, [cmakeJs, 'compile', '--out', 'build-asan', '--CDDSM_SANITIZE=ON', ]);
// Our SIGSEGV handler must run (ASan's would report the page faults the DSM is built on);
// ASan chains to it when allow_user_segv_handler is set and it does not handle SEGV itself.
run(path.join(root, 'build-asan/native_tests'), [], {
  ASAN_OPTIONS: 'allow_user_segv_handler=1:handle_segv=0:handle_sigbus=0:detect_leaks=1',
  UBSAN_OPTIONS: 'print_stacktrace=1:halt_on_error=1',
});
