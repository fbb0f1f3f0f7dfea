-- A new conversation through an OpenAI-compatible /v1/chat/completions: the model in MODEL,
-- the keys in TOKEN (comma-separated: each request takes the next).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model": "' .. os.getenv("MODEL")
    .. '", "messages": [{"role": "user", "content": "Hello there"}]}'
local tokens = {}
for token in string.gmatch(os.getenv("TOKEN"), "[^,]+") do
    table.insert(tokens, token)
end
local n = 0

request = function()
    n = n + 1
    wrk.headers["Authorization"] = "Bearer " .. tokens[n % #tokens + 1]
    return wrk.format()
end
