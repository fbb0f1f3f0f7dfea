-- A chat turn through PolyGenix (a new session each time, so context stays empty).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
wrk.body = '{"content": "Hello there", "model": "openai", "session_id": null}'
