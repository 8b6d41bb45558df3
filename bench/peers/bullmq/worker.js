'use strict';
// The BullMQ 5 peer of cascaded for bench/compare.sh: an idiomatic BullMQ worker doing the
// same per-job work as Cascade's engine, so that the two can be compared on one machine.
//
// A job's data is what a Cascade stream entry carries: {authorization | x-api-key, body}
// (body is the SPEC §1.1 JSON text). Per job, like cascaded:
//   - the API key: format and CRC-32 checksum, SHA-256, HGETALL <prefix>:apikey:<hex> and
//     HGETALL <prefix>:account:<id>; status, expiry, `send` scope, account status;
//   - the body: JSON parse, channels, recipients, message text (the checks that matter here);
//   - every channel key: format, SHA-256, HGETALL <prefix>:chkey:<hex> (pipelined, one round
//     trip), ownership, the API key's channel restriction, type;
//   - the cascade: tier 0 then fallback tiers in order, each tier's channels in parallel,
//     transient failures retried inside the tier (2 retries, 200 ms base, jitter), permanent
//     ones not; the first tier with a delivery ends it;
//   - usage counters per API key (accepted, delivered, failed, rejected, last_used) flushed
//     to <prefix>:usage:<key id> once a second, as cascaded does;
//   - the return value is a result shaped like Cascade's (id, status, state, account,
//     delivered_via, attempts, job_attempt, finished_at). A job whose every tier failed with a
//     transient failure throws, so BullMQ's own attempts/backoff retry it later (Cascade's
//     job retries); all-permanent failures and rejections complete with their result.
//
// Verdict cache (AUTH_CACHE=1, the default): cascaded caches API key and channel key
// records for at most 30 s and drops them on a pub/sub announcement on <prefix>:auth-events
// (cascadectl publishes every change). This worker does the same, with one SUBSCRIBE
// connection, so per job it reads Redis for keys only on a miss — the same work. AUTH_CACHE=0
// does the HGETALLs on every job (what a worker without that cache would do).
//
// Settings (the best found on this machine, see docs/performance.md):
//   concurrency 128 (CONCURRENCY; 20,000-job drains on this shared 2-CPU machine with 64, 128,
//   256, 512, 1024: 64 and 128 used the least CPU per job and 128 gave the best jobs/s, within
//   the noise of a shared machine),
//   removeOnComplete {count: 0} and removeOnFail {age: 86400} (completed jobs are not kept:
//   BullMQ's own recommendation for throughput; results still reach QueueEvents
//   'completed' through the events stream), lock renewal and the stalled-job check left
//   on (cascaded also reclaims the jobs of a dead worker), one undici Agent with keep-alive
//   and 64 connections per origin (cascaded's HTTP pool also keeps 64 per host).
//
// Env: REDIS_URL, CASCADE_PREFIX (key records, default cascade), QUEUE (default sends),
// CONCURRENCY, AUTH_CACHE, EXPECT (print "done <unix µs>" on stdout once that many jobs
// have finished — how bench/compare.js times a drain without touching Redis).
const crypto = require('node:crypto');
const zlib = require('node:zlib');
const { Worker } = require('bullmq');
const IORedis = require('ioredis');
const { Agent, request } = require('undici');

const redisUrl = process.env.REDIS_URL || 'redis://127.0.0.1:6379/0';
const prefix = process.env.CASCADE_PREFIX || 'cascade';
const queueName = process.env.QUEUE || 'sends';
const concurrency = Number(process.env.CONCURRENCY || 128);
const authCache = process.env.AUTH_CACHE !== '0';
const expect = Number(process.env.EXPECT || 0);

const ATTEMPT_TIMEOUT_MS = 10000;
const RETRIES = 2;
const RETRY_BASE_MS = 200;
const CACHE_MAX_AGE_MS = 30000;

const http = new Agent({ connections: 64, keepAliveTimeout: 60000, pipelining: 1 });
const connection = new IORedis(redisUrl, { maxRetriesPerRequest: null });
const events = new IORedis(redisUrl, { maxRetriesPerRequest: null });

