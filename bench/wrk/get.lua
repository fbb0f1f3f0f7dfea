-- A plain GET.
wrk.method = "GET"
