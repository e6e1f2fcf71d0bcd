// Global teardown: the last line of defence against leaked server processes.
// lib/procs.js writes one pid file per started process into $E2E_PID_DIR and
// removes it when the process exits. Normally the directory is empty here;
// files left behind belong to processes of a worker that died without
// cleaning up. Each is killed (SIGKILL) if its command line still names the
// recorded executable (so a reused pid is never hit), then the directory goes.
// Files netns-<name> record network namespaces of lib/netns.js; a namespace
// left behind is removed with its veth pair and whatever still runs in it.
const fs = require('node:fs');
const path = require('node:path');
const { cleanupRecord } = require('./netns');

module.exports = async function globalTeardown() {
  const dir = process.env.E2E_PID_DIR;
  if (!dir || !fs.existsSync(dir)) return;
  for (const file of fs.readdirSync(dir)) {
    let rec;
    try {
      rec = JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8'));
    } catch {
      continue;
    }
    if (cleanupRecord(rec)) continue;
    let argv0 = '';
    try {
      argv0 = fs.readFileSync(`/proc/${rec.pid}/cmdline`, 'utf8').split('\0')[0];
    } catch {
      continue; // gone
    }
    if (argv0 !== rec.exe) continue;
    try {
      process.kill(rec.pid, 'SIGKILL');
      console.error(`e2e: killed leftover ${rec.label || rec.exe} (pid ${rec.pid})`);
    } catch {
      // already gone
    }
  }
  fs.rmSync(dir, { recursive: true, force: true });
};
