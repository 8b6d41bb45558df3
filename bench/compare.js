'use strict';
// The driver of bench/compare.sh (which installs, builds and starts redis-server and the
// nginx sink, then runs this). Runs cascaded and the BullMQ peer over the same jobs in three
// modes, measures each, prints the table, writes the JSON. See docs/performance.md.
//
//   node bench/compare.js --redis-port P --sink URL --bin DIR --out FILE [--jobs N] [--quick]
//
// Modes (each engine on a freshly flushed Redis with freshly created keys, Cascade first):
//   a  primary delivers (1 POST per job); N jobs queued before the worker starts
//   b  primary fails permanently (Telegram 400), tier 1 (WABA) delivers: 2 POSTs per job
//   c  2,000 jobs/s offered for 15 s (3 s with --quick) by one paced producer while a
//      consumer follows the results; latency = result seen by the consumer - just before
//      the enqueue command was issued (same process, performance.now(), µs)
const { createRequire } = require('node:module');
const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const peer = createRequire(path.join(__dirname, 'peers/bullmq/package.json'));
const IORedis = peer('ioredis');
const { Queue, QueueEvents } = peer('bullmq');

// ---- options -------------------------------------------------------------------------------
const argv = process.argv.slice(2);
const opt = (name, def) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : def;
};
const N = Number(opt('--jobs', 100000));
const quick = argv.includes('--quick');
const redisPort = Number(opt('--redis-port'));
const sink = opt('--sink');
const bin = opt('--bin');
const outFile = opt('--out');
const RATE = Number(opt('--rate', 2000));
const SECONDS = Number(opt('--seconds', quick ? 3 : 15));
// Tuned like the BullMQ side (20,000-job drains, 128/256/1024): 256 used the least CPU per job.
const CASCADE_CONCURRENCY = Number(opt('--cascade-concurrency', 256));
const BULLMQ_CONCURRENCY = Number(opt('--bullmq-concurrency', 128));
const AUTH_CACHE = opt('--bullmq-auth-cache', '1');
const MODES = opt('--modes', 'a,b,c').split(','); // c needs a (its producer figure)
const PREFILL_CHUNK = 1000;
const redisUrl = `redis://127.0.0.1:${redisPort}/0`;
const PREFIX = 'cascade';
const QUEUE = 'sends';
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim());
const phaseLimitS = 120 + N / 500; // a drain must end within this, else the run fails

const admin = new IORedis(redisUrl, { maxRetriesPerRequest: 1 });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const nowUs = () => (performance.timeOrigin + performance.now()) * 1000;
const log = (...a) => process.stderr.write(`[compare] ${a.join(' ')}\n`);
const children = new Set();
function killAll() {
  for (const c of children) try { c.kill('SIGKILL'); } catch { /* gone */ }
}
process.on('exit', killAll);
for (const s of ['SIGINT', 'SIGTERM']) process.on(s, () => { killAll(); process.exit(130); });

// ---- measurements --------------------------------------------------------------------------
// INFO cpu + commandstats. The INFO that takes a snapshot is not in its own figures, so a
// delta between two snapshots holds exactly one INFO of ours (the first one).
async function snapshot() {
  const text = await admin.info('cpu', 'commandstats');
  let cpu = 0;
  const calls = {};
  for (const line of text.split('\r\n')) {
    let m = /^used_cpu_(?:user|sys):([0-9.]+)$/.exec(line);
    if (m) cpu += Number(m[1]);
    m = /^cmdstat_([^:]+):calls=(\d+)/.exec(line);
    if (m) calls[m[1]] = Number(m[2]);
  }
  return { cpu, calls, t: nowUs() };
}
function delta(a, b) {
  const calls = {};
  let total = 0;
  for (const [k, v] of Object.entries(b.calls)) {
    const d = v - (a.calls[k] || 0);
    if (d) { calls[k] = d; total += d; }
  }
  return { cpu_s: b.cpu - a.cpu, calls, total };
}
function procCpuS(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / CLK_TCK; // utime, stime
}
function hwmKiB(pid) {
  const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : null;
}

