-- wrk script for the wallet's GraphQL endpoint. bench/load.py writes a prelude above this file
-- that sets the table `bench`:
--   bench.mode     "deposit" | "transfer" | "hot" | "wallet" | "typename" | "page"
--                  | "batch" | "atomic_batch"
--   bench.wallets  wallet ids to pick from (uniformly)
--   bench.hot      the hot wallet's id (mode "hot")
--   bench.prefix   prefix of every clientTransactionId, unique to this run and phase
--   bench.budget   responses per thread after which the thread stops (0: run for -d)
--   bench.batch    transfers in each transferBatch request (modes "batch", "atomic_batch")
-- Every request carries `Authorization: Bearer $WALLET_BENCH_TOKEN` (bench/load.py sets it).
-- Each transfer gets its own clientTransactionId: "<prefix>-<thread>-<counter>". Every response
-- is checked (status, and GraphQL errors in the body); done() prints one line,
-- "WRK_JSON {...}", with the counts and the latency percentiles.

local threads = {}
local next_thread = 0

function setup(thread)
  next_thread = next_thread + 1
  thread:set("thread_number", next_thread)
  table.insert(threads, thread)
end

local DEPOSIT = '{"query":"mutation($i: DepositInput!) { deposit(input: $i) '
  .. '{ transaction { id status } errors { code } } }",'
  .. '"variables":{"i":{"walletId":"%s","amount":"1.00","clientTransactionId":"%s"}}}'
local TRANSFER = '{"query":"mutation($i: TransferInput!) { transfer(input: $i) '
  .. '{ transaction { id status } errors { code } } }",'
  .. '"variables":{"i":{"fromWalletId":"%s","toWalletId":"%s","amount":"0.01",'
  .. '"clientTransactionId":"%s"}}}'
local WALLET = '{"query":"query($id: ID!) { wallet(id: $id) { balance } }",'
  .. '"variables":{"id":"%s"}}'
local TYPENAME = '{"query":"{ __typename }"}'
local PAGE = '{"query":"query($id: ID!) { wallet(id: $id) { balance transactions(first: 20) '
  .. '{ edges { node { id type status amount createdAt } } } } }","variables":{"id":"%s"}}'
-- A transferBatch: the document once, then `bench.batch` TransferInputs built per request.
local BATCH_HEAD = '{"query":"mutation($i: TransferBatchInput!) { transferBatch(input: $i) '
  .. '{ results { transaction { id status } errors { code } } errors { code } } }",'
  .. '"variables":{"i":{"atomic":%s,"transfers":['
local BATCH_ITEM = '{"fromWalletId":"%s","toWalletId":"%s","amount":"0.01",'
  .. '"clientTransactionId":"%s"}'
local BATCH_TAIL = "]}}}"

-- What a good answer contains, and what no good answer contains.
local EXPECT = {
  deposit = '"errors":%s*%[%]',
  transfer = '"errors":%s*%[%]',
  hot = '"errors":%s*%[%]',
  wallet = '"balance":%s*"',
  typename = '"__typename":%s*"Query"',
  page = '"edges":%s*%[',
  -- Any refused transfer, or the batch refused as a whole, carries a non-empty "errors".
  batch = '"results":%s*%[%s*{',
  atomic_batch = '"results":%s*%[%s*{',
}
local REFUSE = '"errors":%s*%[%s*{'

local TOKEN = os.getenv("WALLET_BENCH_TOKEN")
if TOKEN == nil or TOKEN == "" then
  error("WALLET_BENCH_TOKEN is not set: every request needs the bench caller's bearer token")
end

function init(args)
  counter = 0
  responses = 0
  good = 0
  bad = 0
  non2xx = 0
  sample = ""
  math.randomseed(os.time() * 1000 + thread_number)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. TOKEN
  if bench.mode == "typename" then
    -- One fixed request: wrk sends it without calling request() at all.
    wrk.body = TYPENAME
  end
end

local function pick()
  return bench.wallets[math.random(#bench.wallets)]
end

local function pick_other_than(id)
  local other = pick()
  while other == id do
    other = pick()
  end
  return other
end

local function key()
  counter = counter + 1
  return bench.prefix .. "-" .. thread_number .. "-" .. counter
end

local builders = {
  deposit = function()
    return string.format(DEPOSIT, pick(), key())
  end,
  transfer = function()
    local from = pick()
    return string.format(TRANSFER, from, pick_other_than(from), key())
  end,
  hot = function()
    -- Every transfer touches the hot wallet, half of them as sender, half as receiver.
    local other = pick_other_than(bench.hot)
    if math.random(2) == 1 then
      return string.format(TRANSFER, bench.hot, other, key())
    end
    return string.format(TRANSFER, other, bench.hot, key())
  end,
  wallet = function()
    return string.format(WALLET, pick())
  end,
  page = function()
    return string.format(PAGE, pick())
  end,
}

local function batch_of(atomic)
  return function()
    local items = {}
    for n = 1, bench.batch do
      local from = pick()
      items[n] = string.format(BATCH_ITEM, from, pick_other_than(from), key())
    end
    return string.format(BATCH_HEAD, atomic) .. table.concat(items, ",") .. BATCH_TAIL
  end
end
builders.batch = batch_of("false")
builders.atomic_batch = batch_of("true")

if bench.mode ~= "typename" then
  local build = builders[bench.mode]
  function request()
    return wrk.format(nil, nil, nil, build())
  end
end

function response(status, headers, body)
  responses = responses + 1
  local ok = status >= 200 and status < 300
  if not ok then
    non2xx = non2xx + 1
  end
  if ok and body:find(EXPECT[bench.mode]) and not body:find(REFUSE) then
    good = good + 1
  else
    bad = bad + 1
    if sample == "" then
      sample = status .. " " .. body:sub(1, 300)
    end
  end
  if bench.budget > 0 and responses >= bench.budget then
    wrk.thread:stop()
  end
end

local function quote(text)
  return '"' .. text:gsub('[%c"\\]', function(c)
    return string.format("\\u%04x", c:byte())
  end) .. '"'
end

function done(summary, latency, requests)
  local totals = { responses = 0, good = 0, bad = 0, non2xx = 0 }
  local samples = {}
  for _, thread in ipairs(threads) do
    for name in pairs(totals) do
      totals[name] = totals[name] + thread:get(name)
    end
    local s = thread:get("sample")
    if s ~= "" then
      table.insert(samples, quote(s))
    end
  end
  local points = {}
  local levels = {}
  for p = 1, 99 do
    table.insert(levels, p)
  end
  -- Not 100: wrk's percentile(100) reads past its histogram; latency.max is the maximum.
  for _, p in ipairs({ 0.1, 0.5, 99.5, 99.9, 99.99 }) do
    table.insert(levels, p)
  end
  table.sort(levels)
  for _, p in ipairs(levels) do
    table.insert(points, string.format("[%g,%d]", p, latency:percentile(p)))
  end
  local e = summary.errors
  io.write("WRK_JSON {",
    string.format('"duration_us":%d,"requests":%d,"bytes":%d,', summary.duration,
      summary.requests, summary.bytes),
    string.format('"socket_errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},',
      e.connect, e.read, e.write, e.status, e.timeout),
    string.format('"responses":%d,"good":%d,"bad":%d,"non2xx":%d,', totals.responses,
      totals.good, totals.bad, totals.non2xx),
    string.format('"latency_us":{"min":%d,"max":%d,"mean":%f,"stdev":%f,"percentiles":[%s]},',
      latency.min, latency.max, latency.mean, latency.stdev, table.concat(points, ",")),
    '"samples":[', table.concat(samples, ","), "]}\n")
end