// ---- keys (auth/key.cpp) -------------------------------------------------------------
const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
function checksum(prefixedRandom) {
  let v = zlib.crc32(prefixedRandom);
  const out = new Array(6);
  for (let i = 5; i >= 0; --i) {
    out[i] = ALPHABET[v % 62];
    v = Math.floor(v / 62);
  }
  return out.join('');
}
function validKey(key, kind) {
  if (typeof key !== 'string' || key.length !== 41 || !key.startsWith(kind + '_')) return false;
  if (!/^[0-9A-Za-z]{38}$/.test(key.slice(3))) return false;
  return key.slice(35) === checksum(key.slice(0, 35));
}
const sha256hex = (s) => crypto.createHash('sha256').update(s).digest('hex');
const pairs = (arr) => {
  const o = {};
  for (let i = 0; i + 1 < arr.length; i += 2) o[arr[i]] = arr[i + 1];
  return o;
};

// ---- verdict cache, invalidated like cascaded's -----------------------------------------
const apiCache = new Map(); // hex -> {key, account, at}
const chCache = new Map(); // hex -> {key, at}
let cacheLive = false;
if (authCache) {
  events.on('message', (_ch, msg) => {
    const [kind, arg] = msg.split(' ');
    if (kind === 'apikey') apiCache.delete(arg);
    else if (kind === 'chkey') chCache.delete(arg);
    else if (kind === 'account') {
      for (const [k, v] of apiCache) if (v.account.id === arg) apiCache.delete(k);
      for (const [k, v] of chCache) if (v.key.account === arg) chCache.delete(k);
    } else {
      apiCache.clear();
      chCache.clear();
    }
  });
  // A lost subscription means missed announcements: forget everything until it is back.
  const down = () => {
    cacheLive = false;
    apiCache.clear();
    chCache.clear();
  };
  events.on('close', down);
  events.on('ready', () => {
    events.subscribe(`${prefix}:auth-events`).then(() => { cacheLive = true; }, down);
  });
}
const fresh = (e) => e && cacheLive && Date.now() - e.at < CACHE_MAX_AGE_MS;

async function findApiKey(hex) {
  const hit = authCache && apiCache.get(hex);
  if (fresh(hit)) return hit;
  const wasLive = cacheLive;
  const rec = pairs(await connection.call('HGETALL', `${prefix}:apikey:${hex}`));
  if (!rec.id) return null;
  const acc = pairs(await connection.call('HGETALL', `${prefix}:account:${rec.account}`));
  if (!acc.status) return null;
  const entry = {
    key: {
      id: rec.id, account: rec.account, status: rec.status,
      scopes: (rec.scopes || '').split(',').filter(Boolean),
      channels: (rec.channels || '').split(',').filter(Boolean),
      expires: Number(rec.expires || 0), rate: rec.rate || '',
    },
    account: { id: rec.account, status: acc.status },
    at: Date.now(),
  };
  if (authCache && wasLive && cacheLive) apiCache.set(hex, entry);
  return entry;
}

async function findChannelKeys(hexes) {
  const out = new Array(hexes.length);
  const miss = [];
  hexes.forEach((hex, i) => {
    const hit = authCache && chCache.get(hex);
    if (fresh(hit)) out[i] = hit.key;
    else miss.push(i);
  });
  if (miss.length) {
    const wasLive = cacheLive;
    const pipe = connection.pipeline();
    for (const i of miss) pipe.call('HGETALL', `${prefix}:chkey:${hexes[i]}`);
    const replies = await pipe.exec();
    miss.forEach((i, k) => {
      const [err, arr] = replies[k];
      if (err) throw err;
      const f = pairs(arr);
      if (!f.id) return;
      const settings = {};
      for (const [n, v] of Object.entries(f)) if (n.startsWith('s.')) settings[n.slice(2)] = v;
      const key = { id: f.id, account: f.account, type: f.type, status: f.status, settings };
      out[i] = key;
      if (authCache && wasLive && cacheLive) chCache.set(hexes[i], { key, at: Date.now() });
    });
  }
  return out;
}

