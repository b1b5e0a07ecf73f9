"""A/B experiments with an LLM judge: split or shadow traffic on one model name, pairwise verdicts
in both orders, an always-valid interval for the challenger's win rate, a decision, a promotion.

Modules (this package's ``__init__`` imports none of them: the config loads ``settings`` alone)::

    settings   [experiments.NAME] tables -> ExperimentSettings
    assign     sticky assignment (user / key / x-fareway-ab-key) and call sampling, by hashing
    stats      the confidence sequence, the tally of verdicts, the decision
    judge      the judge's prompt and strict verdict schema, reading a verdict, both orders combined
    store      experiment state and judged pairs in the ledger's database (SQLite or Postgres)
    queries    per-variant cost, latency and errors from the ledger's calls
    results    one experiment's results as a dict (API, CLI, dashboard) and as text
    runner     a background call (the other arm, a verdict) run and accounted for the experiment
    manager    the running experiments: the arm picker, the stream tee, the after-call hook, control
"""
