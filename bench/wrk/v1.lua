-- A chat turn through PolyGenix's OpenAI-compatible API (a new conversation each time).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
wrk.body = '{"model": "openai", "messages": [{"role": "user", "content": "Hello there"}]}'