// ---- usage counters, flushed once a second (engine/usage.cpp) --------------------------
let usage = new Map(); // key id -> {accepted, delivered, failed, rejected, last_used}
function count(keyId, kind) {
  if (!keyId) return;
  let u = usage.get(keyId);
  if (!u) usage.set(keyId, (u = { accepted: 0, delivered: 0, failed: 0, rejected: 0, last_used: 0 }));
  u[kind] += 1;
  if (kind !== 'rejected') u.last_used = Date.now();
}
async function flushUsage() {
  if (!usage.size) return;
  const batch = usage;
  usage = new Map();
  const pipe = connection.pipeline();
  for (const [id, u] of batch) {
    const key = `${prefix}:usage:${id}`;
    for (const f of ['accepted', 'delivered', 'failed', 'rejected']) if (u[f]) pipe.hincrby(key, f, u[f]);
    if (u.last_used) {
      pipe.eval("local c=tonumber(redis.call('HGET',KEYS[1],'last_used') or '0') " +
        "if tonumber(ARGV[1])>c then redis.call('HSET',KEYS[1],'last_used',ARGV[1]) end", 1, key, u.last_used);
    }
  }
  await pipe.exec();
}
const usageTimer = setInterval(() => flushUsage().catch(() => {}), 1000);

// ---- providers (channels/telegram.cpp, waba.cpp, whatsapp.cpp, postmark.cpp) ----------
const DEFAULT_BASE = {
  telegram: process.env.CASCADE_TELEGRAM_API_BASE || 'https://api.telegram.org',
  waba: process.env.CASCADE_WABA_API_BASE || 'https://graph.facebook.com',
  email: process.env.CASCADE_POSTMARK_API_BASE || 'https://api.postmarkapp.com',
  whatsapp: process.env.CASCADE_WHATSAPP_API_BASE || '',
};
function buildRequest(channel, key, job) {
  const s = key.settings;
  const base = (s.api_base || DEFAULT_BASE[key.type] || '').replace(/\/$/, '');
  const text = job.message.text;
  const headers = { 'content-type': 'application/json' };
  if (key.type === 'telegram') {
    const to = job.to.telegram;
    const chat = /^-?[0-9]+$/.test(to) ? Number(to) : to;
    return { url: `${base}/bot${s.bot_token}/sendMessage`, headers, body: JSON.stringify({ chat_id: chat, text }) };
  }
  if (key.type === 'waba') {
    headers.authorization = `Bearer ${s.access_token}`;
    return {
      url: `${base}/${s.version || 'v23.0'}/${s.phone_number_id}/messages`, headers,
      body: JSON.stringify({
        messaging_product: 'whatsapp', recipient_type: 'individual', to: job.to.phone,
        type: 'text', text: { body: text, preview_url: false },
      }),
    };
  }
  if (key.type === 'whatsapp') {
    if (s.gateway_key) headers['x-api-key'] = s.gateway_key;
    return {
      url: `${base}/api/sendText`, headers,
      body: JSON.stringify({ session: s.session, chatId: `${job.to.phone.replace(/\D/g, '')}@c.us`, text }),
    };
  }
  if (key.type === 'email' && (s.provider || 'postmark') === 'postmark') {
    headers['x-postmark-server-token'] = s.server_token;
    return {
      url: `${base}/email`, headers,
      body: JSON.stringify({ From: s.from, To: job.to.email, Subject: job.message.subject || text.slice(0, 78), TextBody: text, MessageStream: 'outbound' }),
    };
  }
  return null;
}
// -> {ok, provider_id} | {ok:false, error, retryable}
function classify(type, status, json) {
  if (status >= 200 && status < 300) {
    if (type === 'telegram' && json && json.ok) return { ok: true, provider_id: String(json.result.message_id) };
    if (type === 'waba' && json && json.messages && json.messages[0]) return { ok: true, provider_id: json.messages[0].id };
    if (type === 'whatsapp' && json && json.id !== undefined) return { ok: true, provider_id: String(json.id.id || json.id) };
    if (type === 'email' && json && json.ErrorCode === 0) return { ok: true, provider_id: json.MessageID };
    return { ok: false, error: 'unexpected provider reply', retryable: false };
  }
  const retryable = status === 429 || status >= 500;
  let why = `provider returned ${status}`;
  if (type === 'telegram' && json && json.description) why += `: ${json.description}`;
  return { ok: false, error: why, retryable };
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function attemptChannel(use, key, job) {
  const t0 = performance.now();
  const a = { channel: use.channel, tier: use.tier, ok: false, tries: 0 };
  if (key.status !== 'active') return Object.assign(a, { error: 'channel paused', retryable: false, ms: 0 });
  const req = buildRequest(use.channel, key, job);
  if (!req) return Object.assign(a, { error: 'unsupported channel settings', retryable: false, ms: 0 });
  for (let attempt = 0; ; ++attempt) {
    a.tries = attempt + 1;
    let out;
    try {
      const res = await request(req.url, {
        method: 'POST', headers: req.headers, body: req.body, dispatcher: http,
        headersTimeout: ATTEMPT_TIMEOUT_MS, bodyTimeout: ATTEMPT_TIMEOUT_MS,
      });
      let json = null;
      try { json = await res.body.json(); } catch { /* not JSON */ }
      out = classify(key.type, res.statusCode, json);
    } catch (e) {
      out = { ok: false, error: `connect or timeout: ${e.code || e.message}`, retryable: true };
    }
    if (out.ok || !out.retryable || attempt >= RETRIES) {
      Object.assign(a, out);
      break;
    }
    await sleep(RETRY_BASE_MS * 2 ** attempt * (0.5 + Math.random()));
  }
  a.ms = Math.round((performance.now() - t0) * 10) / 10;
  return a;
}

// ---- one job ------------------------------------------------------------------------------
function rejected(job, status, error, extra) {
  return Object.assign({ id: job.id, status, state: 'rejected', error }, extra,
    { job_attempt: job.attemptsMade + 1, finished_at: new Date().toISOString() });
}

const CHANNELS = ['whatsapp', 'waba', 'telegram', 'email'];
const RECIPIENT = { whatsapp: 'phone', waba: 'phone', telegram: 'telegram', email: 'email' };

async function processJob(job) {
  const d = job.data;
  let auth = d.authorization;
  let apiKey;
  if (auth !== undefined) {
    if (!auth.startsWith('Bearer ') || !auth.slice(7).trim()) return rejected(job, 401, 'API key is missing');
    apiKey = auth.slice(7).trim();
    if (d['x-api-key'] !== undefined && d['x-api-key'] !== apiKey) return rejected(job, 400, 'Invalid request: conflicting credentials');
  } else if (d['x-api-key']) apiKey = d['x-api-key'];
  else return rejected(job, 401, 'API key is missing');
  if (!validKey(apiKey, 'ak')) return rejected(job, 401, 'Invalid API key');
  const principal = await findApiKey(sha256hex(apiKey));
  if (!principal) return rejected(job, 401, 'Invalid API key');
  const k = principal.key;
  const acc = { account: k.account };
  if (k.status !== 'active' || (k.expires && Date.now() >= k.expires)) return rejected(job, 401, 'Invalid API key');
  const reject = (status, error, extra) => {
    count(k.id, 'rejected');
    return rejected(job, status, error, Object.assign({}, acc, extra));
  };
  if (!k.scopes.includes('send') && !k.scopes.includes('admin')) return reject(403, 'API key does not have the send permission');
  if (principal.account.status !== 'active') return reject(403, 'Account is paused');
  // (API key rate limits are not exercised by the benchmark: its keys have none.)

  let body;
  try { body = JSON.parse(d.body); } catch { return reject(400, 'Invalid request: body is not JSON', { field: 'body' }); }
  if (!body || typeof body.keys !== 'object') return reject(400, 'Invalid request: keys is required', { field: 'keys' });
  if (!body.message || typeof body.message.text !== 'string' || !body.message.text.length || [...body.message.text].length > 4096)
    return reject(400, 'Invalid request: message.text must be 1 to 4096 characters', { field: 'message.text' });
  const uses = [];
  for (const [channel, use] of Object.entries(body.keys)) {
    if (!CHANNELS.includes(channel)) return reject(400, `Invalid request: unknown channel ${channel}`, { field: `keys.${channel}` });
    if (!use || typeof use.token !== 'string') return reject(400, 'Invalid request: token is required', { field: `keys.${channel}.token` });
    if (!body.to || typeof body.to[RECIPIENT[channel]] !== 'string') return reject(400, `Invalid request: to.${RECIPIENT[channel]} is required`, { field: `to.${RECIPIENT[channel]}` });
    if (use.fallback_sequence !== undefined && use.fallback !== true)
      return reject(400, 'Invalid request: fallback_sequence needs fallback: true', { field: `keys.${channel}.fallback_sequence` });
    uses.push({ channel, token: use.token, tier: use.fallback === true ? (use.fallback_sequence || 1) : 0 });
  }
  if (!uses.length) return reject(400, 'Invalid request: at least one channel', { field: 'keys' });

  for (const u of uses) if (!validKey(u.token, 'ck')) return reject(403, `Channel key for ${u.channel} does not belong to this account`);
  const keys = await findChannelKeys(uses.map((u) => sha256hex(u.token)));
  for (let i = 0; i < uses.length; ++i)
    if (!keys[i] || keys[i].account !== k.account) return reject(403, `Channel key for ${uses[i].channel} does not belong to this account`);
  for (let i = 0; i < uses.length; ++i)
    if (k.channels.length && !k.channels.includes(keys[i].id)) return reject(403, 'API key does not authorize this channel key');
  for (let i = 0; i < uses.length; ++i)
    if (keys[i].type !== uses[i].channel)
      return reject(400, `Invalid request: keys.${uses[i].channel}.token is a ${keys[i].type} channel key`, { field: `keys.${uses[i].channel}.token` });
  count(k.id, 'accepted');

  const tiers = [...new Set(uses.map((u) => u.tier))].sort((a, b) => a - b);
  const attempts = [];
  let deliveredVia = [];
  for (const tier of tiers) {
    const idx = uses.map((u, i) => i).filter((i) => uses[i].tier === tier);
    const got = await Promise.all(idx.map((i) => attemptChannel(uses[i], keys[i], body)));
    attempts.push(...got);
    deliveredVia = got.filter((a) => a.ok).map((a) => a.channel);
    if (deliveredVia.length) break;
  }
  const result = {
    id: job.id, account: k.account, delivered_via: deliveredVia, attempts,
    job_attempt: job.attemptsMade + 1, finished_at: new Date().toISOString(),
  };
  if (deliveredVia.length) {
    count(k.id, 'delivered');
    return Object.assign({ status: 200, state: 'delivered' }, result);
  }
  if (attempts.some((a) => a.retryable)) {
    // Every tier failed and something was transient: BullMQ retries the job (attempts and
    // backoff are set by the producer, like cascaded's --job-retry-delays).
    throw new Error(`every tier failed: ${JSON.stringify(attempts)}`);
  }
  count(k.id, 'failed');
  return Object.assign({ status: 502, state: 'failed' }, result);
}

// ---- the worker --------------------------------------------------------------------------
const worker = new Worker(queueName, processJob, {
  connection,
  concurrency,
  removeOnComplete: { count: 0 }, // the Worker option takes KeepJobs; {count: 0} = remove at once
  removeOnFail: { age: 86400 },
});
let finished = 0;
const onFinished = () => {
  if (++finished === 1) process.stdout.write(`first ${Math.round((performance.timeOrigin + performance.now()) * 1000)}\n`);
  if (finished === expect) process.stdout.write(`done ${Math.round((performance.timeOrigin + performance.now()) * 1000)}\n`);
};
worker.on('completed', onFinished);
worker.on('failed', onFinished);
worker.on('error', (e) => process.stderr.write(`worker error: ${e.message}\n`));
worker.waitUntilReady().then(() => process.stdout.write('ready\n'));

async function stop() {
  clearInterval(usageTimer);
  await worker.close();
  await flushUsage().catch(() => {});
  await http.close();
  events.disconnect();
  connection.disconnect();
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
