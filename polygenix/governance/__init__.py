"""Team governance: who may use which models (policy.py), what each reply cost (prices.py),
the per-user, per-day, per-model usage that budgets and reports read (ledger.py), and the
routes that report it and let an admin set each user's limits (routes.py).
"""
