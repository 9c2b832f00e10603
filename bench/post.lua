-- wrk script for the benchmark harness (bench/run.py).
-- usage: wrk -t T -c C -d Ds -s post.lua URL -- <path> <nkeys> <body> [idfile]
--   <path> may contain "{k}": with nkeys > 0 each request picks key "k0".."k<nkeys-1>" at random.
--   idfile: when given, the invocationId of every 2xx response body is appended to "<idfile>.<thread>",
--   so that a drain probe can poll the outputs of /send invocations.
-- done() prints one line "WRKJSON {...}"; latencies in microseconds. `sent` counts requests written,
-- `acked` 2xx responses: requests cut at the end of the run are sent - responses.
local path_tmpl, nkeys, body, idfile = "/Noop/call", 0, "1", nil
local headers = { ["Content-Type"] = "application/json" }
local fixed = nil
local idout = nil
local threads = {}
local counter = 0

sent, acked, responses = 0, 0, 0

function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
  table.insert(threads, thread)
end

function init(args)
  path_tmpl = args[1] or path_tmpl
  nkeys = tonumber(args[2] or "0") or 0
  body = args[3] or body
  idfile = args[4]
  if idfile == "" then idfile = nil end
  math.randomseed(os.time() * 1000 + (tid or 0))
  if nkeys <= 0 then
    fixed = wrk.format("POST", path_tmpl, headers, body)
  end
  if idfile then
    idout = assert(io.open(idfile .. "." .. tostring(tid or 0), "w"))
  end
end

function request()
  sent = sent + 1
  if fixed then
    return fixed
  end
  local k = math.random(0, nkeys - 1)
  return wrk.format("POST", (string.gsub(path_tmpl, "{k}", "k" .. k)), headers, body)
end

function response(status, hdrs, resp_body)
  responses = responses + 1
  if status >= 200 and status < 300 then
    acked = acked + 1
    if idout then
      local id = string.match(resp_body or "", '"invocationId"%s*:%s*"([^"]+)"')
      if id then idout:write(id, "\n") end
      if acked % 256 == 0 then idout:flush() end
    end
  end
end

function done(summary, latency, requests)
  local s, a, r = 0, 0, 0
  for _, t in ipairs(threads) do
    s = s + (t:get("sent") or 0)
    a = a + (t:get("acked") or 0)
    r = r + (t:get("responses") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"sent":%d,"acked":%d,"responses":%d,' ..
    '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"mean_us":%.1f,"max_us":%d}\n',
    summary.requests, summary.duration, s, a, r, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.mean, latency.max))
end