// ---- keys, made with cascadectl like an operator would ---------------------------------------
function ctl(...args) {
  return execFileSync(path.join(bin, 'cascadectl/cascadectl'), ['--redis', redisUrl, '--prefix', PREFIX, ...args],
    { encoding: 'utf8' }).trim();
}
async function freshKeys() {
  await admin.flushall();
  const account = ctl('account', 'create', '--name', 'bench');
  const key = (...a) => JSON.parse(ctl('--json', ...a)).key;
  const k = {
    api: key('apikey', 'create', '--account', account, '--name', 'bench', '--scopes', 'send'),
    // Pacing off (--rate 0): the figure is the engine's, not Telegram's 30/s per bot.
    tg: key('channel', 'create', '--account', account, '--type', 'telegram', '--name', 'bot',
      '--bot-token', '1000001:bench-ok', '--api-base', sink, '--rate', '0'),
    // The sink answers 400 "chat not found" to every bot whose token holds "fail".
    tgFail: key('channel', 'create', '--account', account, '--type', 'telegram', '--name', 'failing bot',
      '--bot-token', '1000002:bench-fail', '--api-base', sink, '--rate', '0'),
    waba: key('channel', 'create', '--account', account, '--type', 'waba', '--name', 'number',
      '--phone-number-id', '1234567890', '--access-token', 'EAAGbench', '--api-base', sink, '--rate', '0'),
  };
  return k;
}
function bodyFor(mode, k) {
  const b = mode === 'b'
    ? { keys: { telegram: { token: k.tgFail }, waba: { token: k.waba, fallback: true, fallback_sequence: 1 } },
        to: { telegram: '123456789', phone: '+33612345678' }, message: { text: 'bench message' } }
    : { keys: { telegram: { token: k.tg } }, to: { telegram: '123456789' }, message: { text: 'bench message' } };
  return JSON.stringify(b);
}

