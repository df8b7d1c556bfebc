#!/usr/bin/env node
// W1-W4 for graphile-worker (run with the Node 22 from benchmarks/.envs/node).
//
//   node graphile_bench.js {W1,W2,W3,W4,version} JOBS DSN
//        [--concurrency 24] [--pool 25] [--local-queue 500] [--complete-batch-delay 0]
//
// Settings (the "performance" page of graphile-worker's docs): concurrentJobs 24,
// maxPoolSize 25, localQueue.size 500, completeJobBatchDelay 0, failJobBatchDelay 0.
// W1 through WorkerUtils.addJobs (one add_jobs() call for all jobs), W2 through
// WorkerUtils.addJob one job per call (autocommit). The worker is a child process
// running run() with a task list; info logs are silenced (pgqueue's worker runs at
// warning too). graphile-worker deletes finished jobs, so W3 runs from the handler's
// first start (wall clock in the worker) until the parent sees the jobs table empty
// (polled every 5 ms): every completion committed.
"use strict";

const fs = require("fs");
const path = require("path");
const { spawn } = require("child_process");

function requirePeer(name) {
  try {
    return require(name);
  } catch (e) {
    return require(path.join(__dirname, "..", ".envs", "node", "node_modules", name));
  }
}

const gw = requirePeer("graphile-worker");
const { Pool } = requirePeer("pg");

function parseArgs(argv) {
  const pos = [];
  const opt = {
    concurrency: 24,
    pool: 25,
    "local-queue": 500,
    "complete-batch-delay": 0,
    stamps: "",
  };
  for (let k = 0; k < argv.length; k++) {
    const a = argv[k];
    if (a.startsWith("--")) {
      const key = a.slice(2);
      const val = argv[++k];
      opt[key] = key === "stamps" ? val : Number(val);
    } else pos.push(a);
  }
  return { workload: pos[0], jobs: Number(pos[1] || 0), dsn: pos[2], opt };
}

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

class BenchError extends Error {}

const quietLogger = new gw.Logger((scope) => (level, message) => {
  if (level === "error" || level === "warning") console.error(`[graphile ${level}] ${message}`);
});

function pct(sorted, p) {
  const k = ((sorted.length - 1) * p) / 100;
  const lo = Math.floor(k);
  const hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (k - lo);
}

// Wall-clock seconds with sub-millisecond resolution (Date.now() has whole ms only).
const now = () => (performance.timeOrigin + performance.now()) / 1000;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitUntil(check, timeoutMs, what, everyMs = 20) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new BenchError(`${what} not reached within ${timeoutMs / 1000}s`);
    await sleep(everyMs);
  }
}

function readStamps(file) {
  const out = new Map();
  if (!fs.existsSync(file)) return out;
  for (const line of fs.readFileSync(file, "utf8").split("\n")) {
    const parts = line.trim().split(" ");
    if (parts.length === 2) out.set(Number(parts[0]), Number(parts[1]));
  }
  return out;
}

function record(file, i) {
  const t = now();
  fs.appendFileSync(file, `${i} ${t}\n`);
}

async function prepare(dsn) {
  await gw.runMigrations({ connectionString: dsn, logger: quietLogger });
  const pool = new Pool({ connectionString: dsn });
  try {
    await pool.query(
      "TRUNCATE graphile_worker._private_jobs, graphile_worker._private_job_queues CASCADE"
    );
    await pool.query("VACUUM ANALYZE graphile_worker._private_jobs");
  } finally {
    await pool.end();
  }
}

async function utils(dsn) {
  return gw.makeWorkerUtils({ connectionString: dsn, logger: quietLogger });
}

async function w1(dsn, jobs) {
  const u = await utils(dsn);
  try {
    const specs = [];
    for (let n = 0; n < jobs; n++) specs.push({ identifier: "noop", payload: { i: n } });
    const t0 = performance.now();
    await u.addJobs(specs);
    return { jobs_per_s: jobs / ((performance.now() - t0) / 1000) };
  } finally {
    await u.release();
  }
}

async function w2(dsn, jobs) {
  const u = await utils(dsn);
  try {
    await u.addJob("noop", { i: -1 });
    const t0 = performance.now();
    for (let n = 0; n < jobs; n++) await u.addJob("noop", { i: n });
    return { jobs_per_s: jobs / ((performance.now() - t0) / 1000) };
  } finally {
    await u.release();
  }
}

function startWorker(dsn, opt, stamps) {
  const args = [
    __filename, "worker", "0", dsn,
    "--concurrency", String(opt.concurrency),
    "--pool", String(opt.pool),
    "--local-queue", String(opt["local-queue"]),
    "--complete-batch-delay", String(opt["complete-batch-delay"]),
    "--stamps", stamps,
  ];
  const child = spawn(process.execPath, args, { stdio: ["ignore", "inherit", "inherit"] });
  child.exitCode_ = null;
  child.on("exit", (code) => (child.exitCode_ = code === null ? -1 : code));
  return child;
}

async function stopWorker(child) {
  if (child.exitCode_ !== null) return;
  const done = new Promise((r) => child.on("exit", r));
  child.kill("SIGTERM");
  const t = setTimeout(() => child.kill("SIGKILL"), 15000);
  await done;
  clearTimeout(t);
}

