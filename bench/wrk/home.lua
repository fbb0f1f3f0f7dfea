-- An authenticated GET.
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