// ---- the two engines -------------------------------------------------------------------------
// Each engine: prefill(n, fields) queues n jobs with no worker running; startWorker(expect)
// spawns the worker; producer() gives add(fields) -> id for mode c; consumer(onResult).
const engines = {
  cascade: {
    async prefill(n, f) {
      for (let sent = 0; sent < n; sent += PREFILL_CHUNK) {
        const p = admin.pipeline();
        for (let i = 0; i < Math.min(PREFILL_CHUNK, n - sent); ++i)
          p.xadd(`${PREFIX}:jobs`, '*', 'authorization', f.authorization, 'body', f.body);
        for (const [err] of await p.exec()) if (err) throw err;
      }
      return { client_commands: n };
    },
    async startWorker() {
      const child = spawn(path.join(bin, 'cascaded/cascaded'),
        ['--redis', redisUrl, '--prefix', PREFIX, '--concurrency', String(CASCADE_CONCURRENCY), '--log-level', 'warn'],
        { stdio: ['ignore', 'ignore', 'inherit'] });
      children.add(child);
      child.on('exit', () => children.delete(child));
      return {
        child,
        // Drained when every result is in <prefix>:results (polled with XLEN; the polls are
        // counted and left out of the worker's commands).
        async waitDone(n, deadline, polls) {
          for (;;) {
            polls.xlen += 1;
            if ((await admin.xlen(`${PREFIX}:results`)) >= n) return nowUs();
            if (Date.now() > deadline) throw new Error('cascade: drain timed out');
            await sleep(5);
          }
        },
        // First and last result: their <prefix>:results entry ids (ms, Redis clock).
        async span() {
          const [first] = await admin.xrange(`${PREFIX}:results`, '-', '+', 'COUNT', 1);
          const [last] = await admin.xrevrange(`${PREFIX}:results`, '+', '-', 'COUNT', 1);
          return { first_us: Number(first[0].split('-')[0]) * 1000, last_us: Number(last[0].split('-')[0]) * 1000 };
        },
      };
    },
    async producer() {
      const c = new IORedis(redisUrl);
      return {
        add: async (f) => c.xadd(`${PREFIX}:jobs`, '*', 'authorization', f.authorization, 'body', f.body),
        close: () => c.disconnect(),
      };
    },
    async consumer(onResult) {
      const c = new IORedis(redisUrl);
      let cursor = '$';
      let stop = false;
      const loop = (async () => {
        while (!stop) {
          const r = await c.xread('COUNT', 10000, 'BLOCK', 200, 'STREAMS', `${PREFIX}:results`, cursor);
          const t = nowUs();
          if (!r) continue;
          for (const [id, fields] of r[0][1]) {
            cursor = id;
            const i = fields.indexOf('id');
            onResult(fields[i + 1], t);
          }
        }
      })();
      await sleep(50); // the first XREAD is in place before anything is produced
      return { close: async () => { stop = true; await loop; c.disconnect(); } };
    },
  },
  bullmq: {
    jobOpts: { attempts: 6, backoff: { type: 'exponential', delay: 5000 } },
    async prefill(n, f) {
      const q = new Queue(QUEUE, { connection: { host: '127.0.0.1', port: redisPort } });
      for (let sent = 0; sent < n; sent += PREFILL_CHUNK) {
        const jobs = [];
        for (let i = 0; i < Math.min(PREFILL_CHUNK, n - sent); ++i) jobs.push({ name: 'send', data: f, opts: this.jobOpts });
        await q.addBulk(jobs);
      }
      await q.close();
      return { client_commands: null };
    },
    async startWorker(expect) {
      const child = spawn(process.execPath, [path.join(__dirname, 'peers/bullmq/worker.js')], {
        stdio: ['ignore', 'pipe', 'inherit'],
        env: Object.assign({}, process.env, {
          REDIS_URL: redisUrl, CASCADE_PREFIX: PREFIX, QUEUE, CONCURRENCY: String(BULLMQ_CONCURRENCY),
          AUTH_CACHE, EXPECT: String(expect || 0),
        }),
      });
      children.add(child);
      child.on('exit', () => children.delete(child));
      let out = '';
      let doneUs = null;
      let firstUs = null;
      child.stdout.on('data', (d) => {
        out += d;
        let m = /first (\d+)/.exec(out);
        if (m) firstUs = Number(m[1]);
        m = /done (\d+)/.exec(out);
        if (m) doneUs = Number(m[1]);
      });
      return {
        child,
        async waitDone(n, deadline) {
          while (doneUs === null) {
            if (Date.now() > deadline) throw new Error('bullmq: drain timed out');
            if (child.exitCode !== null) throw new Error('bullmq worker exited');
            await sleep(5);
          }
          return nowUs();
        },
        async span() { return { first_us: firstUs, last_us: doneUs }; },
      };
    },
    async producer() {
      const q = new Queue(QUEUE, { connection: { host: '127.0.0.1', port: redisPort } });
      await q.waitUntilReady();
      const opts = this.jobOpts;
      return { add: async (f) => (await q.add('send', f, opts)).id, close: () => q.close() };
    },
    async consumer(onResult) {
      const qe = new QueueEvents(QUEUE, { connection: { host: '127.0.0.1', port: redisPort } });
      qe.on('completed', ({ jobId }) => onResult(jobId, nowUs()));
      qe.on('failed', ({ jobId }) => onResult(jobId, nowUs()));
      await qe.waitUntilReady();
      await sleep(50);
      return { close: () => qe.close() };
    },
  },
};

async function stopWorker(w) {
  if (w.child.exitCode !== null) return;
  const gone = new Promise((r) => w.child.once('exit', r));
  w.child.kill('SIGTERM');
  await Promise.race([gone, sleep(10000)]);
  if (w.child.exitCode === null) w.child.kill('SIGKILL');
}

// What a worker costs to start (process start, connecting, module loading for Node),
// measured on an empty queue after 1.5 s idle: taken out of the drain modes' CPU per job,
// which is about jobs, not about starting a process.
async function startupCpu(engineName) {
  await admin.flushall();
  const w = await engines[engineName].startWorker(0);
  await sleep(1500);
  const cpu = procCpuS(w.child.pid);
  await stopWorker(w);
  return cpu;
}