function checkWorker(child) {
  if (child.exitCode_ !== null) throw new BenchError(`the worker process exited with ${child.exitCode_}`);
}

async function w3(dsn, jobs, opt) {
  const u = await utils(dsn);
  const specs = [];
  for (let n = 0; n < jobs; n++) specs.push({ identifier: "noop", payload: { i: n } });
  await u.addJobs(specs);
  await u.release();
  const stamps = path.join(process.env.BENCH_TMP || "/tmp", `graphile-${process.pid}.stamps`);
  fs.writeFileSync(stamps, "");
  const pool = new Pool({ connectionString: dsn, max: 1 });
  const child = startWorker(dsn, opt, stamps);
  let end = 0;
  // A drain that stops moving fails after 90 s: the jobs left are counted once a second.
  let left = -1;
  let moved = Date.now();
  let counted = 0;
  try {
    await waitUntil(
      async () => {
        checkWorker(child);
        const r = await pool.query("SELECT EXISTS (SELECT 1 FROM graphile_worker._private_jobs) AS busy");
        if (!r.rows[0].busy) {
          end = now();
          return true;
        }
        if (Date.now() - counted > 1000) {
          counted = Date.now();
          const c = await pool.query("SELECT count(*)::int AS n FROM graphile_worker._private_jobs");
          if (c.rows[0].n !== left) {
            left = c.rows[0].n;
            moved = Date.now();
          } else if (Date.now() - moved > 90000) {
            throw new BenchError(`drain: no progress for 90s (at ${left} jobs left)`);
          }
        }
        return false;
      },
      process.env.BENCH_DRAIN_TIMEOUT
        ? Number(process.env.BENCH_DRAIN_TIMEOUT) * 1000
        : Math.max(120000, jobs * 40),
      "drain",
      5
    );
  } finally {
    await stopWorker(child);
    await pool.end();
  }
  const st = readStamps(stamps);
  fs.unlinkSync(stamps);
  const first = st.get(-2); // the worker writes its first handler start as i = -2
  const count = st.get(-3);
  if (!first) throw new BenchError("the worker did not report its first job");
  if (count !== undefined && count !== jobs) throw new BenchError(`${count} of ${jobs} jobs ran`);
  return { jobs_per_s: jobs / (end - first) };
}

async function w4(dsn, jobs, opt, gapMs = 20) {
  const stamps = path.join(process.env.BENCH_TMP || "/tmp", `graphile-${process.pid}.stamps`);
  fs.writeFileSync(stamps, "");
  const u = await utils(dsn);
  const child = startWorker(dsn, opt, stamps);
  const sent = new Map();
  try {
    await u.addJob("stamp", { i: -1 });
    await waitUntil(() => (checkWorker(child), readStamps(stamps).has(-1)), 60000, "worker start");
    await sleep(200);
    for (let n = 0; n < jobs; n++) {
      await u.addJob("stamp", { i: n });
      sent.set(n, now());
      await sleep(gapMs);
    }
    await waitUntil(() => readStamps(stamps).size >= jobs + 1, 60000, "all latency jobs run");
  } finally {
    await stopWorker(child);
    await u.release();
  }
  const st = readStamps(stamps);
  fs.unlinkSync(stamps);
  const lat = [];
  for (const [i, t] of sent) if (st.has(i)) lat.push((st.get(i) - t) * 1000);
  if (lat.length !== jobs) throw new BenchError(`${lat.length} of ${jobs} latency jobs ran`);
  lat.sort((a, b) => a - b);
  return { p50_ms: pct(lat, 50), p99_ms: pct(lat, 99) };
}

async function worker(dsn, opt) {
  let first = 0;
  let count = 0;
  const stamps = opt.stamps;
  const runner = await gw.run({
    logger: quietLogger,
    preset: {
      worker: {
        connectionString: dsn,
        concurrentJobs: opt.concurrency,
        maxPoolSize: opt.pool,
        localQueue: opt["local-queue"] > 0 ? { size: opt["local-queue"] } : undefined,
        completeJobBatchDelay: opt["complete-batch-delay"],
        failJobBatchDelay: opt["complete-batch-delay"],
      },
    },
    taskList: {
      noop: async () => {
        if (!first) {
          first = now();
          fs.appendFileSync(stamps, `-2 ${first}\n`);
        }
        count++;
      },
      stamp: async (payload) => {
        record(stamps, payload.i);
      },
    },
  });
  await runner.promise;
  if (count) fs.appendFileSync(stamps, `-3 ${count}\n`);
}

async function main() {
  const { workload, jobs, dsn, opt } = parseArgs(process.argv.slice(2));
  if (workload === "version") {
    const pkg = requirePeer("graphile-worker/package.json");
    emit({ version: pkg.version, node: process.version });
    return;
  }
  if (workload === "worker") return worker(dsn, opt);
  await prepare(dsn);
  let out;
  if (workload === "W1") out = await w1(dsn, jobs);
  else if (workload === "W2") out = await w2(dsn, jobs);
  else if (workload === "W3") out = await w3(dsn, jobs, opt);
  else if (workload === "W4") out = await w4(dsn, jobs, opt);
  else throw new Error(`unknown workload ${workload}`);
  emit(out);
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e instanceof BenchError ? `BenchError: ${e.message}` : e);
    process.exit(2);
  }
);
