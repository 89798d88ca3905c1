--[[
Every operation of the Redis backend that must be atomic, as one library of
Redis functions (Redis 7+). ``library.py`` loads it (adding the header that
names it, and LIBRARY, the prefix of its function names) and has one Python
wrapper per function; a function runs alone on the server, so no two workers
ever see a task half-claimed or half-recorded. Bump LIBRARY in ``library.py``
when a function's arguments or what it writes change, or a function is added:
the library is server-wide, so old and new workers (and web processes)
sharing a server then each keep their own instead of replacing each other's.

Every function takes the prefix P as its one key (KEYS[1]), so a Redis
Cluster client sends the call to the node holding P's slot. The functions
build the other key names from P (task ids and queue names are not known
before the call), which a cluster allows because they all live in that same
slot: P is a hash tag, e.g. "{taskq}", and every key starts with it.

Keys, all under the prefix P (one hash tag, e.g. "{taskq}", so a cluster keeps
them in one slot):

  P:task:<id>         hash: one task, from enqueue until its result expires
  P:ready:<queue>     zset, every score 0: due tasks, ordered by member, which
                      is "<100 - priority, 3 digits><run_after, 16 digits><id>",
                      so ZRANGE 0 n is priority desc, then run_after, then id
                      (a UUIDv7: enqueue order)
  P:scheduled:<queue> zset scored by run_after: tasks not yet due, members as
                      in ready, moved there by the claim once due
  P:running           zset scored by lease expiry: claimed tasks
  P:expiring          zset scored by expires_at: READY tasks with a deadline
                      (a claimed one leaves it, and returns if it is retried)
  P:slots:<group>     set: the ids of the running tasks of a limited group (a
                      task's limit_key, or "@queue:<name>"), for concurrency
  P:starts:<group>    zset scored by start time: a group's starts within its
                      rate limit's period, for rate limits
  P:queues            set of every queue ever used (claims for "any queue")
  P:workers           zset scored by last heartbeat: the worker registry,
                      with P:worker:<id> hashes that expire after two leases
  P:outbox            list of finished task ids still to be copied to the
                      database (only with record_results_in_database)
  P:finished:<queue>:<minute>
                      hash: how many tasks of the queue finished in that
                      minute (since the epoch), by status, for the dashboard
                      and metrics; expires after FINISHED_TTL
  P:wake              pub/sub channel: a queue name when tasks become due
  P:abort             pub/sub channel: a worker id when someone asks to abort
                      a task that worker holds (the hash's abort_requested_at)

Times are integer microseconds since the epoch, given by the caller (the same
clock that computed run_after), never the server's clock. JSON fields are
stored as the caller's text and appended to as text: cjson would turn an
empty list into {}.
]]

-- How many scheduled tasks one claim moves to ready, per queue: bounds the
-- time one call can block the server after a long pause; the rest follow on
-- the next claims.
local PROMOTE_BATCH = 1000
-- How many ready tasks one claim looks at, at most, past those their limits
-- hold back, for the same reason.
local LIMITED_SCAN = 1000
-- The error of an attempt whose worker stopped renewing its lease.
local WORKER_LOST = 'django_tasks_q.exceptions.WorkerLost'
-- How many expired leases one recover call handles, for the same reason.
local RECOVER_BATCH = 1000
-- How many tasks past their deadline one expire call records, likewise.
local EXPIRE_BATCH = 1000
-- Seconds the per-minute counts of finished tasks are kept: twice the
-- longest look back (the dashboard's hour).
local FINISHED_TTL = 7200
local MINUTE = 60000000  -- in microseconds, as every time here

-- Register ``name`` as LIBRARY_<name>; ``callback(P, args)`` gets the prefix
-- (the call's one key) and the ARGV.
local function register(name, callback, flags)
  redis.register_function{function_name = LIBRARY .. '_' .. name, flags = flags,
    callback = function(keys, args) return callback(keys[1], args) end}
end

local function member(priority, run_after, id)
  return string.format('%03d%016d', 100 - tonumber(priority), tonumber(run_after)) .. id
end

local function id_of(member)
  return string.sub(member, 20)
end

-- Append one JSON value (as text) to a JSON list (as text).
local function json_append(list, value)
  if list == '[]' or list == false or list == nil or list == '' then
    return '[' .. value .. ']'
  end
  return string.sub(list, 1, -2) .. ',' .. value .. ']'
end

-- Put a READY task where the claim will find it: ready if due, else
-- scheduled; and where the expiry sweep will, if it has a deadline.
local function queue_task(P, queue, priority, run_after, id, now, expires_at)
  if expires_at and expires_at ~= '' then
    redis.call('ZADD', P .. ':expiring', expires_at, id)
  end
  local m = member(priority, run_after, id)
  if tonumber(run_after) <= tonumber(now) then
    redis.call('ZADD', P .. ':ready:' .. queue, 0, m)
    return true
  end
  redis.call('ZADD', P .. ':scheduled:' .. queue, run_after, m)
  return false
end

-- Take a READY task out of the places queue_task put it, so that neither
-- the claim nor the expiry sweep finds it again.
local function unqueue_task(P, queue, priority, run_after, id)
  local m = member(priority, run_after, id)
  redis.call('ZREM', P .. ':ready:' .. queue, m)
  redis.call('ZREM', P .. ':scheduled:' .. queue, m)
  redis.call('ZREM', P .. ':expiring', id)
end

-- Limits (see docs/guide/limits.md). Whether a group (a task's limit_key, or
-- "@queue:<name>") may start one more task now; ``seen`` caches each group's
-- figures for one claim call, which take() keeps up to date.
local function has_room(P, seen, group, concurrency, rate, period, now)
  local figures = seen[group]
  if not figures then
    local started = 0
    if rate then
      local starts = P .. ':starts:' .. group
      redis.call('ZREMRANGEBYSCORE', starts, '-inf', tonumber(now) - period * 1000000)
      started = redis.call('ZCARD', starts)
    end
    figures = {running = redis.call('SCARD', P .. ':slots:' .. group), started = started}
    seen[group] = figures
  end
  return (not concurrency or figures.running < concurrency)
    and (not rate or figures.started < rate)
end

-- The limits a task is under: {group, concurrency, rate, period} each, from
-- its hash fields (``task``: limit_key, concurrency_limit, rate_limit,
-- rate_period) and its queue's limits.
local function limits_of(task, queue, queue_limits)
  local limits = {}
  if task[1] and task[1] ~= '' then
    limits[#limits + 1] = {task[1], tonumber(task[2]), tonumber(task[3]), tonumber(task[4])}
  end
  local q = queue_limits[queue]
  if q then
    limits[#limits + 1] = {'@queue:' .. queue, q.concurrency, q.rate, q.period}
  end
  return limits
end

-- The task ``id`` starts under ``limits``: it holds a slot in each group
-- until it leaves RUNNING (free_slots), and counts as a start.
local function take(P, seen, limits, key, id, now)
  local groups = {}
  for _, limit in ipairs(limits) do
    local group = limit[1]
    redis.call('SADD', P .. ':slots:' .. group, id)
    seen[group].running = seen[group].running + 1
    if limit[3] then
      redis.call('ZADD', P .. ':starts:' .. group, now, id .. ':' .. now)
      seen[group].started = seen[group].started + 1
    end
    groups[#groups + 1] = group
  end
  if #groups > 0 then
    redis.call('HSET', key, 'holds', cjson.encode(groups))
  end
end

-- A task leaves RUNNING (recorded, retried, handed back, recovered): its slots free.
local function free_slots(P, key, id)
  local holds = redis.call('HGET', key, 'holds')
  if holds then
    for _, group in ipairs(cjson.decode(holds)) do
      redis.call('SREM', P .. ':slots:' .. group, id)
    end
    redis.call('HDEL', key, 'holds')
  end
end

-- A finished task: keep it as a result for ``ttl`` seconds (0: for ever), and
-- queue it for the database copy when asked to.
local function keep_result(P, key, id, ttl, outbox)
  redis.call('HDEL', key, 'worker_id', 'lease_until', 'ahead')
  if tonumber(ttl) > 0 then
    redis.call('EXPIRE', key, ttl)
  end
  if outbox == '1' then
    redis.call('RPUSH', P .. ':outbox', id)
  end
end

-- Count a finished task in ``tally`` (queue:minute -> status -> n); the
-- function that finished it writes the tally once at its end, so the counts
-- cost one HINCRBY per queue, minute and status a call, not one per task.
local function tally_finished(tally, queue, status, at)
  local key = queue .. ':' .. math.floor(tonumber(at) / MINUTE)
  local counts = tally[key] or {}
  counts[status] = (counts[status] or 0) + 1
  tally[key] = counts
end

local function write_tally(P, tally)
  for key, counts in pairs(tally) do
    local hash = P .. ':finished:' .. key
    for status, n in pairs(counts) do
      redis.call('HINCRBY', hash, status, n)
    end
    redis.call('EXPIRE', hash, FINISHED_TTL)
  end
end

-- Wake idle workers once per queue per call, however many tasks it queued.
local function wake(P, queues)
  for queue in pairs(queues) do
    redis.call('PUBLISH', P .. ':wake', queue)
  end
end

-- ARGV: task_path, queue, priority, max_attempts, enqueued_at, run_after,
-- expires_at ("" for none), trace_context (JSON text, "" for none),
-- concurrency, rate, rate period (seconds; "" for none: the task's limits),
-- then (id, args, kwargs, limit_key) per call (limit_key "" for a task
-- without limits). One call for a whole enqueue_many batch.
register('enqueue', function(P, args)
  local queue, priority, now, run_after = args[2], args[3], args[5], args[6]
  local expires_at, trace_context = args[7], args[8]
  local due = false
  for i = 12, #args, 4 do
    local id = args[i]
    local key = P .. ':task:' .. id
    redis.call('HSET', key,
      'task_path', args[1], 'queue_name', queue, 'priority', priority,
      'status', 'READY', 'args', args[i + 1], 'kwargs', args[i + 2],
      'run_after', run_after, 'enqueued_at', now, 'attempts', 0,
      'max_attempts', args[4], 'errors', '[]', 'worker_ids', '[]')
    if expires_at ~= '' then
      redis.call('HSET', key, 'expires_at', expires_at)
    end
    if trace_context ~= '' then
      redis.call('HSET', key, 'trace_context', trace_context)
    end
    if args[i + 3] ~= '' then
      redis.call('HSET', key, 'limit_key', args[i + 3], 'concurrency_limit', args[9],
        'rate_limit', args[10], 'rate_period', args[11])
    end
    due = queue_task(P, queue, priority, run_after, id, now, expires_at) or due
  end
  redis.call('SADD', P .. ':queues', queue)
  if due then
    wake(P, {[queue] = true})
  end
  return 1
end)

-- Start an attempt of a task ``worker`` holds: count it, name the worker,
-- set the times. ``task``: its started_at and worker_ids.
local function start_attempt(key, now, worker, task)
  local started_at = task[1]
  if not started_at or started_at == '' then
    started_at = now
  end
  redis.call('HSET', key, 'last_attempted_at', now, 'started_at', started_at,
    'worker_ids', json_append(task[2], cjson.encode(worker)),
    -- What release() restores if this attempt is handed back.
    'previous_worker_ids', task[2], 'previous_started_at', task[1] or '')
  redis.call('HDEL', key, 'ahead')
  redis.call('HINCRBY', key, 'attempts', 1)
end

-- Mark one task claimed by ``worker``: started, or (``ahead``) claimed ahead
-- of a free slot, with no attempt counted until the worker starts it (see
-- statements.py, "Claimed ahead": if the worker dies first, the task goes
-- back as it was). ``task``: its status, expires_at, started_at and worker_ids.
local function claim_one(P, key, id, now, lease_until, worker, task, ahead)
  redis.call('HSET', key, 'status', 'RUNNING', 'worker_id', worker, 'lease_until', lease_until)
  if ahead then
    redis.call('HSET', key, 'ahead', '1')
  else
    start_attempt(key, now, worker, {task[3], task[4]})
  end
  redis.call('ZADD', P .. ':running', lease_until, id)
  if task[2] then
    redis.call('ZREM', P .. ':expiring', id)
  end
  return redis.call('HGETALL', key)
end

-- ARGV: now, lease_until, limit, worker_id, run_now, queue limits (JSON:
-- {queue: {concurrency, rate, period}}), queue names (none: every queue).
-- Returns (id, HGETALL of its hash) per claimed task, in claim order; the
-- first run_now start, the rest are claimed ahead (but a task once lost while
-- claimed ahead, and a task with limits, always starts: see statements.py,
-- "Claimed ahead"). A task whose limits (its own, its queue's) leave no room
-- stays ready, and the claim looks further down its queue, a page at a time,
-- up to LIMITED_SCAN tasks.
register('claim', function(P, args)
  local now, lease_until, limit, worker = args[1], args[2], tonumber(args[3]), args[4]
  local run_now = tonumber(args[5])
  local queue_limits = cjson.decode(args[6])
  local queues = {}
  for i = 7, #args do
    queues[#queues + 1] = args[i]
  end
  if #queues == 0 then
    queues = redis.call('SMEMBERS', P .. ':queues')
  end
  -- Due scheduled tasks (delayed, or waiting to retry) become ready first,
  -- so they compete on priority with the rest.
  for _, queue in ipairs(queues) do
    local ready, scheduled = P .. ':ready:' .. queue, P .. ':scheduled:' .. queue
    local due = redis.call('ZRANGEBYSCORE', scheduled, '-inf', now, 'LIMIT', 0, PROMOTE_BATCH)
    for _, m in ipairs(due) do
      redis.call('ZADD', ready, 0, m)
      redis.call('ZREM', scheduled, m)
    end
  end
  local claimed, taken, seen, held, scanned = {}, 0, {}, {}, 0
  repeat
    -- The first ``limit`` of each queue (after those held back) contain the
    -- first ``limit`` overall.
    local candidates = {}
    for _, queue in ipairs(queues) do
      local ready, skip = P .. ':ready:' .. queue, held[queue] or 0
      for _, m in ipairs(redis.call('ZRANGE', ready, skip, skip + limit - 1)) do
        candidates[#candidates + 1] = {m, ready, queue}
      end
    end
    table.sort(candidates, function(a, b) return a[1] < b[1] end)
    local held_back = false
    for i = 1, #candidates do
      if taken == limit then
        break
      end
      local m, ready, queue = candidates[i][1], candidates[i][2], candidates[i][3]
      local id = id_of(m)
      local key = P .. ':task:' .. id
      local task = redis.call('HMGET', key, 'status', 'expires_at', 'started_at', 'worker_ids',
        'limit_key', 'concurrency_limit', 'rate_limit', 'rate_period', 'lost_ahead')
      local limits = limits_of({task[5], task[6], task[7], task[8]}, queue, queue_limits)
      local room = true
      for _, l in ipairs(limits) do
        room = room and has_room(P, seen, l[1], l[2], l[3], l[4], now)
      end
      -- A task evicted under memory pressure (see maxmemory-policy) is gone;
      -- one past its deadline is never started: expire records it.
      local gone = not task[1] or (task[2] and tonumber(task[2]) <= tonumber(now))
      if gone or room then
        redis.call('ZREM', ready, m)
      else
        held[queue] = (held[queue] or 0) + 1
        held_back = true
      end
      if room and not gone then
        claimed[#claimed + 1] = id
        claimed[#claimed + 1] = claim_one(P, key, id, now, lease_until, worker, task,
          taken >= run_now and task[9] ~= '1' and #limits == 0)
        take(P, seen, limits, key, id, now)
        taken = taken + 1
      end
    end
    scanned = scanned + #candidates
  until taken == limit or not held_back or scanned >= LIMITED_SCAN
  return claimed
end)

-- ARGV: worker_id, now, result_ttl, outbox ("1" to copy results to the
-- database), n, then (id, at) per task the worker claimed ahead and started
-- at ``at`` since (n of them: their attempts are counted first, as the
-- claim counts the others), then (id, status, return_value, errors, at,
-- max_attempts) per outcome: ``at`` is finished_at, or for status RETRY the
-- new run_after, when max_attempts is written too (a crash rescue grows it).
-- Only tasks the worker still holds are started or recorded: one whose lease
-- ran out belongs to its new holder. Returns the ids recorded.
register('record', function(P, args)
  local worker, now, ttl, outbox = args[1], args[2], args[3], args[4]
  local starts = 6 + 2 * tonumber(args[5])
  for i = 6, starts - 1, 2 do
    local key = P .. ':task:' .. args[i]
    local task = redis.call('HMGET', key, 'worker_id', 'ahead', 'started_at', 'worker_ids')
    if task[1] == worker and task[2] == '1' then
      start_attempt(key, args[i + 1], worker, {task[3], task[4]})
    end
  end
  local recorded, tally = {}, {}
  for i = starts, #args, 6 do
    local id, status, at = args[i], args[i + 1], args[i + 4]
    local key = P .. ':task:' .. id
    local task = redis.call('HMGET', key, 'worker_id', 'queue_name', 'priority', 'expires_at')
    if task[1] == worker then
      redis.call('ZREM', P .. ':running', id)
      free_slots(P, key, id)
      if status == 'RETRY' then
        redis.call('HSET', key, 'status', 'READY', 'run_after', at, 'errors', args[i + 3],
          'max_attempts', args[i + 5])
        redis.call('HDEL', key, 'worker_id', 'lease_until')
        queue_task(P, task[2], task[3], at, id, now, task[4])
      else
        redis.call('HSET', key, 'status', status, 'return_value', args[i + 2],
          'errors', args[i + 3], 'finished_at', at)
        keep_result(P, key, id, ttl, outbox)
        tally_finished(tally, task[2], status, at)
      end
      recorded[#recorded + 1] = id
    end
  end
  write_tally(P, tally)
  return recorded
end)

-- ARGV: worker_id, now, then task ids. Undo the claims: the attempts did
-- not happen, so the tasks go back to the front of their queues as they were
-- (a task claimed ahead had nothing counted).
register('release', function(P, args)
  local worker, now = args[1], args[2]
  local queues = {}
  for i = 3, #args do
    local id = args[i]
    local key = P .. ':task:' .. id
    local task = redis.call('HMGET', key, 'worker_id', 'queue_name', 'priority', 'run_after',
      'previous_worker_ids', 'previous_started_at', 'expires_at', 'ahead')
    if task[1] == worker then
      redis.call('ZREM', P .. ':running', id)
      redis.call('HSET', key, 'status', 'READY')
      free_slots(P, key, id)
      if task[8] ~= '1' then
        redis.call('HSET', key, 'worker_ids', task[5], 'started_at', task[6])
        redis.call('HINCRBY', key, 'attempts', -1)
      end
      redis.call('HDEL', key, 'worker_id', 'lease_until', 'ahead')
      queue_task(P, task[2], task[3], task[4], id, now, task[7])
      queues[task[2]] = true
    end
  end
  wake(P, queues)
  return 1
end)

-- ARGV: worker_id, now, lease_until, registry_ttl_ms, then the ids of the
-- tasks the worker holds. Renews only those: a claim whose reply was lost
-- (connection cut mid-call) is unknown to the worker, so it must expire and
-- be recovered. Returns 0 if the worker's registry entry was gone.
register('heartbeat', function(P, args)
  local worker, now, lease_until, registry_ttl = args[1], args[2], args[3], args[4]
  for i = 5, #args do
    local key = P .. ':task:' .. args[i]
    if redis.call('HGET', key, 'worker_id') == worker then
      redis.call('HSET', key, 'lease_until', lease_until)
      redis.call('ZADD', P .. ':running', 'XX', lease_until, args[i])
    end
  end
  local entry = P .. ':worker:' .. worker
  if redis.call('EXISTS', entry) == 0 then
    return 0
  end
  redis.call('HSET', entry, 'last_heartbeat_at', now)
  redis.call('PEXPIRE', entry, registry_ttl)
  redis.call('ZADD', P .. ':workers', now, worker)
  return 1
end)

-- ARGV: now, result_ttl, outbox, forget_before, crash_retries. Tasks whose
-- lease expired (their worker was killed, lost power or was cut off): the
-- attempt failed with WorkerLost. The task is ready again while it has crash
-- retries left (fewer WorkerLost errors than crash_retries: such a rescue
-- does not use up its own retries, so max_attempts grows by one) or attempts
-- left; else it fails. A task claimed ahead never started: it is ready
-- again as it was, marked lost_ahead (its next claims start it). Workers silent since ``forget_before`` leave the
-- registry. Returns the number of tasks recovered.
register('recover', function(P, args)
  local now, ttl, outbox, forget_before = args[1], args[2], args[3], args[4]
  local crash_retries = tonumber(args[5])
  local lost = redis.call('ZRANGEBYSCORE', P .. ':running', '-inf', '(' .. now,
    'LIMIT', 0, RECOVER_BATCH)
  local queues, tally = {}, {}
  for _, id in ipairs(lost) do
    redis.call('ZREM', P .. ':running', id)
    local key = P .. ':task:' .. id
    local task = redis.call('HMGET', key, 'worker_id', 'attempts', 'max_attempts', 'errors',
      'queue_name', 'priority', 'run_after', 'expires_at', 'ahead')
    if task[1] then
      free_slots(P, key, id)
    end
    if task[1] and task[9] == '1' then
      redis.call('HSET', key, 'status', 'READY', 'lost_ahead', '1')
      redis.call('HDEL', key, 'worker_id', 'lease_until', 'ahead')
      queue_task(P, task[5], task[6], task[7], id, now, task[8])
      queues[task[5]] = true
    elseif task[1] then
      local crashes = 0
      for _, error in ipairs(cjson.decode(task[4])) do
        if error.exception_class_path == WORKER_LOST then
          crashes = crashes + 1
        end
      end
      local rescued = crashes < crash_retries
      local errors = json_append(task[4], cjson.encode({
        exception_class_path = WORKER_LOST,
        traceback = WORKER_LOST .. ': worker ' .. task[1]
          .. ' stopped renewing its lease during attempt ' .. task[2] .. '\n',
      }))
      if rescued or tonumber(task[2]) < tonumber(task[3]) then
        local max_attempts = tonumber(task[3]) + (rescued and 1 or 0)
        redis.call('HSET', key, 'status', 'READY', 'errors', errors,
          'max_attempts', max_attempts)
        redis.call('HDEL', key, 'worker_id', 'lease_until')
        queue_task(P, task[5], task[6], task[7], id, now, task[8])
        queues[task[5]] = true
      else
        redis.call('HSET', key, 'status', 'FAILED', 'errors', errors, 'finished_at', now)
        keep_result(P, key, id, ttl, outbox)
        tally_finished(tally, task[5], 'FAILED', now)
      end
    end
  end
  write_tally(P, tally)
  wake(P, queues)
  local silent = redis.call('ZRANGEBYSCORE', P .. ':workers', '-inf', '(' .. forget_before)
  for _, worker in ipairs(silent) do
    redis.call('ZREM', P .. ':workers', worker)
    redis.call('DEL', P .. ':worker:' .. worker)
  end
  return #lost
end)

-- ARGV: now, result_ttl, outbox, abort ("1": also ask the workers of
-- running tasks to stop them), then task ids. Waiting tasks leave their
-- queue and are kept as CANCELLED results; running ones get
-- abort_requested_at, and their worker is told on P:abort. Returns
-- {cancelled, asked to stop}.
register('cancel', function(P, args)
  local now, ttl, outbox, abort = args[1], args[2], args[3], args[4]
  local cancelled, stopping, tally = 0, 0, {}
  for i = 5, #args do
    local id = args[i]
    local key = P .. ':task:' .. id
    local task = redis.call('HMGET', key, 'status', 'queue_name', 'priority', 'run_after',
      'worker_id')
    if task[1] == 'READY' then
      unqueue_task(P, task[2], task[3], task[4], id)
      redis.call('HSET', key, 'status', 'CANCELLED', 'finished_at', now)
      keep_result(P, key, id, ttl, outbox)
      tally_finished(tally, task[2], 'CANCELLED', now)
      cancelled = cancelled + 1
    elseif task[1] == 'RUNNING' and abort == '1' then
      redis.call('HSETNX', key, 'abort_requested_at', now)
      redis.call('PUBLISH', P .. ':abort', task[5])
      stopping = stopping + 1
    end
  end
  write_tally(P, tally)
  return {cancelled, stopping}
end)

-- ARGV: now, result_ttl, outbox. READY tasks past their deadline are not
-- run: they leave the queue as EXPIRED results. Returns how many, at most
-- EXPIRE_BATCH: call again while it returns that many.
register('expire', function(P, args)
  local now, ttl, outbox = args[1], args[2], args[3]
  local due = redis.call('ZRANGEBYSCORE', P .. ':expiring', '-inf', now, 'LIMIT', 0, EXPIRE_BATCH)
  local tally = {}
  for _, id in ipairs(due) do
    redis.call('ZREM', P .. ':expiring', id)
    local key = P .. ':task:' .. id
    local task = redis.call('HMGET', key, 'queue_name', 'priority', 'run_after', 'errors',
      'status')
    if task[5] == 'READY' then
      unqueue_task(P, task[1], task[2], task[3], id)
      local errors = json_append(task[4], cjson.encode({
        exception_class_path = 'django_tasks_q.exceptions.TaskExpired',
        traceback = 'django_tasks_q.exceptions.TaskExpired: not started by its deadline\n',
      }))
      redis.call('HSET', key, 'status', 'EXPIRED', 'errors', errors, 'finished_at', now)
      keep_result(P, key, id, ttl, outbox)
      tally_finished(tally, task[1], 'EXPIRED', now)
    end
  end
  write_tally(P, tally)
  return #due
end)

-- ARGV: queue, limit. Deletes up to ``limit`` waiting tasks (ready or
-- scheduled) of the queue, hashes and all; running ones are in P:running,
-- not there, and finish as usual. Returns how many it deleted: the caller
-- calls again until fewer than ``limit``, so no call blocks the server long.
register('purge', function(P, args)
  local queue, limit = args[1], tonumber(args[2])
  local deleted = 0
  for _, set in ipairs({P .. ':ready:' .. queue, P .. ':scheduled:' .. queue}) do
    if deleted == limit then
      break
    end
    local members = redis.call('ZRANGE', set, 0, limit - deleted - 1)
    for _, m in ipairs(members) do
      redis.call('DEL', P .. ':task:' .. id_of(m))
      redis.call('ZREM', P .. ':expiring', id_of(m))
      redis.call('ZREM', set, m)
    end
    deleted = deleted + #members
  end
  return deleted
end)

-- The smallest run_after in a ready set: the set is ordered by priority
-- first, so look at the first member of each priority present, jumping from
-- one priority to the next (one lookup per priority in use, not per task).
local function oldest_ready(ready)
  local oldest = nil
  local m = redis.call('ZRANGE', ready, 0, 0)[1]
  while m do
    local run_after = tonumber(string.sub(m, 4, 19))
    if not oldest or run_after < oldest then
      oldest = run_after
    end
    local next_priority = string.format('%03d', tonumber(string.sub(m, 1, 3)) + 1)
    m = redis.call('ZRANGE', ready, '[' .. next_priority, '+', 'BYLEX', 'LIMIT', 0, 1)[1]
  end
  return oldest
end

-- ARGV: now, first_minute, minutes, then the configured queues. Reads
-- only. For each queue configured or ever used: its name; tasks waiting
-- (ready, or scheduled and due: a claim has not moved them yet), scheduled
-- (not due) and running (one lookup per running task: as many as the
-- workers' slots); the run_after of the longest-waiting task, or nil; and a
-- P:finished hash (flat) for each of ``minutes`` minutes from first_minute.
register('stats', function(P, args)
  local now, first, minutes = tonumber(args[1]), tonumber(args[2]), tonumber(args[3])
  local queues = {}
  for i = 4, #args do
    queues[args[i]] = true
  end
  for _, queue in ipairs(redis.call('SMEMBERS', P .. ':queues')) do
    queues[queue] = true
  end
  local running = {}
  for _, id in ipairs(redis.call('ZRANGE', P .. ':running', 0, -1)) do
    local queue = redis.call('HGET', P .. ':task:' .. id, 'queue_name')
    if queue then
      running[queue] = (running[queue] or 0) + 1
    end
  end
  local reply = {}
  for queue in pairs(queues) do
    local ready, scheduled = P .. ':ready:' .. queue, P .. ':scheduled:' .. queue
    local due = redis.call('ZCOUNT', scheduled, '-inf', now)
    local oldest = oldest_ready(ready)
    local first_scheduled = redis.call('ZRANGE', scheduled, 0, 0, 'WITHSCORES')[2]
    if due > 0 and (not oldest or tonumber(first_scheduled) < oldest) then
      oldest = tonumber(first_scheduled)
    end
    local finished = {}
    for minute = first, first + minutes - 1 do
      finished[#finished + 1] = redis.call('HGETALL', P .. ':finished:' .. queue .. ':' .. minute)
    end
    reply[#reply + 1] = {queue, redis.call('ZCARD', ready) + due,
      redis.call('ZCARD', scheduled) - due, running[queue] or 0, oldest or false, finished}
  end
  return reply
end, {'no-writes'})