// Modes a and b: queue n jobs, start the worker, wait for the last result.
async function drain(engineName, mode, startup) {
  const e = engines[engineName];
  const k = await freshKeys();
  const fields = { authorization: `Bearer ${k.api}`, body: bodyFor(mode, k) };
  const s0 = await snapshot();
  const pre = await e.prefill(N, fields);
  const s1 = await snapshot();
  const producerPerJob = (delta(s0, s1).total - 1) / N; // less the INFO of s0
  const polls = { xlen: 0 };
  const w = await e.startWorker(N);
  const spawnUs = nowUs();
  const endUs = await w.waitDone(N, Date.now() + phaseLimitS * 1000, polls);
  const s2 = await snapshot();
  const cpu = procCpuS(w.child.pid);
  const hwm = hwmKiB(w.child.pid);
  const span = await w.span();
  await stopWorker(w);
  const d = delta(s1, s2);
  const excluded = 1 + polls.xlen; // our INFO (s1) and XLEN polls
  const drainS = (span.last_us - span.first_us) / 1e6;
  return {
    jobs: N,
    jobs_per_s: (N - 1) / drainS,
    drain_s: drainS,
    spawn_to_last_s: (endUs - spawnUs) / 1e6,
    worker_cpu_us_per_job: (Math.max(0, cpu - startup) * 1e6) / N,
    worker_cpu_s_total: cpu,
    worker_startup_cpu_s: startup,
    redis_cpu_us_per_job: (d.cpu_s * 1e6) / N,
    redis_cmds_per_job: (d.total - excluded) / N,
    worker_peak_rss_mib: hwm / 1024,
    redis_calls: d.calls,
    excluded_commands: { info: 1, xlen: polls.xlen, note: 'jobs were queued before the first snapshot: no enqueue command is in the delta' },
    producer_cmds_per_job: producerPerJob,
    producer_client_commands: pre.client_commands,
  };
}

// Mode c: the worker runs idle; one producer offers RATE jobs/s for SECONDS; a consumer
// follows the results. producerPerJob (from mode a's prefill, same engine) sizes what the
// producer's enqueues cost in Redis commands, so they can be left out.
async function paced(engineName, producerPerJob) {
  const e = engines[engineName];
  const k = await freshKeys();
  const fields = { authorization: `Bearer ${k.api}`, body: bodyFor('c', k) };
  const w = await e.startWorker(0);
  await sleep(1000); // connected and idle
  const producer = await e.producer();
  const enq = new Map(); // id -> µs
  const early = new Map(); // results seen before the enqueue reply
  const lat = [];
  const consumer = await e.consumer((id, t) => {
    const t0 = enq.get(id);
    if (t0 === undefined) early.set(id, t);
    else { lat.push(t - t0); enq.delete(id); }
  });
  const total = RATE * SECONDS;
  const s0 = await snapshot();
  const cpu0 = procCpuS(w.child.pid);
  const start = performance.now();
  let sent = 0;
  let adds = 0;
  const pending = [];
  while (sent < total) {
    const due = Math.min(total, Math.floor(((performance.now() - start) / 1000) * RATE) + 1);
    for (; sent < due; ++sent) {
      const t = nowUs();
      adds += 1;
      pending.push(producer.add(fields).then((id) => {
        if (early.has(id)) { lat.push(early.get(id) - t); early.delete(id); } else enq.set(id, t);
      }));
    }
    await sleep(1);
  }
  const offeredS = (performance.now() - start) / 1000;
  await Promise.all(pending);
  const deadline = Date.now() + (60 + SECONDS) * 1000;
  while (lat.length < total && Date.now() < deadline) await sleep(5);
  const s1 = await snapshot();
  const cpu = procCpuS(w.child.pid) - cpu0;
  const hwm = hwmKiB(w.child.pid);
  await consumer.close();
  await producer.close();
  await stopWorker(w);
  if (lat.length < total) throw new Error(`${engineName}: only ${lat.length} of ${total} results in mode c`);
  lat.sort((a, b) => a - b);
  const pct = (p) => lat[Math.min(lat.length - 1, Math.ceil((p / 100) * lat.length) - 1)] / 1000;
  const d = delta(s0, s1);
  const producerCmds = Math.round(producerPerJob * adds);
  const consumerReads = d.calls.xread || 0;
  const excluded = 1 + producerCmds + consumerReads;
  return {
    jobs: total,
    offered_per_s: total / offeredS,
    latency_ms: { p50: pct(50), p99: pct(99), max: lat[lat.length - 1] / 1000, mean: lat.reduce((a, b) => a + b, 0) / lat.length / 1000 },
    worker_cpu_us_per_job: (cpu * 1e6) / total,
    redis_cpu_us_per_job: (d.cpu_s * 1e6) / total,
    redis_cmds_per_job: (d.total - excluded) / total,
    worker_peak_rss_mib: hwm / 1024,
    redis_calls: d.calls,
    excluded_commands: {
      info: 1, producer: producerCmds, result_reader_xread: consumerReads,
      note: `producer = ${adds} enqueues x ${producerPerJob.toFixed(3)} commands each (measured during mode a's prefill, no worker running); ` +
        'result reader = every XREAD (neither worker uses XREAD). Redis CPU is not split: it includes enqueue and result reading.',
    },
  };
}

