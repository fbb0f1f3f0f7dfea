-- A new conversation through an OpenAI-compatible /v1/chat/completions: the model in MODEL.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
wrk.body = '{"model": "' .. os.getenv("MODEL")
    .. '", "messages": [{"role": "user", "content": "Hello there"}]}'
