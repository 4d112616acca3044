-- wrk script for bench/run's history scenario: every request carries the
-- bearer token from the environment (CHAT_BENCH_TOKEN).
local token = os.getenv("CHAT_BENCH_TOKEN")
if token == nil or token == "" then
  error("CHAT_BENCH_TOKEN is not set")
end
wrk.headers["Authorization"] = "Bearer " .. token