// ---- run, print, write -------------------------------------------------------------------------
function machine() {
  const cpuModel = (/model name\s*:\s*(.*)/.exec(fs.readFileSync('/proc/cpuinfo', 'utf8')) || [])[1] || 'unknown';
  return {
    nproc: Number(execFileSync('nproc').toString().trim()), cpu: cpuModel,
    mem_gib: Math.round((os.totalmem() / 2 ** 30) * 10) / 10, kernel: os.release(),
    redis: execFileSync('redis-server', ['--version']).toString().trim(), node: process.version,
    bullmq: peer('bullmq/package.json').version, nginx_workers: 1,
  };
}

const METRICS = {
  ab: [['jobs_per_s', 'jobs/s', 0], ['worker_cpu_us_per_job', 'worker CPU µs/job', 1],
    ['redis_cpu_us_per_job', 'Redis CPU µs/job', 1], ['redis_cmds_per_job', 'Redis cmds/job', 2],
    ['worker_peak_rss_mib', 'worker peak RSS MiB', 1]],
  c: [['latency_ms.p50', 'latency p50 ms', 2], ['latency_ms.p99', 'latency p99 ms', 2], ['latency_ms.max', 'latency max ms', 2],
    ['worker_cpu_us_per_job', 'worker CPU µs/job', 1], ['redis_cpu_us_per_job', 'Redis CPU µs/job (incl. enqueue+read)', 1],
    ['redis_cmds_per_job', 'Redis cmds/job', 2], ['worker_peak_rss_mib', 'worker peak RSS MiB', 1]],
};
const get = (o, p) => p.split('.').reduce((x, k) => x[k], o);

