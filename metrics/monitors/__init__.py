"""Monitors: rules declared as code (`rules`), judged on the numbers the cockpit reads
(`inputs`), purely (`evaluate`: a rule and numbers in, findings with their evidence out), turned
into alert changes (`evaluate.Tracker`) and delivered to a webhook through a durable outbox
(`delivery`). `momento watch` (cli/watch.py) runs them every few seconds.
"""
