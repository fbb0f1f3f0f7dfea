-- A non-streaming chat completion, straight to the fake provider.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": "Hello there"}]}'
