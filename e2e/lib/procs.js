// Child-process bookkeeping for the browser tests: every server process a
// test starts (confab, consul) is tracked here so that none outlives the run.
//
//   track(proc, label)  remember a spawned process until it exits
//   terminate(proc, …)  SIGTERM, then SIGKILL after a grace period; resolves
//                       with the exit status once the process is gone
//
// Three layers make sure tracked processes die:
//   1. the fixtures/hooks stop what they started (terminate);
//   2. this module kills (SIGKILL) every tracked process still alive when the
//      worker process exits or receives SIGINT/SIGTERM/SIGHUP;
//   3. if the worker dies without running exit handlers (e.g. SIGKILL), the
//      pid files in $E2E_PID_DIR (set by playwright.config.js) let the global
//      teardown (lib/global-teardown.js) kill the leftovers.
const fs = require('node:fs');
const path = require('node:path');

/** live maps pid -> { proc, label, pidFile } for processes not yet exited. */
const live = new Map();

function pidDir() {
  const dir = process.env.E2E_PID_DIR;
  if (!dir) return null;
  try {
    fs.mkdirSync(dir, { recursive: true });
    return dir;
  } catch {
    return null;
  }
}

/**
 * track remembers proc (a ChildProcess) until it exits. The process is killed
 * with SIGKILL if it is still running when this Node process exits.
 */
function track(proc, label) {
  if (!proc.pid) return;
  const pid = proc.pid;
  let pidFile = null;
  const dir = pidDir();
  if (dir) {
    pidFile = path.join(dir, String(pid));
    // The executable lets the global teardown verify the pid was not reused.
    try {
      fs.writeFileSync(pidFile, JSON.stringify({ pid, exe: proc.spawnfile, label }));
    } catch {
      pidFile = null;
    }
  }
  live.set(pid, { proc, label, pidFile });
  proc.once('exit', () => {
    live.delete(pid);
    if (pidFile) fs.rmSync(pidFile, { force: true });
  });
}

/** killAllSync sends SIGKILL to every tracked process still running. */
function killAllSync() {
  for (const [pid, { pidFile }] of live) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
    if (pidFile) {
      try {
        fs.rmSync(pidFile, { force: true });
      } catch {
        // ignore
      }
    }
  }
  live.clear();
  // Leave no empty pid directory behind (the global teardown may not run);
  // rmdir fails harmlessly while another worker still has files in it.
  const dir = process.env.E2E_PID_DIR;
  if (dir) {
    try {
      fs.rmdirSync(dir);
    } catch {
      // not empty, or already gone
    }
  }
}

process.on('exit', killAllSync);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  const onSignal = () => {
    killAllSync();
    process.removeListener(sig, onSignal);
    // Keep the default behaviour (die) unless someone else handles the signal.
    if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
  };
  process.on(sig, onSignal);
}

/**
 * exitStatus returns a promise of { code, signal } that resolves when proc
 * exits (at once if it already has).
 */
function exitStatus(proc) {
  if (proc.exitCode !== null || proc.signalCode !== null) {
    return Promise.resolve({ code: proc.exitCode, signal: proc.signalCode });
  }
  return new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
}

/**
 * terminate sends SIGTERM (or `signal`) to proc, waits up to graceMs for it to
 * exit, then sends SIGKILL and waits for it. Resolves with
 * { code, signal, killed } where killed tells that SIGKILL was needed.
 */
async function terminate(proc, { graceMs = 5_000, signal = 'SIGTERM' } = {}) {
  const exited = exitStatus(proc);
  if (proc.exitCode !== null || proc.signalCode !== null) {
    return { ...(await exited), killed: false };
  }
  proc.kill(signal);
  let timer;
  const status = await Promise.race([
    exited,
    new Promise((resolve) => { timer = setTimeout(() => resolve(null), graceMs); }),
  ]);
  clearTimeout(timer);
  if (status) return { ...status, killed: false };
  proc.kill('SIGKILL');
  return { ...(await exited), killed: true };
}

module.exports = { track, terminate, exitStatus, killAllSync };
