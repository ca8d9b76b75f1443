// Waiting on a forked node process's next message, for the benchmark suites: a child that
// exits first (a crash, an uncaught error) fails the wait with its exit code and signal,
// instead of leaving the suite, and `npm run bench` with it, waiting for ever.

/** The child's next message; rejects if the child exits first. */
export function nextMessage(child, what = 'a message') {
  return new Promise((resolve, reject) => {
    const onExit = (code, signal) => reject(new Error(`a node process exited (${signal ?? `code ${code}`}) before sending ${what}`));
    child.once('exit', onExit);
    child.once('message', (m) => {
      child.off('exit', onExit);
      resolve(m);
    });
  });
}

/** Sends `msg` to the child and resolves with its reply (see nextMessage). */
export function ask(child, msg) {
  const reply = nextMessage(child, `its reply to ${msg?.cmd ?? 'a message'}`);
  child.send(msg);
  return reply;
}