async function main() {
  const started = new Date();
  const result = {
    date: started.toISOString(), machine: machine(), jobs: N, quick,
    settings: {
      cascade: { concurrency: CASCADE_CONCURRENCY, producer: `pipelined XADD, ${PREFILL_CHUNK} per round trip` },
      bullmq: { concurrency: BULLMQ_CONCURRENCY, auth_cache: AUTH_CACHE === '1', removeOnComplete: { count: 0 }, http: 'undici Agent, 64 connections',
        producer: `Queue.addBulk, ${PREFILL_CHUNK} per call`, job_opts: engines.bullmq.jobOpts },
      mode_c: { rate_per_s: RATE, seconds: SECONDS, producer: 'one paced producer per engine (XADD / Queue.add), one enqueue per job' },
      sink: 'nginx, 1 worker process, keep-alive',
    },
    modes: {},
  };
  const modeNames = { a: 'primary delivers (1 POST/job)', b: 'primary fails, tier 1 delivers (2 POSTs/job)', c: `${RATE} jobs/s offered for ${SECONDS} s` };
  const producerPerJob = {};
  const startup = {};
  for (const engine of ['cascade', 'bullmq']) startup[engine] = await startupCpu(engine);
  result.worker_startup_cpu_s = startup;
  result.loadavg_start = fs.readFileSync('/proc/loadavg', 'utf8').trim();
  for (const mode of MODES) {
    result.modes[mode] = { what: modeNames[mode] };
    for (const engine of ['cascade', 'bullmq']) {
      log(`mode ${mode}: ${engine}...`);
      const r = mode === 'c' ? await paced(engine, producerPerJob[engine]) : await drain(engine, mode, startup[engine]);
      if (mode === 'a') producerPerJob[engine] = r.producer_cmds_per_job;
      result.modes[mode][engine] = r;
      log(`mode ${mode}: ${engine} done`);
    }
    const ratio = {};
    for (const [m] of METRICS[mode === 'c' ? 'c' : 'ab'])
      ratio[m] = get(result.modes[mode].cascade, m) / get(result.modes[mode].bullmq, m);
    result.modes[mode].ratio_cascade_over_bullmq = ratio;
  }

  result.loadavg_end = fs.readFileSync('/proc/loadavg', 'utf8').trim();
  // The table.
  const lines = [];
  const row = (cells, w) => cells.map((c, i) => (i === 0 ? String(c).padEnd(w[0]) : String(c).padStart(w[i]))).join('  ');
  const widths = [42, 12, 12, 16];
  lines.push(`Cascade vs BullMQ ${result.machine.bullmq} — ${N} jobs, ${result.date}`);
  lines.push(`machine: ${result.machine.nproc} CPUs (${result.machine.cpu}), ${result.machine.mem_gib} GiB; ${result.machine.redis.split(' ').slice(0, 3).join(' ')}; node ${result.machine.node}`);
  lines.push(`load average at start: ${result.loadavg_start.split(' ').slice(0, 3).join(' ')}, at end: ${result.loadavg_end.split(' ').slice(0, 3).join(' ')} (shared machine: only same-run ratios mean anything)`);
  lines.push(`settings: cascaded --concurrency ${CASCADE_CONCURRENCY}; BullMQ concurrency ${BULLMQ_CONCURRENCY}, verdict cache ${AUTH_CACHE === '1' ? 'on' : 'off'}`);
  for (const mode of MODES) {
    const m = result.modes[mode];
    lines.push('');
    lines.push(`(${mode}) ${m.what}`);
    lines.push(row(['', 'Cascade', 'BullMQ', 'Cascade/BullMQ'], widths));
    for (const [key, label, dp] of METRICS[mode === 'c' ? 'c' : 'ab'])
      lines.push(row([label, get(m.cascade, key).toFixed(dp), get(m.bullmq, key).toFixed(dp), m.ratio_cascade_over_bullmq[key].toFixed(2)], widths));
    if (mode === 'c') lines.push(row(['jobs/s the producer achieved', m.cascade.offered_per_s.toFixed(0), m.bullmq.offered_per_s.toFixed(0), ''], widths));
  }
  lines.push('');
  lines.push('jobs/s: (N-1) / (last result - first result), jobs queued before the worker started. CPU: utime+stime of the');
  lines.push(`worker process (/proc/<pid>/stat) from its start less its idle start-up cost (Cascade ${(startup.cascade * 1000).toFixed(0)} ms, BullMQ ${(startup.bullmq * 1000).toFixed(0)} ms) (a, b),`);
  lines.push('or over the offered window until the last result (c). RSS: VmHWM of the worker process. Redis CPU: INFO cpu');
  lines.push('used_cpu_user+sys delta. Redis cmds: INFO commandstats delta of all calls (Lua-internal calls included),');
  lines.push('less: our own INFO and XLEN polls (a, b; enqueues happen before the first snapshot); in (c) also the');
  if (MODES.includes('c'))
    lines.push(`producer's enqueues (Cascade ${producerPerJob.cascade.toFixed(3)}, BullMQ ${producerPerJob.bullmq.toFixed(3)} commands per enqueue, measured in (a)) and the result reader's XREADs.`);
  process.stdout.write(lines.join('\n') + '\n');
  result.table = lines.join('\n');
  fs.mkdirSync(path.dirname(outFile), { recursive: true });
  fs.writeFileSync(outFile, JSON.stringify(result, null, 2) + '\n');
  await admin.quit();
}

main().then(() => process.exit(0), (e) => {
  log(`failed: ${e.stack || e}`);
  killAll();
  process.exit(1);
});
