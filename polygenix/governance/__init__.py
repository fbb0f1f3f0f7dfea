"""Team governance: who may use which models (policy.py), what each reply cost (prices.py),
the per-user, per-day, per-model usage that budgets and reports read (ledger.py), what a
provider call holds of a budget and what it is charged once it is over (reservations.py,
charging.py), and the routes that report it and let an admin set each user's limits
(routes.py).
"""
