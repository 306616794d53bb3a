-- One wrk script for every load scenario of the benchmark (bench/harness/load.py builds the
-- command line). Arguments after `--` are key=value pairs:
--
--   mode      static   the same request every time (method, path, body)
--             pool     one item of `file` per request, put into `body` at {item}; the thread
--                      stops when its share of the file is used up (codes, tokens to revoke)
--             refresh  a refresh-token chain per thread: the first token from `file`, then the
--                      refresh_token of each response (run with -t N -c N: one connection each)
--   method, path, body, auth (base64 of client_id:secret for Basic), threads (the -t value)
--   expect    a Lua pattern the body of every answer must contain
--   record    a file prefix: each thread writes the access_token of every answer to
--             <record>.<thread id>, one a line (the tokens the revocation scenario uses)
--   stop_path a harmless GET sent once when a thread runs out of items (not counted)
--
-- An error is a socket error, a non-2xx status or a body without `expect`. done() prints one
-- line: BENCH_JSON {...}.

local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

local cfg = {}
local headers = {}
local items = {}
local pos = 1
local current = nil
local static_request = nil
local out = nil

errors = 0
ignored = 0
exhausted = false

function init(args)
  for _, arg in ipairs(args) do
    local key, value = arg:match("^([%w_]+)=(.*)$")
    if key then
      cfg[key] = value
    end
  end
  if cfg.auth and cfg.auth ~= "" then
    headers["Authorization"] = "Basic " .. cfg.auth
  end
  if cfg.method == "POST" then
    headers["Content-Type"] = "application/x-www-form-urlencoded"
  end
  if cfg.file and cfg.file ~= "" then
    local n = tonumber(cfg.threads or "1")
    local i = 0
    for line in io.lines(cfg.file) do
      if line ~= "" then
        if i % n == id then
          items[#items + 1] = line
        end
        i = i + 1
      end
    end
  end
  if cfg.record and cfg.record ~= "" then
    out = io.open(cfg.record .. "." .. id, "w")
    out:setvbuf("line")
  end
  if cfg.mode == "refresh" then
    current = items[1]
  elseif cfg.mode ~= "pool" then
    static_request = wrk.format(cfg.method, cfg.path, headers, cfg.body)
  end
end

local function with_item(item)
  local body = cfg.body:gsub("{item}", function() return item end)
  return wrk.format(cfg.method, cfg.path, headers, body)
end

local function stop()
  if not exhausted then
    exhausted = true
    wrk.thread:stop()
  end
  return wrk.format("GET", cfg.stop_path or "/", nil, nil)
end

function request()
  if static_request then
    return static_request
  end
  local item
  if cfg.mode == "refresh" then
    item = current
  else
    item = items[pos]
    pos = pos + 1
  end
  if item == nil then
    return stop()
  end
  return with_item(item)
end

function response(status, _, body)
  if exhausted then
    ignored = ignored + 1
    return
  end
  local ok = status >= 200 and status < 300
  if ok and cfg.expect and cfg.expect ~= "" then
    ok = body ~= nil and body:find(cfg.expect) ~= nil
  end
  if cfg.mode == "refresh" then
    current = nil
    if ok then
      current = body:match('"refresh_token"%s*:%s*"([^"]+)"')
      ok = current ~= nil
    end
  end
  if ok and out then
    local token = body:match('"access_token"%s*:%s*"([^"]+)"')
    if token then
      out:write(token, "\n")
    end
  end
  if not ok then
    errors = errors + 1
  end
end

function done(summary, latency, _)
  local errs, skipped = 0, 0
  for _, thread in ipairs(threads) do
    errs = errs + (thread:get("errors") or 0)
    skipped = skipped + (thread:get("ignored") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"errors":%d,"ignored":%d,'
      .. '"socket_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,'
      .. '"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, errs, skipped,
    e.connect + e.read + e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean
  ))
end
